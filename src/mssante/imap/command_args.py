"""Typed arguments of IMAP commands: `Command.args == (XxxArgs(...),)`.

Commands without arguments (CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, UNSELECT,
EXPUNGE, IDLE, NAMESPACE) have `args == ()`. Mailbox names are decoded (modified UTF-7
or UTF-8) and "INBOX" is upper-cased whatever the client wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mssante.imap.fetch_items import FetchItem
from mssante.imap.search_keys import SearchKey
from mssante.imap.sequence import SequenceSet

__all__ = [
    "AppendArgs",
    "AuthenticateArgs",
    "CopyArgs",
    "CreateArgs",
    "EnableArgs",
    "ExpungeArgs",
    "FetchArgs",
    "IdArgs",
    "ListArgs",
    "LoginArgs",
    "MailboxArgs",
    "QresyncArgs",
    "QuotaRootArgs",
    "RenameArgs",
    "SearchArgs",
    "SelectArgs",
    "SetQuotaArgs",
    "StatusArgs",
    "StoreArgs",
]


@dataclass(frozen=True)
class LoginArgs:
    """LOGIN: both astrings, UTF-8 (anything else is a BAD)."""

    username: str
    password: str


@dataclass(frozen=True)
class AuthenticateArgs:
    """AUTHENTICATE: mechanism upper-cased; SASL-IR initial response base64-decoded.

    `initial_response` is None when absent and b"" for "=" (RFC 4959).
    """

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True)
class EnableArgs:
    capabilities: tuple[str, ...]  # upper-cased, e.g. ("CONDSTORE", "QRESYNC")


@dataclass(frozen=True)
class IdArgs:
    """ID (RFC 2971): None for `ID NIL`, else the (field, value-or-None) pairs."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True)
class QresyncArgs:
    """SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]])) (RFC 7162)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None  # (known seqs, their UIDs)


@dataclass(frozen=True)
class SelectArgs:
    """SELECT and EXAMINE (the command name tells which)."""

    mailbox: str
    condstore: bool = False
    qresync: QresyncArgs | None = None


@dataclass(frozen=True)
class MailboxArgs:
    """DELETE, SUBSCRIBE, UNSUBSCRIBE, GETQUOTAROOT."""

    mailbox: str


@dataclass(frozen=True)
class CreateArgs:
    """CREATE [(USE (\\Drafts …))] (RFC 6154); attributes in canonical case."""

    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True)
class RenameArgs:
    source: str
    destination: str


@dataclass(frozen=True)
class ListArgs:
    """LIST (RFC 3501, 5258, 5819, 6154) and LSUB (one pattern, no options).

    `selection` ⊆ {SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE};
    `return_options` ⊆ {SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS}; `status_items` is
    set with STATUS. `extended` is True when the LIST-EXTENDED syntax was used (selection
    list, pattern list or RETURN), which changes some response rules (RFC 5258 §3).
    Patterns keep their `*` and `%` wildcards; they are decoded like mailbox names.
    """

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    return_options: frozenset[str] = frozenset()
    status_items: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True)
class StatusArgs:
    """STATUS mailbox (items): items upper-cased, from STATUS_ITEMS."""

    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class AppendArgs:
    """APPEND mailbox [(flags)] [date-time] literal. `binary` when sent as literal8 `~{n}`."""

    mailbox: str
    flags: tuple[str, ...]
    internal_date: datetime | None
    message: bytes
    binary: bool = False


@dataclass(frozen=True)
class SearchArgs:
    """SEARCH / UID SEARCH.

    `return_options` is None without RETURN (answer with `* SEARCH`), else a subset of
    {MIN, MAX, ALL, COUNT, SAVE} (answer with ESEARCH, RFC 4731); `RETURN ()` gives
    {ALL} as RFC 4731 §3.1 says. `charset` is the CHARSET given (upper-cased) or None;
    the strings in `key` are already decoded with it.
    """

    key: SearchKey
    charset: str | None = None
    return_options: frozenset[str] | None = None


@dataclass(frozen=True)
class FetchArgs:
    """FETCH / UID FETCH. Macros ALL, FAST, FULL are expanded.

    `changedsince` (RFC 7162 CHANGEDSINCE) implies MODSEQ in every response; the parser
    does not add it to `items`. `vanished` only with UID FETCH and CHANGEDSINCE.
    """

    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    changedsince: int | None = None
    vanished: bool = False


@dataclass(frozen=True)
class StoreArgs:
    """STORE / UID STORE: FLAGS (replace), +FLAGS (add), -FLAGS (remove)."""

    sequence: SequenceSet
    action: Literal["replace", "add", "remove"]
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None


@dataclass(frozen=True)
class CopyArgs:
    """COPY, MOVE, UID COPY, UID MOVE."""

    sequence: SequenceSet
    mailbox: str


@dataclass(frozen=True)
class ExpungeArgs:
    """UID EXPUNGE (RFC 4315)."""

    sequence: SequenceSet


@dataclass(frozen=True)
class QuotaRootArgs:
    """GETQUOTA quota-root (RFC 9208)."""

    root: str


@dataclass(frozen=True)
class SetQuotaArgs:
    """SETQUOTA root ((resource limit)…); resource names upper-cased."""

    root: str
    limits: tuple[tuple[str, int], ...]
