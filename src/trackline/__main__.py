"""`python -m trackline`: the same command line as `trackline`."""

from trackline.cli import main

main()
