"""certward: the certificate control plane of an application hosting platform."""

__version__ = "0.1.0"
