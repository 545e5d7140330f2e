"""skylens.index"""
