"""``python -m runner``: see :mod:`runner.cli`."""

from runner.cli import main

if __name__ == "__main__":
    main()
