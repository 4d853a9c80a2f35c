"""Command-line interface: one module per sub-command, listed in ``main.COMMANDS``."""
