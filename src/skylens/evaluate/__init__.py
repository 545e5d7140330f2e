"""skylens.evaluate"""
