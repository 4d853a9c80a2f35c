"""sisr.data"""
