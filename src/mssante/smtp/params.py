"""Parsing of MAIL and RCPT arguments and their ESMTP parameters (pure, no I/O).

RFC 5321 §4.1.1.2–3 (paths), RFC 1870 (SIZE), RFC 6152 (BODY=8BITMIME), RFC 6531
(SMTPUTF8), RFC 3461 §4 (RET, ENVID, NOTIFY, ORCPT), RFC 4954 §5 (AUTH=).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mssante.domain.errors import InvalidAddress
from mssante.domain.mailboxes import normalise_address
from mssante.formats.dsn import xtext_decode


class ParamError(ValueError):
    """A parameter is malformed (501) or unknown (555)."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


_PARAM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?$")
_NOTIFY_WORDS = {"SUCCESS", "FAILURE", "DELAY"}


@dataclass(frozen=True)
class MailArgs:
    sender: str  # "" for the null reverse-path
    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None


@dataclass(frozen=True)
class RcptArgs:
    recipient: str
    notify: str | None = None  # "NEVER" or a sorted comma list
    orcpt: str | None = None  # "rfc822;addr" decoded


def _split_path(arg: str, keyword: str) -> tuple[str, list[str]]:
    """`FROM:<a@b> PARAM=x` → ("a@b", ["PARAM=x"]). The angle brackets are mandatory."""
    head, colon, rest = arg.partition(":")
    if not colon or head.strip().upper() != keyword:
        raise ParamError("syntax")
    rest = rest.lstrip()
    if not rest.startswith("<"):
        raise ParamError("syntax")
    end = rest.find(">")
    if end < 0:
        raise ParamError("syntax")
    path = rest[1:end]
    # RFC 5321 §4.1.2: an optional source route "@a,@b:" is accepted and ignored.
    if path.startswith("@") and ":" in path:
        path = path.split(":", 1)[1]
    params = rest[end + 1 :].split()
    return path, params


def _params(items: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items:
        match = _PARAM.match(item)
        if not match:
            raise ParamError(item[:40])
        key = match.group(1).upper()
        if key in out:
            raise ParamError(f"{key} given twice")
        out[key] = match.group(2)
    return out


def parse_mail(arg: str, *, smtputf8_allowed: bool = True) -> MailArgs:
    path, items = _split_path(arg, "FROM")
    params = _params(items)
    sender = ""
    if path:
        try:
            sender = normalise_address(path)
        except InvalidAddress as exc:
            raise InvalidAddress(str(exc)) from None
    size = None
    if "SIZE" in params:
        raw = params.pop("SIZE")
        if raw is None or not raw.isdigit() or len(raw) > 20:
            raise ParamError("SIZE")
        size = int(raw)
    body = None
    if "BODY" in params:
        raw = params.pop("BODY")
        if raw is None or raw.upper() not in ("7BIT", "8BITMIME"):
            raise ParamError("BODY")
        body = raw.upper()
    smtputf8 = False
    if "SMTPUTF8" in params:
        if params.pop("SMTPUTF8") is not None or not smtputf8_allowed:
            raise ParamError("SMTPUTF8")
        smtputf8 = True
    ret = None
    if "RET" in params:
        raw = params.pop("RET")
        if raw is None or raw.upper() not in ("FULL", "HDRS"):
            raise ParamError("RET")
        ret = raw.upper()
    envid = None
    if "ENVID" in params:
        raw = params.pop("ENVID")
        try:
            envid = xtext_decode(raw or "")
        except ValueError:
            raise ParamError("ENVID") from None
        if not envid or len(raw or "") > 100:  # RFC 3461 §4.4: at most 100 characters
            raise ParamError("ENVID")
    params.pop("AUTH", None)  # RFC 4954 §5: accepted, not trusted
    if params:
        raise ParamError(next(iter(params)), unknown=True)
    return MailArgs(sender=sender, size=size, body=body, smtputf8=smtputf8, ret=ret, envid=envid)


def parse_rcpt(arg: str) -> RcptArgs:
    path, items = _split_path(arg, "TO")
    params = _params(items)
    if not path:
        raise InvalidAddress("empty recipient")
    recipient = normalise_address(path)
    notify = None
    if "NOTIFY" in params:
        raw = (params.pop("NOTIFY") or "").upper()
        words = set(raw.split(","))
        # RFC 3461 §4.1: NEVER alone, or any of SUCCESS, FAILURE, DELAY.
        if words != {"NEVER"} and (not words or not words <= _NOTIFY_WORDS):
            raise ParamError("NOTIFY")
        notify = "NEVER" if words == {"NEVER"} else ",".join(sorted(words))
    orcpt = None
    if "ORCPT" in params:
        raw = params.pop("ORCPT") or ""
        addr_type, semi, value = raw.partition(";")
        if not semi or not addr_type or not value:
            raise ParamError("ORCPT")
        try:
            orcpt = f"{addr_type.lower()};{xtext_decode(value)}"
        except ValueError:
            raise ParamError("ORCPT") from None
        if len(orcpt) > 500:
            raise ParamError("ORCPT")
    if params:
        raise ParamError(next(iter(params)), unknown=True)
    return RcptArgs(recipient=recipient, notify=notify, orcpt=orcpt)
