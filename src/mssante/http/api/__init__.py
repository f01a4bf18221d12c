"""The integration API for software (DUI, LPS): messages, delivery status, webhooks (issue 7)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter


def api_router(services: Any, token_validator: Any = None) -> APIRouter:
    """The ``/api/v1/mailboxes/…`` routes."""
    return APIRouter()
