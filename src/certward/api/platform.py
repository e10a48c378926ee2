"""Platform-level routes: the built-in CA (more arrive with incoming certificates)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
