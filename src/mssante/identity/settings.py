"""OpenID Connect settings of the identity provider, and the Pro Santé Connect presets (SPEC §1.6).

The preset URLs are those of ANS ``keycloak-prosanteconnect`` ``psc.properties``: the realm
``esante-wallet`` on ``auth.esw.esante.gouv.fr`` (production) or ``auth.bas.psc.esante.gouv.fr``
(the "BAS" sandbox), with the authorization page on the ``wallet`` host. PSC publishes its
discovery document under the non-standard name ``wallet-openid-configuration``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

PSC_REALM = "esante-wallet"
PSC_ACR = "eidas1"
PSC_SCOPE = "openid scope_all"


def _psc(auth_host: str, wallet_host: str) -> OidcSettings:
    issuer = f"https://{auth_host}/auth/realms/{PSC_REALM}"
    endpoints = f"{issuer}/protocol/openid-connect"
    return OidcSettings(
        issuer=issuer,
        authorization_endpoint=f"https://{wallet_host}/auth",
        token_endpoint=f"{endpoints}/token",
        userinfo_endpoint=f"{endpoints}/userinfo",
        jwks_uri=f"{endpoints}/certs",
        introspection_endpoint=f"{endpoints}/token/introspect",
        end_session_endpoint=f"{endpoints}/logout",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{name} must be an absolute URL, got {url!r}")
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise ValueError(f"{name} must use https (plain http only on loopback), got {url!r}")


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """Where the OpenID provider lives and what this platform accepts from it.

    ``audience`` lists the accepted ``aud`` values of access tokens (default: ``client_id``).
    ``leeway`` (seconds) applies to ``exp``/``nbf``/``iat``; ``jwks_cache_ttl`` (seconds) is
    how long a fetched JWKS is used before it is fetched again.
    """

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    introspection_endpoint: str | None = None
    end_session_endpoint: str | None = None
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    audience: tuple[str, ...] | None = None
    scope: str = PSC_SCOPE
    required_acr: str = PSC_ACR
    jwks_cache_ttl: float = 3600.0
    leeway: float = 30.0

    def __post_init__(self) -> None:
        audience: Any = self.audience
        if isinstance(audience, str):  # a lone string, not a tuple of letters
            object.__setattr__(self, "audience", (audience,))
        elif audience is not None and not isinstance(audience, tuple):
            object.__setattr__(self, "audience", tuple(audience))
        for name in ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                     "jwks_uri", "introspection_endpoint", "end_session_endpoint"):  # fmt: skip
            value = getattr(self, name)
            if value is not None:
                _check_url(name, value)
        if self.leeway < 0 or self.jwks_cache_ttl < 0:
            raise ValueError("leeway and jwks_cache_ttl must not be negative")

    @property
    def accepted_audiences(self) -> tuple[str, ...]:
        """The ``aud`` values an access token may carry (one is enough)."""
        if self.audience:
            return self.audience
        return (self.client_id,) if self.client_id else ()

    def with_client(self, client_id: str, client_secret: str = "", **changes: Any) -> OidcSettings:
        """A copy with the client credentials (and any other field) set."""
        return dataclasses.replace(
            self, client_id=client_id, client_secret=client_secret, **changes
        )


PRESETS: Mapping[str, OidcSettings] = {
    "psc-production": _psc("auth.esw.esante.gouv.fr", "wallet.esw.esante.gouv.fr"),
    "psc-sandbox": _psc("auth.bas.psc.esante.gouv.fr", "wallet.bas.psc.esante.gouv.fr"),
}

DISCOVERY_URLS: Mapping[str, str] = {
    name: f"{preset.issuer}/.well-known/wallet-openid-configuration"
    for name, preset in PRESETS.items()
}


def preset(name: str, client_id: str = "", client_secret: str = "", **changes: Any) -> OidcSettings:
    """The named preset (``psc-production`` or ``psc-sandbox``) with the client credentials."""
    try:
        base = PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ValueError(f"unknown identity provider preset {name!r} (known: {known})") from None
    return base.with_client(client_id, client_secret, **changes)


def settings_from_metadata(
    metadata: Mapping[str, Any], *, discovery_url: str | None = None, **fields: Any
) -> OidcSettings:
    """Settings from an OpenID provider metadata document (OpenID Connect Discovery §3).

    When ``discovery_url`` is given, the ``issuer`` must be its prefix up to ``/.well-known/``
    (Discovery §4.3): a document served elsewhere cannot claim another issuer.
    """
    issuer = metadata.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise ValueError("provider metadata has no issuer")
    if discovery_url is not None:
        prefix = discovery_url.split("/.well-known/", 1)[0]
        if "/.well-known/" not in discovery_url or prefix.rstrip("/") != issuer.rstrip("/"):
            raise ValueError(f"issuer {issuer!r} does not match discovery URL {discovery_url!r}")
    values: dict[str, Any] = {"issuer": issuer}
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        value = metadata.get(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"provider metadata has no {key}")
        values[key] = value
    for key in ("introspection_endpoint", "end_session_endpoint"):
        value = metadata.get(key)
        values[key] = value if isinstance(value, str) and value else None
    values.update(fields)
    return OidcSettings(**values)


def from_discovery(
    url: str, *, http: httpx.Client | None = None, timeout: float = 10.0, **fields: Any
) -> OidcSettings:
    """Fetch a discovery document (blocking) and build settings from it.

    ``fields`` sets the other settings (``client_id``, ``client_secret``, ``audience``…).
    For PSC the URLs are in ``DISCOVERY_URLS``.
    """
    _check_url("discovery URL", url)
    client = http or httpx.Client(timeout=timeout)
    try:
        response = client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        metadata = response.json()
    finally:
        if http is None:
            client.close()
    if not isinstance(metadata, dict):
        raise ValueError("provider metadata is not a JSON object")
    return settings_from_metadata(metadata, discovery_url=url, **fields)
