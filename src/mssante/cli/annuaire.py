"""`mssante annuaire …`: import, search, publish and look up the national directory."""

from __future__ import annotations
