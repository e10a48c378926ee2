"""``python -m certward``: the same CLI as the ``certward`` command."""

from certward.cli.app import run

run()
