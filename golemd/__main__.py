"""`python -m golemd`: the same as the `golemd` command."""

from golemd.cli import main

if __name__ == "__main__":
    main()
