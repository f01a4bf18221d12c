"""`python -m mssante.cli`."""

from mssante.cli import main

main()
