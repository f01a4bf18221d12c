"""Directory search and suggest for compose forms (issue 5 item 7)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter


def directory_router(services: Any, token_validator: Any = None) -> APIRouter:
    """``GET /annuaire/suggest`` and ``GET /api/v1/annuaire/search``."""
    return APIRouter()
