"""The HTTP side shared by both clients: the bearer token cache and the retry policy."""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mssante.client.errors import ApiError, error_from_response

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path
DEFAULT_TIMEOUT = 60.0
USER_AGENT = "mssante-client"


@dataclass
class TokenCache:
    """A bearer token, given or obtained by client credentials (RFC 6749 §4.4)."""

    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str | None = None
    expires_at: float = 0.0  # time.monotonic()

    def __post_init__(self) -> None:
        if self.token is None and not (self.client_id and self.client_secret):
            raise ValueError("give a token, or a client_id and a client_secret")
        if self.token is not None and self.client_id is not None:
            raise ValueError("give a token or client credentials, not both")

    @property
    def renewable(self) -> bool:
        return self.client_id is not None

    def current(self) -> str | None:
        """The token to send, or None when a new one must be requested first."""
        if not self.renewable:
            return self.token
        if self.token is None or time.monotonic() >= self.expires_at:
            return None
        return self.token

    def forget(self) -> None:
        if self.renewable:
            self.token = None

    def request_args(self) -> dict[str, Any]:
        assert self.client_id and self.client_secret
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        return {"data": form, "auth": (self.client_id, self.client_secret)}

    def store(self, response: httpx.Response) -> str:
        if response.is_error:
            raise error_from_response(response)
        try:
            data = response.json()
        except ValueError:
            data = None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ApiError(response.status_code, detail="Réponse du point /oauth/token invalide.")
        lifetime = data.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) else 300.0
        # refresh a little before the end: 10 % of the lifetime, at least 5 s
        margin = max(5.0, lifetime / 10)
        self.token = token
        self.expires_at = time.monotonic() + max(lifetime - margin, 1.0)
        return token


def retry_delay(attempt: int, response: httpx.Response | None) -> float:
    """Backoff before retry ``attempt`` (0-based): Retry-After when given, capped at 10 s."""
    if response is not None:
        after = response.headers.get("retry-after", "")
        if after.isdigit():
            return min(float(after), 10.0)
    return min(0.25 * float(2**attempt), 5.0)


def client_args(
    base_url: str, verify: str | Path | bool, timeout: float, headers: Mapping[str, str] | None
) -> dict[str, Any]:
    """Arguments of ``httpx.Client``/``AsyncClient``; ``verify``: CA file or bool."""
    tls: ssl.SSLContext | bool
    if isinstance(verify, str | Path):
        tls = ssl.create_default_context(cafile=str(verify))
    else:
        tls = verify
    return {
        "base_url": base_url.rstrip("/"),
        "verify": tls,
        "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        "headers": {"User-Agent": USER_AGENT, **(headers or {})},
    }
