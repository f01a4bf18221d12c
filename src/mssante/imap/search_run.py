"""Evaluating a parsed SEARCH key on one message (RFC 3501 §6.4.4, RFC 7162 §3.1.5).

Flag, size, date and UID keys use the metadata only; header and text keys read the message
(decrypting its blob) once, lazily, and compare decoded text case-insensitively. Header keys
only look at the top-level header through `ParsedMessage` (no MIME parse of the body): on a
10,000-message folder that is most of the cost of `SEARCH HEADER`.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import date
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from mssante.imap.message import ParsedMessage
from mssante.imap.search_keys import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
)
from mssante.imap.search_text import field_texts, normalize
from mssante.imap.sequence import SequenceSet
from mssante.services.mailstore import MailStore, MessageMeta

if TYPE_CHECKING:
    from mssante.imap.session import Session


class _Lazy:
    def __init__(self, session: Session, meta: MessageMeta, raw: bytes | None = None) -> None:
        self.session, self.meta = session, meta
        self._raw = raw
        self._parsed: ParsedMessage | None = None
        self._msg: email.message.EmailMessage | None = None

    async def raw(self) -> bytes:
        if self._raw is None:
            self._raw = await asyncio.to_thread(self.session.ctx.store.read, self.meta)
        return self._raw

    async def parsed(self) -> ParsedMessage:
        if self._parsed is None:
            self._parsed = ParsedMessage(await self.raw())
        return self._parsed

    async def message(self) -> email.message.EmailMessage:
        if self._msg is None:
            self._msg = email.message_from_bytes(await self.raw(), policy=email.policy.default)
        assert self._msg is not None
        return self._msg


def _body_text(msg: email.message.EmailMessage) -> str:
    chunks = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            try:
                chunks.append(str(part.get_content()))
            except Exception:  # noqa: BLE001 - unknown charset or bad encoding
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    chunks.append(payload.decode("utf-8", "replace"))
    return "\n".join(chunks)


def _compare(op: str, day: date, wanted: date) -> bool:
    return {"before": day < wanted, "on": day == wanted, "since": day >= wanted}[op]


async def evaluate(
    key: SearchKey, session: Session, seq: int, meta: MessageMeta, snapshot: list[MessageMeta]
) -> bool:
    return await _eval(key, session, seq, meta, snapshot, _Lazy(session, meta))


BATCH_MESSAGES = 256  # messages read in one worker-thread call …
BATCH_OCTETS = 8 * 1024 * 1024  # … up to about this many octets


async def matching(key: SearchKey, session: Session, snapshot: list[MessageMeta]) -> list[int]:
    """Sequence numbers of the messages of `snapshot` that match `key`.

    Keys are first decided from the metadata alone; the messages still undecided (a header,
    text or sent-date key matters for them) are then read in batches, one worker-thread
    call per batch rather than one per message: the thread hops, not the reading, were most
    of the time of a SEARCH HEADER over a large folder.
    """
    results = [await _decided(key, session, i + 1, m, snapshot) for i, m in enumerate(snapshot)]
    pending = [i for i, r in enumerate(results) if r is None]
    store = session.ctx.store
    start = 0
    while start < len(pending):
        end, octets = start + 1, snapshot[pending[start]].size
        while (
            end < len(pending)
            and end - start < BATCH_MESSAGES
            and octets + snapshot[pending[end]].size <= BATCH_OCTETS
        ):
            octets += snapshot[pending[end]].size
            end += 1
        batch = [snapshot[i] for i in pending[start:end]]
        raws = await asyncio.to_thread(_read_all, store, batch)
        for i, meta, raw in zip(pending[start:end], batch, raws, strict=True):
            lazy = _Lazy(session, meta, raw)
            results[i] = await _eval(key, session, i + 1, meta, snapshot, lazy)
        start = end
    return [i + 1 for i, r in enumerate(results) if r]


def _read_all(store: MailStore, batch: list[MessageMeta]) -> list[bytes]:
    return [store.read(m) for m in batch]


async def _decided(key: SearchKey, session: Session, seq: int, meta: MessageMeta,
                   snapshot: list[MessageMeta]) -> bool | None:  # fmt: skip
    """`key` on this message from its metadata, or None when the message must be read."""
    if isinstance(key, SearchHeader | SearchText) or (isinstance(key, SearchDate) and key.sent):
        return None
    if isinstance(key, SearchAnd | SearchOr):
        stop = isinstance(key, SearchOr)  # the value that decides: True for OR, False for AND
        out: bool | None = not stop
        for sub in key.keys:
            value = await _decided(sub, session, seq, meta, snapshot)
            if value is stop:
                return stop
            if value is None:
                out = None
        return out
    if isinstance(key, SearchNot):
        value = await _decided(key.key, session, seq, meta, snapshot)
        return None if value is None else not value
    return await _eval(key, session, seq, meta, snapshot, _Lazy(session, meta))


async def _eval(key: SearchKey, session: Session, seq: int, meta: MessageMeta,
                snapshot: list[MessageMeta], lazy: _Lazy) -> bool:  # fmt: skip
    if isinstance(key, SearchAll):
        return True
    if isinstance(key, SearchAnd):
        for sub in key.keys:
            if not await _eval(sub, session, seq, meta, snapshot, lazy):
                return False
        return True
    if isinstance(key, SearchOr):
        for sub in key.keys:
            if await _eval(sub, session, seq, meta, snapshot, lazy):
                return True
        return False
    if isinstance(key, SearchNot):
        return not await _eval(key.key, session, seq, meta, snapshot, lazy)
    if isinstance(key, SearchFlag):
        if key.flag == "\\Recent":
            return not key.present
        if key.flag == "\\New":  # NEW = RECENT UNSEEN: never recent here
            return not key.present
        return (key.flag in meta.flags) == key.present
    if isinstance(key, SearchSize):
        return meta.size > key.size if key.op == "larger" else meta.size < key.size
    if isinstance(key, SearchModSeq):
        return meta.modseq >= key.modseq
    if isinstance(key, SearchSequence):
        seqset = key.sequence
        if seqset.saved:
            saved = session.selection.saved if session.selection else []
            return meta.uid in saved
        if key.uid:
            return seqset.contains(meta.uid, snapshot[-1].uid if snapshot else 0)
        return seqset.contains(seq, len(snapshot))
    if isinstance(key, SearchDate):
        if not key.sent:
            return _compare(key.op, meta.internal_date.date(), key.value)
        msg = await lazy.message()
        try:
            sent = parsedate_to_datetime(str(msg["Date"])).date()
        except (TypeError, ValueError, IndexError):
            return False
        return _compare(key.op, sent, key.value)
    if isinstance(key, SearchHeader):
        values = field_texts(await lazy.parsed(), key.field)  # decoded, normalised
        if not key.value:
            return bool(values)
        wanted = normalize(key.value)
        return any(wanted in v for v in values)
    if isinstance(key, SearchText):
        msg = await lazy.message()
        wanted = key.value.casefold()
        text = _body_text(msg)
        if not key.body_only:
            text = "\n".join(f"{k}: {v}" for k, v in msg.items()) + "\n" + text
        return wanted in text.casefold()
    return False


__all__ = ["SequenceSet", "evaluate", "matching"]
