"""sisr.infer"""
