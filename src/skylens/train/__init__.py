"""skylens.train"""
