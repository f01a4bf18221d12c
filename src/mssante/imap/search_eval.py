"""SEARCH evaluation on one message: ``matches(key, ctx) -> bool`` (RFC 3501 / 9051 §6.4.4).

The key protocol
----------------
A key is a tuple ``(NAME, *args)``; ``NAME`` is matched case-insensitively. String arguments
are ``str`` (already decoded from the command's charset) or ``bytes`` (read as UTF-8).

==========================================  ===================================================
``("ALL",)``                                 every message
``("ANSWERED",)`` ``("DELETED",)``           the system flag is set (``\\Answered``…); also
``("DRAFT",)`` ``("FLAGGED",)``              ``("RECENT",)``
``("SEEN",)``
``("UNANSWERED",)`` … ``("UNSEEN",)``        the system flag is not set
``("NEW",)`` / ``("OLD",)``                  ``\\Recent`` and not ``\\Seen`` / not ``\\Recent``
``("KEYWORD", flag)``                        ``flag`` (keyword or ``\\System`` flag) is set;
``("UNKEYWORD", flag)``                      … is not set. Flags compare case-insensitively
``("FROM"|"TO"|"CC"|"BCC"|"SUBJECT", s)``    ``s`` is a substring of that header's decoded value
``("HEADER", field, s)``                     same for any field; ``s == ""`` matches any message
                                             having the field
``("BODY", s)``                              ``s`` in the decoded text parts
``("TEXT", s)``                              ``s`` in the decoded header or text parts
``("BEFORE"|"ON"|"SINCE", date)``            internal date (its UTC calendar day) ``<``/``==``/
                                             ``>=`` ``date`` (a ``datetime.date``)
``("SENTBEFORE"|"SENTON"|"SENTSINCE", d)``   same on the Date header's own calendar day (time and
                                             zone disregarded); missing or unparsable Date:
                                             the internal date is used
``("LARGER", n)`` / ``("SMALLER", n)``       RFC822.SIZE ``>`` / ``<`` ``n``
``("UID", uids)`` / ``("SEQ", seqs)``        the UID / sequence number is in ``uids`` / ``seqs``:
                                             a ``Callable[[int], bool]`` or a ``Container[int]``
                                             (``range``, ``set``…), ``*`` and ``$`` resolved by
                                             the session
``("MODSEQ", n[, entry, entry_type])``       mod-sequence ``>= n`` (RFC 7162; the optional
                                             entry name/type are accepted and ignored, since
                                             per-flag modseqs are not kept)
``("OLDER", s)`` / ``("YOUNGER", s)``        internal date more than / at most ``s`` seconds
                                             before ``now`` (RFC 5032 WITHIN)
``("NOT", key)``                             negation
``("OR", k1, k2, …)``                        any of two or more keys
``("AND", [k…])`` or ``("AND", k1, k2, …)``  all keys (an empty AND is true)
==========================================  ===================================================

Substring matching is case-insensitive on Unicode-normalised text (``search_text``): RFC 2047
words decoded, whitespace runs collapsed; BODY/TEXT look into quoted-printable and base64 text
parts in their charset (HTML without its tags). ``search_adapt.to_eval_key`` translates the
command parser's ``search_keys`` tree into this protocol.

``ctx`` is any object with the ``SearchContext`` attributes; ``MessageContext`` is a ready one
that loads the message bytes only if a key needs them (flags, dates, sizes, UIDs do not). AND
evaluates its cheap keys first. An unknown key name or a bad argument raises ``ValueError``
(a session bug: the parser never produces one).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Container, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from mssante.imap.message import ParsedMessage
from mssante.imap.message_decode import decode_words
from mssante.imap.search_text import body_text, field_texts, header_text, normalize

__all__ = ["MessageContext", "SearchContext", "SearchKey", "matches"]

SearchKey = tuple[object, ...]


class SearchContext(Protocol):
    """What ``matches`` needs to know about one message."""

    @property
    def seq(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> AbstractSet[str]: ...
    @property
    def internal_date(self) -> datetime: ...
    @property
    def size(self) -> int: ...
    @property
    def modseq(self) -> int: ...
    @property
    def message(self) -> ParsedMessage: ...


@dataclass
class MessageContext:
    """A ``SearchContext`` whose message is loaded (``load()``: bytes) on first need only."""

    seq: int
    uid: int
    flags: AbstractSet[str]
    internal_date: datetime
    size: int
    modseq: int
    load: Callable[[], bytes | ParsedMessage]
    _message: ParsedMessage | None = field(default=None, init=False, repr=False)

    @property
    def message(self) -> ParsedMessage:
        if self._message is None:
            loaded = self.load()
            self._message = loaded if isinstance(loaded, ParsedMessage) else ParsedMessage(loaded)
        return self._message


_SYSTEM_FLAGS = {
    "ANSWERED": "\\answered",
    "DELETED": "\\deleted",
    "DRAFT": "\\draft",
    "FLAGGED": "\\flagged",
    "RECENT": "\\recent",
    "SEEN": "\\seen",
}
_HEADER_KEYS = frozenset({"FROM", "TO", "CC", "BCC", "SUBJECT"})
_DATE_OPS = frozenset({"BEFORE", "ON", "SINCE"})
# Keys that never read the message bytes; AND tries them first.
_CHEAP = frozenset(
    {"ALL", "NEW", "OLD", "KEYWORD", "UNKEYWORD", "LARGER", "SMALLER", "UID", "SEQ", "MODSEQ"}
    | {"OLDER", "YOUNGER"}
    | _DATE_OPS
    | set(_SYSTEM_FLAGS)
    | {"UN" + name for name in _SYSTEM_FLAGS}
)


def _name(key: SearchKey) -> str:
    if not isinstance(key, tuple) or not key or not isinstance(key[0], str):
        raise ValueError(f"not a search key: {key!r}")
    return key[0].upper()


def _arg(key: SearchKey, index: int) -> object:
    if len(key) <= index:
        raise ValueError(f"search key {key[0]} needs {index} argument(s)")
    return key[index]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise ValueError(f"expected a date, got {value!r}")


def _in(members: object, number: int) -> bool:
    if callable(members):
        return bool(members(number))
    if isinstance(members, Container):
        return number in members
    raise ValueError(f"expected a callable or a container, got {members!r}")


def _has_flag(ctx: SearchContext, flag: str) -> bool:
    wanted = flag.casefold()
    return any(f.casefold() == wanted for f in ctx.flags)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _compare(day: date, op: str, wanted: date) -> bool:
    if op == "BEFORE":
        return day < wanted
    if op == "ON":
        return day == wanted
    return day >= wanted


def _sent_day(ctx: SearchContext) -> date:
    for value in reversed(ctx.message.header_values("date")):
        try:
            parsed = email.utils.parsedate_tz(decode_words(value))
            if parsed is not None:
                return date(parsed[0], parsed[1], parsed[2])
        except (ValueError, IndexError, TypeError, OverflowError):
            continue
    return _utc(ctx.internal_date).date()


def _header_match(ctx: SearchContext, name: str, needle: str) -> bool:
    wanted = normalize(needle).strip()
    return any(wanted in value for value in field_texts(ctx.message, name))


def _sort_cheap_first(keys: Sequence[object]) -> list[object]:
    def cost(key: object) -> int:
        if isinstance(key, tuple) and key and isinstance(key[0], str):
            return 0 if key[0].upper() in _CHEAP else 1
        return 1

    return sorted(keys, key=cost)


def _operands(key: SearchKey) -> Sequence[object]:
    """The keys of an AND/OR: ``(NAME, [k…])`` or ``(NAME, k1, k2, …)``."""
    if len(key) == 2:
        inner = key[1]
        if isinstance(inner, list):
            return inner
        if isinstance(inner, tuple) and (not inner or isinstance(inner[0], tuple)):
            return inner
    return key[1:]


def matches(key: SearchKey, ctx: SearchContext, *, now: datetime | None = None) -> bool:
    """Whether the message described by ``ctx`` matches the search ``key``."""
    name = _name(key)
    if name in ("AND", "OR"):
        operands = _operands(key)
        if name == "AND":
            return all(matches(_key(k), ctx, now=now) for k in _sort_cheap_first(operands))
        if len(operands) < 2:
            raise ValueError("OR needs two or more keys")
        return any(matches(_key(k), ctx, now=now) for k in _sort_cheap_first(operands))
    if name == "NOT":
        return not matches(_key(_arg(key, 1)), ctx, now=now)
    if name == "ALL":
        return True
    if name in _SYSTEM_FLAGS:
        return _has_flag(ctx, _SYSTEM_FLAGS[name])
    if name.startswith("UN") and name[2:] in _SYSTEM_FLAGS:
        return not _has_flag(ctx, _SYSTEM_FLAGS[name[2:]])
    if name == "NEW":
        return _has_flag(ctx, "\\recent") and not _has_flag(ctx, "\\seen")
    if name == "OLD":
        return not _has_flag(ctx, "\\recent")
    if name in ("KEYWORD", "UNKEYWORD"):
        return _has_flag(ctx, _text(_arg(key, 1))) == (name == "KEYWORD")
    if name in _HEADER_KEYS:
        return _header_match(ctx, name.lower(), _text(_arg(key, 1)))
    if name == "HEADER":
        return _header_match(ctx, _text(_arg(key, 1)).strip().lower(), _text(_arg(key, 2)))
    if name in ("BODY", "TEXT"):
        wanted = normalize(_text(_arg(key, 1)))
        msg = ctx.message
        return wanted in body_text(msg) or (name == "TEXT" and wanted in header_text(msg))
    if name in _DATE_OPS:
        return _compare(_utc(ctx.internal_date).date(), name, _date(_arg(key, 1)))
    if name.startswith("SENT") and name[4:] in _DATE_OPS:
        return _compare(_sent_day(ctx), name[4:], _date(_arg(key, 1)))
    if name == "LARGER":
        return ctx.size > _int(_arg(key, 1))
    if name == "SMALLER":
        return ctx.size < _int(_arg(key, 1))
    if name == "UID":
        return _in(_arg(key, 1), ctx.uid)
    if name == "SEQ":
        return _in(_arg(key, 1), ctx.seq)
    if name == "MODSEQ":
        return ctx.modseq >= _int(_arg(key, 1))
    if name in ("OLDER", "YOUNGER"):
        age = ((now or datetime.now(UTC)) - _utc(ctx.internal_date)).total_seconds()
        limit = _int(_arg(key, 1))
        return age > limit if name == "OLDER" else age <= limit
    raise ValueError(f"unknown search key {name!r}")


def _key(value: object) -> SearchKey:
    if not isinstance(value, tuple):
        raise ValueError(f"not a search key: {value!r}")
    return value
