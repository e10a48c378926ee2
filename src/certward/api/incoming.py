"""Routes for incoming certificates: an app's TLS certificates and its custom domains."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
