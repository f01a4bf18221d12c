"""Evaluating a parsed SEARCH key on one message (RFC 3501 §6.4.4, RFC 7162 §3.1.5).

Flag, size, date and UID keys use the metadata only; header and text keys read the message
(decrypting its blob) once, lazily, and compare decoded text case-insensitively.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import date
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

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
from mssante.imap.sequence import SequenceSet
from mssante.services.mailstore import MessageMeta

if TYPE_CHECKING:
    from mssante.imap.session import Session


class _Lazy:
    def __init__(self, session: Session, meta: MessageMeta) -> None:
        self.session, self.meta = session, meta
        self._msg: email.message.EmailMessage | None = None

    async def message(self) -> email.message.EmailMessage:
        if self._msg is None:
            raw = await asyncio.to_thread(self.session.ctx.store.read, self.meta)
            self._msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert self._msg is not None
        return self._msg


def _header_text(msg: email.message.EmailMessage, name: str) -> list[str]:
    out = []
    for value in msg.get_all(name, []):
        try:
            out.append(str(value))
        except Exception:  # noqa: BLE001 - undecodable header: use its raw form
            out.append(repr(value))
    return out


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
        msg = await lazy.message()
        values = _header_text(msg, key.field)
        if not key.value:
            return bool(values)
        wanted = key.value.casefold()
        return any(wanted in v.casefold() for v in values)
    if isinstance(key, SearchText):
        msg = await lazy.message()
        wanted = key.value.casefold()
        text = _body_text(msg)
        if not key.body_only:
            text = "\n".join(f"{k}: {v}" for k, v in msg.items()) + "\n" + text
        return wanted in text.casefold()
    return False


__all__ = ["SequenceSet", "evaluate"]
