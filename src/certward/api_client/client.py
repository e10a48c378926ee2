"""`ApiClient`: every operation of the API, one typed method each, on one transport."""

from __future__ import annotations

from certward.api_client.access import AccessApi
from certward.api_client.apps import AppsApi
from certward.api_client.client_certificates import ClientCertificatesApi
from certward.api_client.platform import PlatformApi
from certward.api_client.tls_certificates import TlsCertificatesApi


class ApiClient(AppsApi, ClientCertificatesApi, TlsCertificatesApi, AccessApi, PlatformApi):
    """One certward server and one bearer token; a context manager closing its connections.

    Each method is one API operation (see ``docs/api.md``), a range-profile method that
    operation of the kind its `RangeProfilePaths` names; path templates are the API's
    own, so ``tests/cli`` can prove every operation of the OpenAPI document is covered.
    """
