"""``python -m adaopt``: the same as the ``adaopt`` command."""

from .cli import main

main()
