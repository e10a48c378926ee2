"""``python -m certward``: the same CLI as the ``certward`` command."""

from certward.cli import run

run()
