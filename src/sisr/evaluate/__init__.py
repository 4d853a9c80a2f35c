"""sisr.evaluate"""
