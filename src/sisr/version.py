"""The package version, in a leaf module that any part of sisr can import without cycles."""

__version__ = "0.1.0"
