"""SASL messages of the AUTH mechanisms (pure parsing, no I/O).

- PLAIN, RFC 4616 §2: `[authzid] NUL authcid NUL passwd`.
- XOAUTH2 (Google's profile, used by Thunderbird, Outlook and curl):
  `user=<user> ^A auth=Bearer <token> ^A ^A`.
- OAUTHBEARER, RFC 7628 §3.1: a GS2 header `n,a=<authzid>,` then `^A`-separated
  `key=value` pairs (`host`, `port`, `auth=Bearer <token>`) ending with `^A^A`.
- EXTERNAL, RFC 4422 appendix A: an optional authorization identity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

KVSEP = b"\x01"


class SaslError(ValueError):
    """The client's message does not follow the mechanism's syntax."""


@dataclass(frozen=True)
class BearerMessage:
    authzid: str  # the user the client names (may be empty); the token decides
    token: str


def parse_plain(blob: bytes) -> tuple[str, str, str]:
    fields = blob.split(b"\x00")
    if len(fields) != 3 or not fields[1]:
        raise SaslError("PLAIN needs authzid NUL authcid NUL passwd")
    try:
        authzid, authcid, password = (f.decode("utf-8") for f in fields)
    except UnicodeDecodeError:
        raise SaslError("PLAIN fields must be UTF-8") from None
    return authzid, authcid, password


def _bearer(value: bytes) -> str:
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        raise SaslError("auth must be 'Bearer <token>'")
    try:
        # RFC 6750 §2.1 b64token characters only.
        text = token.strip().decode("ascii")
    except UnicodeDecodeError:
        raise SaslError("the token is not ASCII") from None
    return text


def parse_xoauth2(blob: bytes) -> BearerMessage:
    user = ""
    token = None
    for part in blob.split(KVSEP):
        if not part:
            continue
        key, eq, value = part.partition(b"=")
        if not eq:
            raise SaslError("XOAUTH2 fields are key=value")
        if key == b"user":
            user = value.decode("utf-8", "replace")
        elif key == b"auth":
            token = _bearer(value)
    if token is None:
        raise SaslError("XOAUTH2 without auth=Bearer")
    return BearerMessage(user, token)


def parse_oauthbearer(blob: bytes) -> BearerMessage:
    header, sep, rest = blob.partition(KVSEP)
    if not sep or not rest.endswith(KVSEP):
        raise SaslError("OAUTHBEARER message must end with ^A^A")
    # gs2-header: gs2-cbind-flag "," [authzid] "," ; channel binding is not supported ("n").
    parts = header.split(b",")
    if len(parts) != 3 or parts[0] not in (b"n", b"y") or parts[2] != b"":
        raise SaslError("bad GS2 header")
    authzid = ""
    if parts[1]:
        if not parts[1].startswith(b"a="):
            raise SaslError("bad authzid")
        authzid = (
            parts[1][2:].replace(b"=2C", b",").replace(b"=3D", b"=").decode("utf-8", "replace")
        )
    token = None
    for pair in rest.split(KVSEP):
        if not pair:
            continue
        key, eq, value = pair.partition(b"=")
        if not eq or not key.isalpha():
            raise SaslError("OAUTHBEARER fields are key=value")
        if key == b"auth":
            token = _bearer(value)
    if token is None:
        raise SaslError("OAUTHBEARER without auth=Bearer")
    return BearerMessage(authzid, token)


def error_challenge(error: dict[str, str]) -> bytes:
    """The JSON of the RFC 7628 §3.2.2 server error challenge (before base64)."""
    return json.dumps(error, separators=(",", ":")).encode("ascii")
