"""sisr.metrics"""
