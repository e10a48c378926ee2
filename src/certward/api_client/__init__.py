"""A client of certward's REST API, for the command line and for scripts written in Python.

`ApiClient` has one typed method per API operation and returns the API's JSON as it
came (dicts and lists), so that ``--json`` output is exactly what the API said. Every
failure becomes one of three exceptions, so callers handle each once:

- `ServerUnreachable`: no HTTP answer at all (refused, unknown host, TLS, timeout);
- `ApiProblem`: the API answered 4xx/5xx; carries the ``application/problem+json``
  body (``code``, ``title``, ``detail``, ``problems`` and any further members such as
  ``conflicts`` or ``invalid``);
- `UnexpectedAnswer`: something answered 2xx that certward would not (another service
  on that port, a proxy's HTML page).

Passwords and tokens are sent, never kept in an exception or a message.
"""

from certward.api_client.access import (
    ACCESS_PROFILES,
    IP_DENY_PROFILES,
    RANGE_PROFILES,
    RangeProfilePaths,
)
from certward.api_client.client import ApiClient
from certward.api_client.failures import (
    ApiClientError,
    ApiProblem,
    ServerUnreachable,
    UnexpectedAnswer,
)
from certward.api_client.payloads import UNSET, Download, JsonObject, UploadFile
from certward.api_client.transport import (
    API_PREFIX,
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT_SECONDS,
    PAGE_SIZE,
    normalize_server,
)

__all__ = [
    "ACCESS_PROFILES",
    "API_PREFIX",
    "DEFAULT_SERVER",
    "DEFAULT_TIMEOUT_SECONDS",
    "IP_DENY_PROFILES",
    "PAGE_SIZE",
    "RANGE_PROFILES",
    "UNSET",
    "ApiClient",
    "ApiClientError",
    "ApiProblem",
    "Download",
    "JsonObject",
    "RangeProfilePaths",
    "ServerUnreachable",
    "UnexpectedAnswer",
    "UploadFile",
    "normalize_server",
]
