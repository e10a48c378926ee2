"""The ``certward`` command line: local commands in `certward.cli.app`, the data plane on
nginx in `certward.cli.nginx`, and every API operation in `certward.cli.remote`.

``main(argv)`` returns the exit code (tests call it directly); ``run`` is the console
script.
"""

from certward.cli.app import main, run

__all__ = ["main", "run"]
