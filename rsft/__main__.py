"""``python -m rsft``: the same CLI as the ``rsft`` command."""

from rsft.cli import main

main()
