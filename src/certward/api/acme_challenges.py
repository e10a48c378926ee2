"""``GET /.well-known/acme-challenge/{token}``: HTTP-01 answers for the ACME CA.

The ACME CA fetches the key authorization over plain HTTP from port 80 of the name it
validates, so whatever serves that port (nginx, the gateway) proxies this location of
every hostname to certward, or answers it from the database itself
(`certward.services.acme_issuing.challenge_response`). No token: the CA has none, and a
key authorization is public by design (RFC 8555 §8.3). Anything not published right
now is a plain 404.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from certward.api.deps import ContextDep
from certward.issuing.acme import CHALLENGE_PATH
from certward.services.acme_issuing import answer_challenge

router = APIRouter()

_NOT_CACHED = {"Cache-Control": "no-store"}


@router.get(
    CHALLENGE_PATH + "{token}",
    tags=["acme"],
    response_class=PlainTextResponse,
    responses={404: {"description": "No challenge is published for the token."}},
)
def acme_challenge(token: str, ctx: ContextDep) -> PlainTextResponse:
    """The key authorization published for ``token``, as text/plain (no token needed)."""
    answer = answer_challenge(ctx, token)
    if answer is None:
        return PlainTextResponse("not found\n", status_code=404, headers=_NOT_CACHED)
    return PlainTextResponse(answer, headers=_NOT_CACHED)
