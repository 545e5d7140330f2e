"""skylens.datasets"""
