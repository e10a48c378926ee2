"""The in-process API harness of tests/api, for the attacks replayed here."""

from tests.api.conftest import api, api_environ, client_ca

__all__ = ["api", "api_environ", "client_ca"]
