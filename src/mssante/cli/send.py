"""`mssante send`: send a message through the HTTP API (built on mssante.client)."""

from __future__ import annotations
