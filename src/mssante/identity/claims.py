"""Claim checks shared by the token validator (access tokens) and the relying party (ID tokens).

Every check raises :class:`InvalidToken` with a reason that names the claim, never its value
when the value could be secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from mssante.domain.errors import InvalidIdentifier
from mssante.domain.identifiers import parse_idnat_ps
from mssante.identity.errors import InvalidToken, ProviderUnavailable
from mssante.identity.jwks import JwksCache, verify_jws

# PSC puts the idNat_PS in SubjectNameID (PSC-POC UserInfos.java); preferred_username too.
ID_NAT_PS_CLAIMS = ("SubjectNameID", "preferred_username")


def numeric_claim(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise InvalidToken(f"missing {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"malformed {name} claim")
    return float(value)


def check_times(claims: Mapping[str, Any], now: float, leeway: float) -> float:
    """``exp`` (required), ``nbf`` and ``iat`` (if present) against ``now``; returns ``exp``."""
    exp = numeric_claim(claims, "exp", required=True)
    assert exp is not None
    if now > exp + leeway:
        raise InvalidToken("token expired")
    nbf = numeric_claim(claims, "nbf", required=False)
    if nbf is not None and now + leeway < nbf:
        raise InvalidToken("token not yet valid (nbf)")
    iat = numeric_claim(claims, "iat", required=False)
    if iat is not None and iat > now + leeway:
        raise InvalidToken("token issued in the future (iat)")
    return exp


def check_issuer(claims: Mapping[str, Any], issuer: str) -> None:
    if claims.get("iss") != issuer:
        raise InvalidToken("issuer not accepted")


def audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return list(aud)
    if aud is None:
        return []
    raise InvalidToken("malformed aud claim")


def check_audience(claims: Mapping[str, Any], accepted: tuple[str, ...]) -> None:
    if not set(audiences(claims)) & set(accepted):
        raise InvalidToken("audience not accepted")


def check_acr(claims: Mapping[str, Any], required_acr: str) -> str:
    acr = claims.get("acr")
    if required_acr and acr != required_acr:
        raise InvalidToken(
            f"authentication level (acr) is not {required_acr}", "insufficient_user_authentication"
        )
    return acr if isinstance(acr, str) else ""


def string_claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def raw_id_nat_ps(claims: Mapping[str, Any]) -> str | None:
    for name in ID_NAT_PS_CLAIMS:
        value = string_claim(claims, name)
        if value:
            return value
    return None


def parse_id_nat_ps(value: str) -> str:
    """The normalised idNat_PS (R54); InvalidToken if the provider sent something else."""
    try:
        return parse_idnat_ps(value).value
    except InvalidIdentifier:
        raise InvalidToken("SubjectNameID is not a valid idNat_PS") from None


def decode_userinfo(
    response: httpx.Response, cache: JwksCache, issuer: str, client_id: str
) -> dict[str, Any]:
    """The claims of a userinfo response, JSON or signed JWT (``application/jwt``).

    Blocking when the answer is a JWT whose key is not cached yet.
    """
    if response.status_code in (401, 403):
        raise InvalidToken("userinfo endpoint refused the token")
    if response.status_code != 200:
        raise ProviderUnavailable(f"userinfo endpoint answered HTTP {response.status_code}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/jwt":
        _, claims = verify_jws(response.text.strip(), cache)
        if "iss" in claims:
            check_issuer(claims, issuer)
        if "aud" in claims and client_id:
            check_audience(claims, (client_id,))
        return claims
    try:
        data = response.json()
    except ValueError:
        raise ProviderUnavailable("userinfo response is not JSON") from None
    if not isinstance(data, dict):
        raise ProviderUnavailable("userinfo response is not a JSON object")
    return data
