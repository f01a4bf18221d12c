"""A tolerant RFC 5322 address-list parser producing ENVELOPE address structures.

``parse_addresses(value)`` returns ``Address(name, adl, mailbox, host)`` tuples of raw bytes
(``None`` for NIL), in the order of RFC 3501 §7.4.2: a group is a start marker
``(NIL NIL group-name NIL)``, its members, and an end marker ``(NIL NIL NIL NIL)``.

Nothing is decoded: RFC 2047 encoded words stay as written, 8-bit UTF-8 bytes (RFC 6532) stay
raw. Quoted strings are unquoted; comments are dropped, except that a trailing comment names an
address that has no display name (``bob@x (Bob)``), as Dovecot does. Like Dovecot, a missing
local part is ``MISSING_MAILBOX`` and a missing domain ``MISSING_DOMAIN``. Unlike Dovecot,
which stops at the first syntax error, the parser goes on to the next comma, and it reads the
common broken form ``Name name@host`` (no angle brackets) as a display name and an address.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MISSING_DOMAIN", "MISSING_MAILBOX", "Address", "parse_addresses"]

MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"

_SPECIALS = b"<>@,;:."
_WSP = b" \t\r\n"
_STOP_ATOM = _SPECIALS + _WSP + b'"([)'


class Address(NamedTuple):
    name: bytes | None
    adl: bytes | None
    mailbox: bytes | None
    host: bytes | None


class _Tok(NamedTuple):
    kind: str  # "atom", "quoted", "literal", "comment" or "special"
    text: bytes
    space: bool  # preceded by whitespace or a comment


def _delimited(value: bytes, pos: int, close: int, nest: int | None) -> tuple[bytes, int]:
    """Content of a quoted string / comment / literal opening at ``pos``; escapes resolved."""
    out = bytearray()
    depth = 1
    i = pos + 1
    n = len(value)
    while i < n:
        c = value[i]
        if c == 0x5C and i + 1 < n:
            out.append(value[i + 1])
            i += 2
            continue
        if nest is not None and c == nest:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return bytes(out), i + 1
        out.append(c)
        i += 1
    return bytes(out), n


def _tokenize(value: bytes) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(value)
    space = False
    while i < n:
        c = value[i]
        if c in _WSP:
            space = True
            i += 1
        elif c == 0x28:  # "("
            text, i = _delimited(value, i, 0x29, 0x28)
            toks.append(_Tok("comment", text, space))
            space = True
        elif c == 0x22:  # '"'
            text, i = _delimited(value, i, 0x22, None)
            toks.append(_Tok("quoted", text, space))
            space = False
        elif c == 0x5B:  # "["
            text, i = _delimited(value, i, 0x5D, None)
            toks.append(_Tok("literal", b"[" + text + b"]", space))
            space = False
        elif c in _SPECIALS:
            toks.append(_Tok("special", value[i : i + 1], space))
            space = False
            i += 1
        elif c == 0x29:  # stray ")"
            i += 1
        else:
            start = i
            while i < n and value[i] not in _STOP_ATOM:
                i += 1
            toks.append(_Tok("atom", value[start:i], space))
            space = False
    return toks


def _is(tok: _Tok, char: bytes) -> bool:
    return tok.kind == "special" and tok.text == char


def _phrase(toks: list[_Tok]) -> bytes:
    """Words joined as written: one space where the source had whitespace or a comment."""
    out = bytearray()
    for tok in toks:
        if tok.kind == "comment":
            continue
        if out and tok.space:
            out += b" "
        out += tok.text
    return bytes(out)


def _chains(toks: list[_Tok]) -> list[list[_Tok]]:
    """Split words into dot-joined chains (``john . doe`` is one chain, ``John Doe`` two)."""
    chains: list[list[_Tok]] = []
    for tok in toks:
        joined = chains and (
            not tok.space or _is(tok, b".") or (chains[-1] and _is(chains[-1][-1], b"."))
        )
        if joined:
            chains[-1].append(tok)
        else:
            chains.append([tok])
    return chains


def _join(toks: list[_Tok]) -> bytes:
    return b"".join(t.text for t in toks)


def _addr_spec(toks: list[_Tok]) -> tuple[bytes, bytes, bytes]:
    """``(display-name, local-part, domain)`` of words possibly preceded by a bare name."""
    at = next((k for k, t in enumerate(toks) if _is(t, b"@")), -1)
    local_toks = toks if at < 0 else toks[:at]
    domain_toks: list[_Tok] = []
    if at >= 0:
        for tok in toks[at + 1 :]:
            if _is(tok, b"@"):
                break
            domain_toks.append(tok)
    chains = _chains(local_toks)
    phrase_only = len(chains) > 1 or (len(chains) == 1 and chains[0][0].kind == "quoted")
    if at < 0 and phrase_only:  # "Name Only", or words: a phrase without an address
        return _phrase(local_toks), b"", b""
    name = _phrase([t for chain in chains[:-1] for t in chain])
    local = _join(chains[-1]) if chains else b""
    return name, local, _join(domain_toks)


def _mailbox(seg: list[_Tok]) -> Address | None:
    words = [t for t in seg if t.kind != "comment"]
    if not words:
        return None
    lt = next((k for k, t in enumerate(words) if _is(t, b"<")), -1)
    adl: bytes | None = None
    if lt >= 0:
        name = _phrase(words[:lt])
        gt = next((k for k, t in enumerate(words) if k > lt and _is(t, b">")), len(words))
        inner = words[lt + 1 : gt]
        if inner and _is(inner[0], b"@"):
            colon = next((k for k, t in enumerate(inner) if _is(t, b":")), -1)
            if colon >= 0:
                adl = _join(inner[:colon])
                inner = inner[colon + 1 :]
        _, local, domain = _addr_spec(inner)
    else:
        name, local, domain = _addr_spec(words)
        if not name:
            first = next(k for k, t in enumerate(seg) if t.kind != "comment")
            trailing = [t.text for t in seg[first:] if t.kind == "comment"]
            name = b" ".join(trailing)
    return Address(name or None, adl or None, local or MISSING_MAILBOX, domain or MISSING_DOMAIN)


def _segment(toks: list[_Tok], i: int, in_group: bool) -> tuple[list[_Tok], int]:
    """Tokens of one mailbox, up to a top-level "," (or ";" in a group); returns the stop."""
    seg: list[_Tok] = []
    angle = False
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "special":
            if tok.text == b"<":
                angle = True
            elif tok.text == b">":
                angle = False
            elif not angle and (tok.text == b"," or (in_group and tok.text == b";")):
                break
        seg.append(tok)
        i += 1
    return seg, i


def _group_colon(toks: list[_Tok], i: int) -> int:
    """Index of the ":" if the element at ``i`` is a group (``phrase:``), else -1."""
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "special":
            return i if tok.text == b":" else -1
        i += 1
    return -1


def parse_addresses(value: bytes) -> list[Address]:
    toks = _tokenize(value)
    out: list[Address] = []
    i = 0
    n = len(toks)
    while i < n:
        if _is(toks[i], b",") or _is(toks[i], b";"):
            i += 1
            continue
        colon = _group_colon(toks, i)
        if colon < 0:
            seg, i = _segment(toks, i, in_group=False)
            addr = _mailbox(seg)
            if addr is not None:
                out.append(addr)
            continue
        out.append(Address(None, None, _phrase(toks[i:colon]), None))
        i = colon + 1
        while i < n and not _is(toks[i], b";"):
            if _is(toks[i], b","):
                i += 1
                continue
            seg, i = _segment(toks, i, in_group=True)
            addr = _mailbox(seg)
            if addr is not None:
                out.append(addr)
        i += 1
        out.append(Address(None, None, None, None))
    return out
