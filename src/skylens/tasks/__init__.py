"""skylens.tasks"""
