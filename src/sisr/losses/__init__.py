"""sisr.losses"""
