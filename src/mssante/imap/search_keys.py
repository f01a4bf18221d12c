"""SEARCH keys (RFC 3501 §6.4.4, RFC 9051 §6.4.4, RFC 7162 §3.1.5 MODSEQ, RFC 5182 `$`).

Keys become a small tree. The parser is iterative (an explicit stack, no recursion), so
`OR OR OR … ` or `NOT NOT …` of any length cannot exhaust the Python stack. The tree is
simplified while it is built: nested ANDs and ORs are flattened (n-ary `SearchAnd` /
`SearchOr`), `NOT NOT x` is `x`, a one-key group is the key itself. Parenthesised groups
nested deeper than MAX_NESTING, or a resulting tree deeper than MAX_NESTING, are refused,
so a recursive evaluator in the server is safe too.

Shortcuts are desugared: NEW = RECENT UNSEEN, OLD = NOT RECENT, UNSEEN = SearchFlag(\\Seen,
False), KEYWORD k = SearchFlag(k, True); FROM/TO/CC/BCC/SUBJECT x = SearchHeader.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from mssante.imap.lexer import MAX_NUMBER64, SYSTEM_FLAGS, Reader
from mssante.imap.sequence import SequenceSet

__all__ = [
    "MAX_NESTING",
    "SearchAll",
    "SearchAnd",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchKey",
    "SearchModSeq",
    "SearchNot",
    "SearchOr",
    "SearchSequence",
    "SearchSize",
    "SearchText",
    "parse_search_keys",
]

MAX_NESTING = 64


@dataclass(frozen=True)
class SearchAll:
    pass


@dataclass(frozen=True)
class SearchFlag:
    """`\\Seen`, `\\Recent`… (canonical case) or a keyword; `present=False` for UN…."""

    flag: str
    present: bool = True


@dataclass(frozen=True)
class SearchHeader:
    """HEADER field value; FROM/TO/CC/BCC/SUBJECT use field From/To/Cc/Bcc/Subject.
    An empty value matches every message having the field (RFC 3501)."""

    field: str
    value: str


@dataclass(frozen=True)
class SearchText:
    """BODY (`body_only=True`) or TEXT (headers and body)."""

    value: str
    body_only: bool


@dataclass(frozen=True)
class SearchDate:
    """BEFORE/ON/SINCE (internal date) or SENTBEFORE/SENTON/SENTSINCE (`sent=True`,
    the Date: header). Time and timezone are disregarded (RFC 3501)."""

    op: Literal["before", "on", "since"]
    value: date
    sent: bool = False


@dataclass(frozen=True)
class SearchSize:
    op: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True)
class SearchSequence:
    """A sequence set of message numbers, or `UID set` (`uid=True`); `$` is
    `SequenceSet(saved=True)`."""

    sequence: SequenceSet
    uid: bool = False


@dataclass(frozen=True)
class SearchModSeq:
    """MODSEQ [entry-name entry-type] n (RFC 7162 §3.1.5): modseq >= n.
    `entry_flag` is the flag of `"/flags/<flag>"`; `entry_type` priv/shared/all."""

    modseq: int
    entry_flag: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True)
class SearchOr:
    keys: tuple[SearchKey, ...]  # two or more


@dataclass(frozen=True)
class SearchAnd:
    keys: tuple[SearchKey, ...]  # two or more


SearchKey = (
    SearchAll
    | SearchFlag
    | SearchHeader
    | SearchText
    | SearchDate
    | SearchSize
    | SearchSequence
    | SearchModSeq
    | SearchNot
    | SearchOr
    | SearchAnd
)

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "RECENT": ("\\Recent", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "OLD": ("\\Recent", False),
}
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS: dict[str, tuple[Literal["before", "on", "since"], bool]] = {
    "BEFORE": ("before", False),
    "ON": ("on", False),
    "SINCE": ("since", False),
    "SENTBEFORE": ("before", True),
    "SENTON": ("on", True),
    "SENTSINCE": ("since", True),
}
_ENTRY_TYPES = frozenset({"PRIV", "SHARED", "ALL"})


@dataclass(slots=True)
class _Frame:
    """An open NOT, OR, group or the top level. `items` holds the flattened operands
    (a deque so that flattening merges small into large: O(n log n) in all)."""

    kind: Literal["top", "group", "not", "or"]
    items: deque[SearchKey] = field(default_factory=deque)
    depth: int = 0  # deepest operand
    operands: int = 0


_CONSTANT_KEYS: dict[str, SearchKey] = {
    **{name: SearchFlag(flag, present) for name, (flag, present) in _FLAG_KEYS.items()},
    "ALL": SearchAll(),
    "NEW": SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))),
}
_DIGITS = frozenset(b"0123456789$*")


def _simple_key(r: Reader, decode: Callable[[bytes], str], name: str) -> SearchKey:
    """A key that is neither NOT, OR nor a group; `name` is the keyword already read
    ("" when the key starts with a digit, `*` or `$`: a sequence set)."""
    if not name:
        return SearchSequence(r.sequence_set())
    constant = _CONSTANT_KEYS.get(name)
    if constant is not None:
        return constant
    r.space()
    if name in _HEADER_KEYS:
        return SearchHeader(_HEADER_KEYS[name], decode(r.astring()))
    if name in ("BODY", "TEXT"):
        return SearchText(decode(r.astring()), body_only=name == "BODY")
    if name in _DATE_KEYS:
        op, sent = _DATE_KEYS[name]
        return SearchDate(op, r.date(), sent)
    if name in ("KEYWORD", "UNKEYWORD"):
        return SearchFlag(r.atom("a keyword").decode("ascii"), name == "KEYWORD")
    if name == "HEADER":
        header = r.astring_text("header field name")
        r.space()
        return SearchHeader(header, decode(r.astring()))
    if name in ("LARGER", "SMALLER"):
        return SearchSize("larger" if name == "LARGER" else "smaller", r.number(MAX_NUMBER64))
    if name == "UID":
        return SearchSequence(r.sequence_set(), uid=True)
    if name == "MODSEQ":
        return _modseq(r)
    r.fail(f"Unknown search key {name[:40]}")


def _modseq(r: Reader) -> SearchModSeq:
    if not r.at_string():
        return SearchModSeq(r.modseq())
    entry = r.text(r.string(), "entry name")
    if not entry.lower().startswith("/flags/") or len(entry) == len("/flags/"):
        r.fail("Unsupported MODSEQ entry name")
    flag = entry[len("/flags/") :]
    flag = SYSTEM_FLAGS.get(flag.upper(), flag)
    r.space()
    entry_type = r.keyword("an entry type")
    if entry_type not in _ENTRY_TYPES:
        r.fail("Invalid MODSEQ entry type")
    r.space()
    return SearchModSeq(r.modseq(), flag, entry_type.lower())


def _finish(kind: str, items: deque[SearchKey], depth: int) -> tuple[SearchKey, int]:
    """Freeze a flattened AND/OR (or a NOT) into a node and its depth."""
    if kind == "not":
        (key,) = items
        return (key.key, depth - 1) if isinstance(key, SearchNot) else (SearchNot(key), depth + 1)
    if len(items) == 1:
        return items[0], depth
    cls = SearchOr if kind == "or" else SearchAnd
    return cls(tuple(items)), depth + 1


def _attach(parent: _Frame, child: _Frame) -> None:
    """Add a finished frame to its parent, flattening an OR into an OR and a group
    into a group (AND)."""
    parent.operands += 1
    same = (child.kind == "or") == (parent.kind == "or") and "not" not in (
        child.kind,
        parent.kind,
    )
    if same:
        if len(child.items) > len(parent.items):
            child.items.extendleft(reversed(parent.items))
            parent.items = child.items
        else:
            parent.items.extend(child.items)
        parent.depth = max(parent.depth, child.depth)
        return
    node, depth = _finish(child.kind, child.items, child.depth)
    _add(parent, node, depth)


def _add(parent: _Frame, node: SearchKey, depth: int) -> None:
    if depth > MAX_NESTING:
        Reader.fail("Search keys nested too deeply")
    parent.items.append(node)
    parent.depth = max(parent.depth, depth)


def parse_search_keys(r: Reader, decode: Callable[[bytes], str]) -> SearchKey:
    """`search-key *(SP search-key)` up to the end of the command."""
    stack = [_Frame("top")]
    groups = 0
    while True:
        # A key is expected here.
        c = r.peek()
        if c == 0x28:  # "("
            r.pos += 1
            groups += 1
            if groups > MAX_NESTING:
                r.fail("Search keys nested too deeply")
            stack.append(_Frame("group"))
            continue
        word = "" if c in _DIGITS else r.keyword("a search key")
        if word == "NOT" or word == "OR":
            r.space()
            stack.append(_Frame("not" if word == "NOT" else "or"))
            continue
        top = stack[-1]
        top.operands += 1
        simple = _simple_key(r, decode, word)
        _add(top, simple, 2 if type(simple) is SearchAnd else 1)
        while True:  # close the operators and groups this key completes
            if (top.kind == "not" and top.operands == 1) or (
                top.kind == "or" and top.operands == 2
            ):
                pass
            elif top.kind == "group" and r.accept(b")"):
                groups -= 1
            else:
                break
            stack.pop()
            _attach(stack[-1], top)
            top = stack[-1]
        if r.at_end():
            if top.kind != "top":
                r.fail("Incomplete search keys (missing key or ')')")
            if top.depth + 1 > MAX_NESTING:
                r.fail("Search keys nested too deeply")
            return _finish("top", top.items, top.depth)[0]
        r.space()
