"""CLI commands (placeholder until implemented)."""

COMMANDS: list = []
