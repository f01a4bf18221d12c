"""Selected-state commands: SELECT/EXAMINE, FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, IDLE.

The session keeps a snapshot of the folder as the client knows it (sequence numbers are
positions in it); `sync` compares it with the store and sends EXISTS, EXPUNGE (or VANISHED
with QRESYNC, RFC 7162 §3.2.10) and FLAGS updates — expunges only where RFC 3501 §7.4.1
allows them (never during FETCH, STORE or SEARCH).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from mssante.imap import command_args as A
from mssante.imap import parser as P
from mssante.imap.fetch_items import FetchAttr, FetchBody
from mssante.imap.message import (
    ParsedMessage,
    body,
    bodystructure,
    envelope,
    internaldate_string,
    partial,
    section,
)
from mssante.imap.message_strings import imap_literal
from mssante.imap.search_run import matching
from mssante.imap.sequence import SequenceSet
from mssante.imap.session_consts import FLAGS, PERMANENT_FLAGS
from mssante.services.mailstore import SEEN, MessageMeta

if TYPE_CHECKING:
    from mssante.imap.session import Selection, Session

Handler = Callable[[P.Command], Awaitable[None]]
SYSTEM_FLAGS = frozenset({"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"})


def uid_set(uids: Iterable[int]) -> str:
    """Compact `1:3,7` form of sorted UIDs (RFC 3501 sequence-set)."""
    ordered = sorted(set(uids))
    if not ordered:
        return ""
    parts, start, prev = [], ordered[0], ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def _flags(flags: Iterable[str]) -> str:
    return "(" + " ".join(sorted(flags)) + ")"


def _sel(session: Session) -> Selection:
    assert session.selection is not None
    return session.selection


def targets(session: Session, seq: SequenceSet, by_uid: bool) -> list[tuple[int, MessageMeta]]:
    """(sequence number, message) pairs named by a sequence set or a UID set."""
    snap = _sel(session).snapshot
    if seq.saved:
        seq = SequenceSet(tuple((u, u) for u in _sel(session).saved))
        by_uid = True
    if not snap:
        return []
    if by_uid:
        largest = snap[-1].uid
        return [(i + 1, m) for i, m in enumerate(snap) if seq.contains(m.uid, largest)]
    largest = len(snap)
    return [(i + 1, m) for i, m in enumerate(snap) if seq.contains(i + 1, largest)]


async def select(session: Session, c: P.Command) -> None:
    from mssante.imap.session import Selection, State

    args: A.SelectArgs = c.args[0]
    store, principal = session.ctx.store, session._principal()
    if session.selection is not None:  # RFC 7162 §3.2.11: [CLOSED] before the new one
        session.selection = None
        session.state = State.AUTHENTICATED
        await session.conn.send("* OK [CLOSED] Dossier precedent ferme / Previous closed")
    if args.condstore:
        session.enabled.add("CONDSTORE")
    folder = await asyncio.to_thread(store.resolve, principal, args.mailbox)
    snapshot = await asyncio.to_thread(store.messages, principal, folder)
    readonly = c.name == "EXAMINE"
    keywords = sorted({f for m in snapshot for f in m.flags if not f.startswith("\\")})
    session.selection = Selection(
        folder=folder, readonly=readonly, snapshot=snapshot, keywords=set(keywords)
    )
    session.state = State.SELECTED
    extra = "".join(f" {k}" for k in keywords)
    permanent = "" if readonly else PERMANENT_FLAGS.replace(" \\*", extra + " \\*")
    lines = [
        f"* FLAGS ({FLAGS}{extra})",
        f"* OK [PERMANENTFLAGS ({permanent})] Drapeaux / Flags",
        f"* {len(snapshot)} EXISTS",
        "* 0 RECENT",
    ]
    unseen = next((i + 1 for i, m in enumerate(snapshot) if SEEN not in m.flags), None)
    if unseen is not None:
        lines.append(f"* OK [UNSEEN {unseen}] Premier non lu / First unseen")
    lines += [
        f"* OK [UIDVALIDITY {folder.uidvalidity}] UIDs valides / UIDs valid",
        f"* OK [UIDNEXT {folder.uidnext}] UID suivant / Predicted next UID",
        f"* OK [HIGHESTMODSEQ {folder.highestmodseq}] Modseq",
    ]
    await session.conn.send(*lines)
    q = args.qresync
    if q is not None and "QRESYNC" in session.enabled and q.uidvalidity == folder.uidvalidity:
        vanished = await asyncio.to_thread(store.vanished_since, folder, q.modseq)
        if q.known_uids is not None:
            top = max([*vanished, 1])
            vanished = [u for u in vanished if q.known_uids.contains(u, top)]
        if vanished:
            await session.conn.send(f"* VANISHED (EARLIER) {uid_set(vanished)}")
        for i, m in enumerate(snapshot):
            if m.modseq > q.modseq:
                await session.conn.send(
                    f"* {i + 1} FETCH (UID {m.uid} FLAGS {_flags(m.flags)} MODSEQ ({m.modseq}))"
                )
    await session.ok(c, code="READ-ONLY" if readonly else "READ-WRITE")


async def sync(session: Session, *, expunges: bool) -> None:
    """Send what changed since the client's snapshot (EXISTS, EXPUNGE/VANISHED, FLAGS)."""
    sel = _sel(session)
    current = await asyncio.to_thread(session.ctx.store.messages, session._principal(), sel.folder)
    by_uid = {m.uid: m for m in current}
    lines: list[str] = []
    if expunges:
        gone = [m.uid for m in sel.snapshot if m.uid not in by_uid]
        if gone and "QRESYNC" in session.enabled:
            lines.append(f"* VANISHED {uid_set(gone)}")
        else:
            for seq in sorted(
                (i + 1 for i, m in enumerate(sel.snapshot) if m.uid not in by_uid), reverse=True
            ):
                lines.append(f"* {seq} EXPUNGE")
        kept = [by_uid[m.uid] for m in sel.snapshot if m.uid in by_uid]
    else:
        kept = [by_uid.get(m.uid, m) for m in sel.snapshot]
    old_flags = {m.uid: (m.flags, m.modseq) for m in sel.snapshot}
    known = {m.uid for m in sel.snapshot}
    added = [m for m in current if m.uid not in known and m.uid > max(known, default=0)]
    new_snapshot = kept + added
    for i, m in enumerate(new_snapshot):
        before = old_flags.get(m.uid)
        if before is not None and (
            before[0] != m.flags or (session.condstore and before[1] != m.modseq)
        ):
            modseq = f" MODSEQ ({m.modseq})" if session.condstore else ""
            lines.append(f"* {i + 1} FETCH (UID {m.uid} FLAGS {_flags(m.flags)}{modseq})")
    if added or len(new_snapshot) != len(sel.snapshot):
        lines.append(f"* {len(new_snapshot)} EXISTS")
    sel.snapshot = new_snapshot
    if lines:
        await session.conn.send(*lines)


def _needs_body(args: A.FetchArgs) -> bool:
    names = {i.name for i in args.items if isinstance(i, FetchAttr)}
    return any(isinstance(i, FetchBody) for i in args.items) or bool(names & {
        "ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
    })  # fmt: skip


FETCH_BATCH_MESSAGES = 64  # messages read in one worker-thread call …
FETCH_BATCH_OCTETS = 4 * 1024 * 1024  # … up to about this many octets


def _batches(chosen: list[tuple[int, MessageMeta]]) -> list[list[tuple[int, MessageMeta]]]:
    out: list[list[tuple[int, MessageMeta]]] = []
    octets = 0
    for item in chosen:
        if (
            not out
            or len(out[-1]) >= FETCH_BATCH_MESSAGES
            or octets + item[1].size > FETCH_BATCH_OCTETS
        ):
            out.append([])
            octets = 0
        out[-1].append(item)
        octets += item[1].size
    return out


def _read_batch(session: Session, batch: list[tuple[int, MessageMeta]]) -> list[bytes]:
    return [session.ctx.store.read(m) for _, m in batch]


async def _fetch_one(session: Session, seq: int, m: MessageMeta, args: A.FetchArgs,
                     by_uid: bool, mark_seen: bool, raw: bytes | None = None) -> bytes:  # fmt: skip
    items: list[bytes] = []
    names = {i.name for i in args.items if isinstance(i, FetchAttr)}
    if by_uid or "UID" in names:
        items.append(f"UID {m.uid}".encode())
    msg = None
    if _needs_body(args):
        msg = ParsedMessage(
            raw if raw is not None else await asyncio.to_thread(session.ctx.store.read, m)
        )
    flags = m.flags | ({SEEN} if mark_seen else set())
    if "FLAGS" in names or mark_seen:
        items.append(f"FLAGS {_flags(flags)}".encode())
    for item in args.items:
        if isinstance(item, FetchAttr):
            name = item.name
            if name in ("UID", "FLAGS", "MODSEQ"):
                continue
            if name == "INTERNALDATE":
                items.append(f'INTERNALDATE "{internaldate_string(m.internal_date)}"'.encode())
            elif name == "RFC822.SIZE":
                items.append(f"RFC822.SIZE {m.size}".encode())
            elif msg is not None and name == "ENVELOPE":
                items.append(b"ENVELOPE " + envelope(msg))
            elif msg is not None and name == "BODYSTRUCTURE":
                items.append(b"BODYSTRUCTURE " + bodystructure(msg))
            elif msg is not None and name == "BODY":
                items.append(b"BODY " + body(msg))
            elif msg is not None and name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                spec = {"RFC822": "", "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}[name]
                items.append(name.encode() + b" " + imap_literal(section(msg, spec) or b""))
        elif isinstance(item, FetchBody) and msg is not None:
            data = section(msg, item.section) or b""
            label = f"BODY[{item.section}]"
            if item.partial is not None:
                origin, length = item.partial
                data = partial(data, origin, length)
                label += f"<{origin}>"
            items.append(label.encode() + b" " + imap_literal(data))
    if "MODSEQ" in names or args.changedsince is not None or (mark_seen and session.condstore):
        items.append(f"MODSEQ ({m.modseq})".encode())
    return f"* {seq} FETCH (".encode() + b" ".join(items) + b")"


def handlers(session: Session) -> dict[str, Handler]:
    async def fetch(c: P.Command) -> None:
        args: A.FetchArgs = c.args[0]
        by_uid = c.name.startswith("UID")
        sel = _sel(session)
        if args.changedsince is not None:
            session.enabled.add("CONDSTORE")
        chosen = targets(session, args.sequence, by_uid)
        if args.vanished and args.changedsince is not None and "QRESYNC" in session.enabled:
            gone = await asyncio.to_thread(
                session.ctx.store.vanished_since, sel.folder, args.changedsince
            )
            top = max([*gone, sel.snapshot[-1].uid if sel.snapshot else 1])
            gone = [u for u in gone if args.sequence.contains(u, top)]
            if gone:
                await session.conn.send(f"* VANISHED (EARLIER) {uid_set(gone)}")
        if args.changedsince is not None:
            chosen = [(s, m) for s, m in chosen if m.modseq > args.changedsince]
        peek_only = all(not isinstance(i, FetchBody) or i.peek for i in args.items) and not any(
            isinstance(i, FetchAttr) and i.name in ("RFC822", "RFC822.TEXT") for i in args.items
        )
        to_mark = [
            m.uid for _, m in chosen if not peek_only and not sel.readonly and SEEN not in m.flags
        ]
        marked = set(to_mark)
        # Bodies are read a batch at a time in a worker thread, the next batch while this
        # one is sent: one thread hop per batch, not per message. Draining after each
        # message bounds the memory of a FETCH 1:* on a large folder.
        batches = _batches(chosen) if _needs_body(args) else [chosen]
        ahead: asyncio.Future[list[bytes]] | None = None
        if _needs_body(args) and batches:
            ahead = asyncio.ensure_future(asyncio.to_thread(_read_batch, session, batches[0]))
        try:
            for n, batch in enumerate(batches):
                raws: list[bytes | None] = list(await ahead) if ahead else [None] * len(batch)
                ahead = None
                if _needs_body(args) and n + 1 < len(batches):
                    ahead = asyncio.ensure_future(
                        asyncio.to_thread(_read_batch, session, batches[n + 1])
                    )
                for (seq, m), raw in zip(batch, raws, strict=True):
                    line = await _fetch_one(session, seq, m, args, by_uid, m.uid in marked, raw)
                    session.conn.write(line + b"\r\n")
                    await session.conn.drain()
        finally:
            if ahead is not None:  # a failure above: the read ahead is not wanted
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead
        if to_mark:  # only once every message was read: a failed FETCH changes no flag
            await asyncio.to_thread(
                session.ctx.store.store_flags,
                session._principal(),
                sel.folder,
                to_mark,
                "add",
                [SEEN],
            )
        await session.conn.drain()
        if marked:  # the FETCH lines above already told the client about \Seen
            sel.snapshot = [
                replace(m, flags=m.flags | {SEEN}) if m.uid in marked else m for m in sel.snapshot
            ]
        await session.ok(c)

    async def store(c: P.Command) -> None:
        args: A.StoreArgs = c.args[0]
        sel = _sel(session)
        if sel.readonly:
            await session.conn.send(f"{c.tag} NO [READ-ONLY] Dossier en lecture seule / Read-only")
            return
        by_uid = c.name.startswith("UID")
        bad = [f for f in args.flags if f.startswith("\\") and f not in SYSTEM_FLAGS]
        if bad:  # RFC 9051 §2.3.2: only the defined system flags start with a backslash
            await session.conn.send(f"{c.tag} BAD Drapeau inconnu / Unknown flag {bad[0]}")
            return
        if args.unchangedsince is not None:
            session.enabled.add("CONDSTORE")
        chosen = targets(session, args.sequence, by_uid)
        seq_of = {m.uid: s for s, m in chosen}
        changed, failed = await asyncio.to_thread(
            session.ctx.store.store_flags, session._principal(), sel.folder,
            [m.uid for _, m in chosen], args.action, args.flags, args.unchangedsince,
        )  # fmt: skip
        changed_uids = {uid for uid, _, _ in changed}
        new_keywords = {
            f for _, flags, _ in changed for f in flags if not f.startswith("\\")
        } - sel.keywords
        if new_keywords:  # RFC 3501 §7.2.6: announce the new keywords before their use
            sel.keywords |= new_keywords
            extra = "".join(f" {k}" for k in sorted(sel.keywords))
            permanent = PERMANENT_FLAGS.replace(" \\*", extra + " \\*")
            await session.conn.send(
                f"* FLAGS ({FLAGS}{extra})", f"* OK [PERMANENTFLAGS ({permanent})] Drapeaux"
            )
        for uid, flags, modseq in changed:
            # RFC 7162 §3.1.3: with CONDSTORE a .SILENT store still reports MODSEQ.
            parts = [] if args.silent else [f"FLAGS {_flags(flags)}"]
            if session.condstore:
                parts.append(f"MODSEQ ({modseq})")
            if parts:
                if by_uid or "QRESYNC" in session.enabled:
                    parts.insert(0, f"UID {uid}")
                await session.conn.send(f"* {seq_of[uid]} FETCH ({' '.join(parts)})")
        sel.snapshot = [
            next(
                (MessageMeta(m.id, m.uid, mod, fl, m.size, m.internal_date, m.blob_digest)
                 for uid, fl, mod in changed if uid == m.uid), m)
            if m.uid in changed_uids else m
            for m in sel.snapshot
        ]  # fmt: skip
        if failed:
            ids = failed if by_uid else [seq_of[u] for u in failed]
            await session.ok(c, code=f"MODIFIED {uid_set(ids)}")
        else:
            await session.ok(c)

    async def search(c: P.Command) -> None:
        args: A.SearchArgs = c.args[0]
        sel = _sel(session)
        by_uid = c.name.startswith("UID")
        snapshot = list(sel.snapshot)
        found = [(s, snapshot[s - 1]) for s in await matching(args.key, session, snapshot)]
        numbers = [m.uid if by_uid else s for s, m in found]
        opts = args.return_options
        modseq = max((m.modseq for _, m in found), default=0) if _uses_modseq(args.key) else None
        if opts is None:
            tail = f" (MODSEQ {modseq})" if modseq and numbers else ""
            await session.conn.send("* SEARCH" + "".join(f" {n}" for n in numbers) + tail)
        else:
            if "SAVE" in opts:
                sel.saved = [m.uid for _, m in found]
            parts = [f'(TAG "{c.tag}")'] + (["UID"] if by_uid else [])
            if numbers:
                if "MIN" in opts:
                    parts.append(f"MIN {min(numbers)}")
                if "MAX" in opts:
                    parts.append(f"MAX {max(numbers)}")
                if "ALL" in opts:
                    parts.append(f"ALL {uid_set(numbers)}")
            if "COUNT" in opts:
                parts.append(f"COUNT {len(numbers)}")
            if modseq and numbers:
                parts.append(f"MODSEQ {modseq}")
            if opts - {"SAVE"} or not opts:
                await session.conn.send("* ESEARCH " + " ".join(parts))
        await session.ok(c)

    async def copy(c: P.Command) -> None:
        args: A.CopyArgs = c.args[0]
        sel = _sel(session)
        store, principal = session.ctx.store, session._principal()
        try:
            target = await asyncio.to_thread(store.resolve, principal, args.mailbox)
        except Exception:  # noqa: BLE001 - any lookup failure: the client may create it
            await session.conn.send(f"{c.tag} NO [TRYCREATE] Dossier inexistant / No such mailbox")
            return
        by_uid = c.name.startswith("UID")
        chosen = targets(session, args.sequence, by_uid)
        move = c.name.endswith("MOVE")
        if move and sel.readonly:
            await session.conn.send(f"{c.tag} NO [READ-ONLY] Lecture seule / Read-only")
            return
        uids = [m.uid for _, m in chosen]
        op = store.move if move else store.copy
        pairs = await asyncio.to_thread(op, principal, sel.folder, uids, target)
        code = ""
        if pairs:
            code = (
                f"COPYUID {target.uidvalidity} {uid_set(p[0] for p in pairs)} "
                f"{uid_set(p[1] for p in pairs)}"
            )
        if move:
            if code:
                await session.conn.send(f"* OK [{code}] Deplaces / Moved")
            await sync(session, expunges=True)
            await session.ok(c)
        else:
            await session.ok(c, code=code)

    async def expunge(c: P.Command) -> None:
        sel = _sel(session)
        if sel.readonly:
            await session.conn.send(f"{c.tag} NO [READ-ONLY] Lecture seule / Read-only")
            return
        uids = None
        if c.name == "UID EXPUNGE":
            args: A.ExpungeArgs = c.args[0]
            uids = [m.uid for _, m in targets(session, args.sequence, True)]
        await asyncio.to_thread(session.ctx.store.expunge, session._principal(), sel.folder, uids)
        await sync(session, expunges=True)
        await session.ok(
            c, code=f"HIGHESTMODSEQ {sel.folder.highestmodseq}" if session.condstore else ""
        )

    async def check(c: P.Command) -> None:
        await sync(session, expunges=True)
        await session.ok(c)

    async def close(c: P.Command) -> None:
        from mssante.imap.session import State

        sel = _sel(session)
        if c.name == "CLOSE" and not sel.readonly:
            await asyncio.to_thread(session.ctx.store.expunge, session._principal(), sel.folder)
        session.selection = None
        session.state = State.AUTHENTICATED
        await session.ok(c)

    return {
        "FETCH": fetch, "UID FETCH": fetch, "STORE": store, "UID STORE": store,
        "SEARCH": search, "UID SEARCH": search, "COPY": copy, "UID COPY": copy,
        "MOVE": copy, "UID MOVE": copy, "EXPUNGE": expunge, "UID EXPUNGE": expunge,
        "CHECK": check, "CLOSE": close, "UNSELECT": close,
    }  # fmt: skip


def _uses_modseq(key: object) -> bool:
    from mssante.imap.search_keys import SearchModSeq

    if isinstance(key, SearchModSeq):
        return True
    return (
        any(_uses_modseq(k) for k in getattr(key, "keys", ()))
        or _uses_modseq(getattr(key, "key", None))
        if key is not None
        else False
    )


def cmd_idle_for(session: Session) -> Handler:
    async def idle(c: P.Command) -> None:
        """IDLE (RFC 2177): changes are pushed within a second, until DONE."""
        await session.conn.send("+ En attente / idling")
        sel = session.selection
        queue = session.ctx.store.bus.watch(sel.folder.id) if sel is not None else None
        reader = asyncio.ensure_future(session.conn.readline())
        try:
            while True:
                waiters: set[asyncio.Future[object]] = {reader}  # type: ignore[arg-type]
                getter = asyncio.ensure_future(queue.get()) if queue is not None else None
                if getter is not None:
                    waiters.add(getter)  # type: ignore[arg-type]
                done, _ = await asyncio.wait(
                    waiters, timeout=session.ctx.limits.idle_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                if getter is not None and not getter.done():
                    getter.cancel()
                if not done:
                    await session.conn.send("* BYE Inactivite / Idle timeout")
                    session.logged_out = True
                    return
                if reader in done:
                    line = reader.result()
                    if line is None:
                        session.logged_out = True
                        return
                    if line.strip().upper() == b"DONE":
                        await session.ok(c)
                    else:
                        await session.conn.send(f"{c.tag} BAD DONE attendu / Expected DONE")
                    return
                if session.selection is not None:
                    await sync(session, expunges=True)
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
            if queue is not None and sel is not None:
                session.ctx.store.bus.unwatch(sel.folder.id, queue)

    return idle
