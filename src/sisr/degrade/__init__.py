"""sisr.degrade"""
