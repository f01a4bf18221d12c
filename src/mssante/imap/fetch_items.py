"""FETCH data items (RFC 3501 §6.4.5, RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mssante.imap.lexer import ASTRING_ATOM, MAX_NUMBER64, Reader

__all__ = [
    "MACROS",
    "SIMPLE_ATTRIBUTES",
    "FetchAttr",
    "FetchBinarySize",
    "FetchBody",
    "FetchItem",
    "Section",
    "parse_fetch_items",
]

SIMPLE_ATTRIBUTES = frozenset(
    {
        "BODY",  # non-extensible BODYSTRUCTURE
        "BODYSTRUCTURE",
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "MODSEQ",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "UID",
    }
)
_SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})
_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION = re.compile(rb"[A-Za-z0-9.]+")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext


@dataclass(frozen=True)
class Section:
    """`part` (1.2.3 → (1, 2, 3)); `text` one of None, HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, TEXT, MIME; `fields` the header names for HEADER.FIELDS[.NOT]."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        pieces = [str(p) for p in self.part]
        if self.text:
            pieces.append(self.text)
        spec = ".".join(pieces)
        if self.fields:
            names = (f if ASTRING_ATOM.fullmatch(f.encode()) else _quote(f) for f in self.fields)
            spec += " (" + " ".join(names) + ")"
        return spec


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class FetchAttr:
    """An item without section: one of SIMPLE_ATTRIBUTES (`BODY` alone is the
    non-extensible body structure)."""

    name: str


@dataclass(frozen=True)
class FetchBody:
    """BODY[section]<o.n>, BODY.PEEK[…], BINARY[part]<o.n>, BINARY.PEEK[…]."""

    section: Section
    peek: bool = False
    partial: tuple[int, int] | None = None  # (origin, length)
    binary: bool = False

    def label(self) -> str:
        """The item name for the response: `BODY[HEADER.FIELDS (From)]<0>` (no .PEEK,
        origin only, RFC 3501 §7.4.2)."""
        name = "BINARY" if self.binary else "BODY"
        origin = f"<{self.partial[0]}>" if self.partial else ""
        return f"{name}[{self.section}]{origin}"


@dataclass(frozen=True)
class FetchBinarySize:
    """BINARY.SIZE[part] (RFC 3516)."""

    part: tuple[int, ...]

    def label(self) -> str:
        return "BINARY.SIZE[" + ".".join(str(p) for p in self.part) + "]"


FetchItem = FetchAttr | FetchBody | FetchBinarySize

MACROS: dict[str, tuple[FetchItem, ...]] = {
    "FAST": (FetchAttr("FLAGS"), FetchAttr("INTERNALDATE"), FetchAttr("RFC822.SIZE")),
    "ALL": (
        FetchAttr("FLAGS"),
        FetchAttr("INTERNALDATE"),
        FetchAttr("RFC822.SIZE"),
        FetchAttr("ENVELOPE"),
    ),
    "FULL": (
        FetchAttr("FLAGS"),
        FetchAttr("INTERNALDATE"),
        FetchAttr("RFC822.SIZE"),
        FetchAttr("ENVELOPE"),
        FetchAttr("BODY"),
    ),
}


def _section(r: Reader, binary: bool) -> Section:
    r.expect(b"[", "'['")
    if r.accept(b"]"):
        return Section()
    spec = r.match(_SECTION, "a section").decode("ascii").upper().split(".")
    if "" in spec:
        r.fail("Invalid section")
    part: list[int] = []
    while spec and spec[0].isdigit():
        digits = spec.pop(0)
        if digits.startswith("0") or len(digits) > 10:
            r.fail("Invalid section part number")
        part.append(int(digits))
    text = ".".join(spec) or None
    fields: list[str] = []
    if text is not None and (binary or text not in _SECTION_TEXTS):
        r.fail("Invalid section")
    if text == "MIME" and not part:
        r.fail("MIME needs a part number")
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        r.space()
        fields = r.paren_list(lambda: _field_name(r), allow_empty=False)
    r.expect(b"]", "']'")
    return Section(tuple(part), text, tuple(fields))


def _field_name(r: Reader) -> str:
    name = r.astring_text("header field name")
    if not _FIELD_NAME.fullmatch(name):
        r.fail("Invalid header field name")
    return name


def _partial(r: Reader) -> tuple[int, int] | None:
    if not r.accept(b"<"):
        return None
    origin = r.number(MAX_NUMBER64)
    r.expect(b".", "'.'")
    length = r.number(MAX_NUMBER64, 1)
    r.expect(b">", "'>'")
    return origin, length


def _fetch_att(r: Reader) -> FetchItem:
    name = r.match(_NAME, "a fetch attribute").decode("ascii").upper()
    bracket = r.peek() == ord("[")
    if name == "BINARY.SIZE" and bracket:
        return FetchBinarySize(_section(r, binary=True).part)
    if name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK") and (bracket or "." in name):
        binary = name.startswith("BINARY")
        section = _section(r, binary)
        return FetchBody(section, name.endswith(".PEEK"), _partial(r), binary)
    if name in SIMPLE_ATTRIBUTES:
        return FetchAttr(name)
    r.fail(f"Unknown fetch attribute {name[:40]}")


def parse_fetch_items(r: Reader) -> tuple[FetchItem, ...]:
    """`fetch-att / "(" fetch-att *(SP fetch-att) ")"` or a macro (ALL, FAST, FULL)."""
    if r.peek() == ord("("):
        return tuple(r.paren_list(lambda: _fetch_att(r), allow_empty=False))
    save = r.pos
    macro = MACROS.get(r.match(_NAME, "fetch attributes").decode("ascii").upper())
    if macro is not None:
        return macro
    r.pos = save
    return (_fetch_att(r),)
