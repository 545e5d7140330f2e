"""skylens.curate"""
