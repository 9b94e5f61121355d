"""``python -m rsft.cli``: the ``rsft`` command (as the benchmarks and tests run it)."""

from rsft.cli import main

main()
