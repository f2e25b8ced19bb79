"""`python -m golemctl`: the same as the golemctl command."""

from golemctl.cli import main

main()
