"""FHIR R4 read API of the directory, shaped like the Annuaire Santé API v2 (SPEC §4.1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter


def fhir_router(services: Any) -> APIRouter:
    """The ``/fhir/…`` routes (Practitioner, PractitionerRole, Organization)."""
    return APIRouter()
