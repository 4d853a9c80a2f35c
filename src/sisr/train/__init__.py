"""sisr.train"""
