"""LIST and LSUB (RFC 3501 §6.3.8, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154
SPECIAL-USE, RFC 3348 CHILDREN): patterns, attributes and the STATUS that follows."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from mssante.imap import command_args as A
from mssante.imap import parser as P
from mssante.imap.message_strings import imap_astring
from mssante.imap.utf7 import encode_mailbox_name
from mssante.services.mailstore import DELIMITER, Folder

if TYPE_CHECKING:
    from mssante.imap.session import Session


def wire_name(session: Session, name: str) -> bytes:
    """A mailbox name as sent: modified UTF-7 (RFC 3501 §5.1.3) unless UTF-8 is enabled."""
    return imap_astring(name if session.conn.utf8 else encode_mailbox_name(name))


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """`*` matches anything, `%` anything but the hierarchy delimiter (RFC 3501 §6.3.8)."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _all_names(folders: list[Folder]) -> dict[str, Folder | None]:
    """Every selectable folder, plus the implied parents (\\Noselect) of shared ones."""
    names: dict[str, Folder | None] = {}
    for folder in folders:
        names[folder.imap_name] = folder
    for folder in folders:
        parts = folder.imap_name.split(DELIMITER)
        for i in range(1, len(parts)):
            names.setdefault(DELIMITER.join(parts[:i]), None)
    return names


async def list_responses(session: Session, c: P.Command) -> list[bytes]:
    args: A.ListArgs = c.args[0]
    lsub = c.name == "LSUB"
    principal = session._principal()
    folders = await asyncio.to_thread(session.ctx.store.folders_for, principal)
    names = _all_names(folders)
    if not args.patterns or args.patterns == ("",):
        # RFC 3501: an empty pattern asks for the delimiter and the root.
        return [f'* {c.name} (\\Noselect) "{DELIMITER}" ""'.encode()]
    subscribed: set[str] = set()
    if lsub or "SUBSCRIBED" in args.selection or "SUBSCRIBED" in args.return_options:
        subscribed = await asyncio.to_thread(session.ctx.store.subscriptions, principal)
    if lsub or "SUBSCRIBED" in args.selection:
        # RFC 3501 §6.3.9: a subscription outlives its mailbox.
        for sub in subscribed:
            names.setdefault(sub, None)
    regexes = [pattern_regex(args.reference + p) for p in args.patterns]
    out: list[bytes] = []
    for name in sorted(names, key=lambda n: (n != "INBOX", n)):
        if not any(r.match(name) for r in regexes):
            continue
        folder = names[name]
        childinfo = False
        if lsub or "SUBSCRIBED" in args.selection:
            if name not in subscribed:
                # RFC 5258 §3.5: RECURSIVEMATCH lists a parent whose children match.
                if "RECURSIVEMATCH" in args.selection and any(
                    other.startswith(name + DELIMITER) for other in subscribed
                ):
                    childinfo = True
                else:
                    continue
        if "SPECIAL-USE" in args.selection and (folder is None or not folder.special_use):
            continue
        if childinfo:
            marks = "\\NonExistent" if folder is None else ""
            out.append(
                f'* LIST ({marks}) "{DELIMITER}" '.encode()
                + wire_name(session, name)
                + b' (CHILDINFO ("SUBSCRIBED"))'
            )
            continue
        attrs: list[str] = []
        if folder is None and not (lsub and name in subscribed):
            # RFC 5258 §3: an implied parent that does not exist is \NonExistent there.
            attrs.append("\\NonExistent" if args.extended else "\\Noselect")
        children = any(other.startswith(name + DELIMITER) for other in names)
        if not lsub:
            attrs.append("\\HasChildren" if children else "\\HasNoChildren")
        if (
            folder is not None
            and folder.special_use
            and (
                not args.extended
                or "SPECIAL-USE" in args.return_options
                or "SPECIAL-USE" in args.selection
            )
        ):
            attrs.append(folder.special_use)
        if name in subscribed and (
            "SUBSCRIBED" in args.return_options or "SUBSCRIBED" in args.selection
        ):
            attrs.append("\\Subscribed")
        line = f'* {c.name} ({" ".join(attrs)}) "{DELIMITER}" '.encode() + wire_name(session, name)
        out.append(line)
        if args.status_items and folder is not None:
            out.append(await session.status_line(folder, args.status_items))
    return out
