"""Image input/output (see read_image / write_image)."""
