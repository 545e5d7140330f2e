"""skylens.imagery"""
