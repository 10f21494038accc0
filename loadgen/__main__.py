"""`python -m loadgen`: the same as the `modalmesh-load` console script."""

from loadgen.cli import main

main()
