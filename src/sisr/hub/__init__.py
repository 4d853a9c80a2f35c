"""sisr.hub"""
