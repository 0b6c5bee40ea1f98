"""``python -m sdmodel``."""

from sdmodel.cli import main

main()
