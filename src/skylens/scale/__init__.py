"""skylens.scale"""
