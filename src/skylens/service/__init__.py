"""skylens.service"""
