"""Arguments of each IMAP command (RFC 3501 §9, RFC 9051 §9 and the extensions).

Each handler starts right after the command name and reads up to the end of the
command; `parse_command_body` dispatches on the (upper-cased) name.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any, Literal

from mssante.imap.command_args import (
    AppendArgs,
    AuthenticateArgs,
    CopyArgs,
    CreateArgs,
    EnableArgs,
    ExpungeArgs,
    FetchArgs,
    IdArgs,
    ListArgs,
    LoginArgs,
    MailboxArgs,
    QresyncArgs,
    QuotaRootArgs,
    RenameArgs,
    SearchArgs,
    SelectArgs,
    SetQuotaArgs,
    StatusArgs,
    StoreArgs,
)
from mssante.imap.fetch_items import parse_fetch_items
from mssante.imap.lexer import LIST_ATOM, MAX_NUMBER64, Reader
from mssante.imap.search_keys import parse_search_keys
from mssante.imap.sequence import SequenceSet

__all__ = [
    "COMMANDS",
    "LIST_RETURN_OPTIONS",
    "LIST_SELECTION_OPTIONS",
    "NO_ARGUMENT_COMMANDS",
    "SEARCH_CHARSETS",
    "SEARCH_RETURN_OPTIONS",
    "SPECIAL_USE",
    "STATUS_ITEMS",
    "parse_command_body",
]

NO_ARGUMENT_COMMANDS = frozenset(
    {
        "CAPABILITY",
        "CHECK",
        "CLOSE",
        "EXPUNGE",
        "IDLE",
        "LOGOUT",
        "NAMESPACE",
        "NOOP",
        "STARTTLS",
        "UNSELECT",
    }
)
STATUS_ITEMS = frozenset(
    {
        "APPENDLIMIT",
        "DELETED",
        "HIGHESTMODSEQ",
        "MESSAGES",
        "RECENT",
        "SIZE",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
    }
)
LIST_SELECTION_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
SEARCH_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
SPECIAL_USE = {
    a.upper(): a
    for a in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
# CHARSET names accepted by SEARCH → Python codec. Others: BADCHARSET.
SEARCH_CHARSETS = {
    "US-ASCII": "utf-8",  # a superset; 8-bit octets sent anyway are read as UTF-8
    "UTF-8": "utf-8",
    "ISO-8859-1": "latin-1",
    "ISO-8859-15": "iso8859-15",
    "WINDOWS-1252": "cp1252",
}

_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")
_STORE_ITEM = re.compile(rb"[+-]?[A-Za-z.]+")
_STORE_ACTIONS: dict[str, Literal["replace", "add", "remove"]] = {
    "": "replace",
    "+": "add",
    "-": "remove",
}

Handler = Callable[[Reader, str], tuple[Any, ...]]


def _login(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    user = r.astring_text("user name")
    r.space()
    return (LoginArgs(user, r.astring_text("password")),)


def _authenticate(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    mechanism = r.keyword("a SASL mechanism")
    initial: bytes | None = None
    if r.more():
        token = r.match(_BASE64, "a base64 initial response")
        try:
            initial = b"" if token == b"=" else base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            r.fail("Invalid base64 initial response")
    return (AuthenticateArgs(mechanism, initial),)


def _enable(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    capabilities = [r.keyword("a capability")]
    while r.more():
        capabilities.append(r.keyword("a capability"))
    return (EnableArgs(tuple(capabilities)),)


def _id(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    if r.peek() != ord("("):
        if r.keyword("NIL or '('") != "NIL":
            r.fail("Expected NIL or '('")
        return (IdArgs(None),)

    def pair() -> tuple[str, str | None]:
        # RFC 2971 wants strings; atoms are tolerated (NIL is the absent value).
        key = r.astring().decode("utf-8", "replace")
        r.space()
        if r.at_string():
            return key, r.string().decode("utf-8", "replace")
        value = r.astring()
        return key, None if value.upper() == b"NIL" else value.decode("utf-8", "replace")

    return (IdArgs(tuple(r.paren_list(pair))),)


def _sequence_pair(r: Reader) -> tuple[SequenceSet, SequenceSet]:
    r.expect(b"(", "'('")
    seqs = r.sequence_set(allow_saved=False, allow_star=False)
    r.space()
    uids = r.sequence_set(allow_saved=False, allow_star=False)
    r.expect(b")", "')'")
    return seqs, uids


def _qresync(r: Reader) -> QresyncArgs:
    r.expect(b"(", "'('")
    uidvalidity = r.number(minimum=1, what="a UIDVALIDITY")
    r.space()
    modseq = r.modseq()
    known: SequenceSet | None = None
    match: tuple[SequenceSet, SequenceSet] | None = None
    if r.more():
        if r.peek() == ord("("):
            match = _sequence_pair(r)
        else:
            known = r.sequence_set(allow_saved=False, allow_star=False)
            if r.more():
                match = _sequence_pair(r)
    r.expect(b")", "')'")
    return QresyncArgs(uidvalidity, modseq, known, match)


def _select(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    mailbox = r.mailbox()
    condstore = False
    qresync: QresyncArgs | None = None

    def param() -> None:
        nonlocal condstore, qresync
        keyword = r.keyword("a SELECT parameter")
        if keyword == "CONDSTORE":
            condstore = True
        elif keyword == "QRESYNC" and qresync is None:
            r.space()
            qresync = _qresync(r)
        else:
            r.fail(f"Unknown SELECT parameter {keyword[:40]}")

    if r.more():
        r.paren_list(param)
    return (SelectArgs(mailbox, condstore, qresync),)


def _mailbox(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    return (MailboxArgs(r.mailbox()),)


def _special_use(r: Reader) -> str:
    r.expect(b"\\", "a special-use attribute")
    attribute = "\\" + r.atom("a special-use attribute").decode("ascii")
    return SPECIAL_USE.get(attribute.upper(), attribute)


def _create(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    mailbox = r.mailbox()
    uses: list[str] = []

    def param() -> None:
        if r.keyword("a CREATE parameter") != "USE":
            r.fail("Unknown CREATE parameter")
        r.space()
        uses.extend(r.paren_list(lambda: _special_use(r)))

    if r.more():
        r.paren_list(param)
    return (CreateArgs(mailbox, tuple(uses)),)


def _rename(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    source = r.mailbox()
    r.space()
    return (RenameArgs(source, r.mailbox()),)


def _status_item(r: Reader) -> str:
    item = r.keyword("a status item")
    if item not in STATUS_ITEMS:
        r.fail(f"Unknown status item {item[:40]}")
    return item


def _list(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    extended = False
    selection: frozenset[str] = frozenset()
    if name == "LIST" and r.peek() == ord("("):
        extended = True
        selection = frozenset(r.paren_list(lambda: r.keyword("a selection option")))
        if selection - LIST_SELECTION_OPTIONS:
            r.fail("Unknown LIST selection option")
        if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
            r.fail("RECURSIVEMATCH needs another selection option")
        r.space()
    reference = r.mailbox()
    r.space()
    if name == "LIST" and r.peek() == ord("("):
        extended = True
        patterns = tuple(r.paren_list(lambda: r.mailbox(LIST_ATOM), allow_empty=False))
    else:
        patterns = (r.mailbox(LIST_ATOM),)
    options: set[str] = set()
    status: list[str] | None = None
    if name == "LIST" and r.more():
        if r.keyword("RETURN") != "RETURN":
            r.fail("Expected RETURN")
        r.space()
        extended = True

        def option() -> None:
            nonlocal status
            keyword = r.keyword("a return option")
            if keyword not in LIST_RETURN_OPTIONS:
                r.fail(f"Unknown LIST return option {keyword[:40]}")
            if keyword == "STATUS":
                r.space()
                status = [*(status or []), *r.paren_list(lambda: _status_item(r), False)]
            options.add(keyword)

        r.paren_list(option)
    statuses = None if status is None else tuple(dict.fromkeys(status))
    return (ListArgs(reference, patterns, selection, frozenset(options), statuses, extended),)


def _status(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    mailbox = r.mailbox()
    r.space()
    items = r.paren_list(lambda: _status_item(r), allow_empty=False)
    return (StatusArgs(mailbox, tuple(dict.fromkeys(items))),)


def _append(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    mailbox = r.mailbox()
    r.space()
    flags: tuple[str, ...] = ()
    internal_date = None
    if r.peek() == ord("("):
        flags = tuple(dict.fromkeys(r.paren_list(r.flag)))
        r.space()
    if r.peek() == ord('"'):
        internal_date = r.date_time()
        r.space()
    binary = r.peek() == ord("~")
    if not r.at_literal():
        r.fail("Expected the message as a literal")
    message = r.literal(allow_binary=True)
    return (AppendArgs(mailbox, flags, internal_date, message, binary),)


def _search(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    options: frozenset[str] | None = None
    charset: str | None = None
    if r.peek_keyword() == "RETURN":
        r.keyword()
        r.space()
        options = frozenset(r.paren_list(lambda: r.keyword("a return option")))
        if options - SEARCH_RETURN_OPTIONS:
            r.fail("Unknown SEARCH return option")
        options = options or frozenset({"ALL"})
        r.space()
    if r.peek_keyword() == "CHARSET":
        r.keyword()
        r.space()
        charset = r.astring_text("charset").upper()
        if charset not in SEARCH_CHARSETS:
            r.fail("Unsupported charset", "BADCHARSET")
        r.space()
    codec = SEARCH_CHARSETS[charset or "UTF-8"]
    key = parse_search_keys(r, lambda raw: raw.decode(codec, "replace"))
    return (SearchArgs(key, charset, options),)


def _fetch(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    sequence = r.sequence_set()
    r.space()
    items = parse_fetch_items(r)
    changedsince: int | None = None
    vanished = False

    def modifier() -> None:
        nonlocal changedsince, vanished
        keyword = r.keyword("a FETCH modifier")
        if keyword == "CHANGEDSINCE" and changedsince is None:
            r.space()
            changedsince = r.modseq()
        elif keyword == "VANISHED" and not vanished:
            vanished = True
        else:
            r.fail(f"Unknown or repeated FETCH modifier {keyword[:40]}")

    if r.more():
        r.paren_list(modifier, allow_empty=False)
    if vanished and (name != "UID FETCH" or changedsince is None):
        r.fail("VANISHED needs UID FETCH and CHANGEDSINCE")
    return (FetchArgs(sequence, tuple(dict.fromkeys(items)), changedsince, vanished),)


def _store(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    sequence = r.sequence_set()
    r.space()
    unchangedsince: int | None = None

    def modifier() -> None:
        nonlocal unchangedsince
        if r.keyword("a STORE modifier") != "UNCHANGEDSINCE" or unchangedsince is not None:
            r.fail("Unknown or repeated STORE modifier")
        r.space()
        unchangedsince = r.modseq()

    if r.peek() == ord("("):
        r.paren_list(modifier, allow_empty=False)
        r.space()
    item = r.match(_STORE_ITEM, "FLAGS, +FLAGS or -FLAGS").decode("ascii").upper()
    sign, base = (item[0], item[1:]) if item[0] in "+-" else ("", item)
    if base not in ("FLAGS", "FLAGS.SILENT"):
        r.fail("Expected FLAGS, +FLAGS or -FLAGS")
    r.space()
    if r.peek() == ord("("):
        flags = r.paren_list(r.flag)
    else:
        flags = [r.flag()]
        while r.more():
            flags.append(r.flag())
    action = _STORE_ACTIONS[sign]
    flag_tuple = tuple(dict.fromkeys(flags))
    return (StoreArgs(sequence, action, base.endswith(".SILENT"), flag_tuple, unchangedsince),)


def _copy(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    sequence = r.sequence_set()
    r.space()
    return (CopyArgs(sequence, r.mailbox()),)


def _uid_expunge(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    return (ExpungeArgs(r.sequence_set()),)


def _getquota(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    return (QuotaRootArgs(r.astring_text("quota root")),)


def _setquota(r: Reader, name: str) -> tuple[Any, ...]:
    r.space()
    root = r.astring_text("quota root")
    r.space()

    def limit() -> tuple[str, int]:
        resource = r.keyword("a resource name")
        r.space()
        return resource, r.number(MAX_NUMBER64, what="a resource limit")

    return (SetQuotaArgs(root, tuple(r.paren_list(limit))),)


def _no_args(r: Reader, name: str) -> tuple[Any, ...]:
    return ()


COMMANDS: dict[str, Handler] = {
    **dict.fromkeys(NO_ARGUMENT_COMMANDS, _no_args),
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "ID": _id,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _mailbox,
    "SUBSCRIBE": _mailbox,
    "UNSUBSCRIBE": _mailbox,
    "GETQUOTAROOT": _mailbox,
    "RENAME": _rename,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "APPEND": _append,
    "SEARCH": _search,
    "UID SEARCH": _search,
    "FETCH": _fetch,
    "UID FETCH": _fetch,
    "STORE": _store,
    "UID STORE": _store,
    "COPY": _copy,
    "UID COPY": _copy,
    "MOVE": _copy,
    "UID MOVE": _copy,
    "UID EXPUNGE": _uid_expunge,
    "GETQUOTA": _getquota,
    "SETQUOTA": _setquota,
}


def parse_command_body(r: Reader) -> tuple[str, tuple[Any, ...]]:
    """Command name (upper-case, "UID FETCH" style) and its arguments; the reader is
    positioned right after the tag and its space."""
    name = r.keyword("a command name")
    if name == "UID":
        r.space()
        name = "UID " + r.keyword("a UID command")
    handler = COMMANDS.get(name)
    if handler is None:
        r.fail(f"Unknown command {name[:40]}")
    args = handler(r, name)
    r.finish()
    return name, args
