"""`python -m lmlab` runs the CLI."""

from lmlab.cli import main

main()
