"""`python -m tfopt` runs the CLI."""

from tfopt.cli import main

main()
