"""The ``certward`` command line, assembled in `certward.cli.app`: material commands in
`certward.cli.material`, the operator's in `certward.cli.operator`, runtime bundles in
`certward.cli.bundle`, the data plane on nginx in `certward.cli.nginx`, and every API
operation in `certward.cli.remote`.

``main(argv)`` returns the exit code (tests call it directly); ``run`` is the console
script.
"""

from certward.cli.app import main, run

__all__ = ["main", "run"]
