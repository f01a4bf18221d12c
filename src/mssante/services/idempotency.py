"""Idempotency keys of API sends (issue 7): the same key never sends twice.

A key is scoped to the sending BAL. Its row (table ``api_idempotency``) is inserted by
`record` inside the transaction of `DeliveryService.accept` that records the envelope, so
"sent but key unknown" and "key known but not sent" cannot happen, even across a crash: a
retry either finds the row (and gets the first answer again) or sends for the first time.
Two concurrent first requests race on the unique constraint (mailbox, key): the loser's
transaction rolls back whole — its message is not recorded — and it answers from the
winner's row. Within one process, requests with the same key are also serialised by
`lock`, so the second simply waits.

The request digest covers the method, the path and the canonical content of the request
(attachments by their SHA-256), so a retry of the same request matches whatever the
multipart boundary or JSON spacing; the same key with another request is a conflict.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema_api import api_idempotency

# RFC 9110 token-like: 1..255 visible ASCII characters (IETF draft idempotency-key-header).
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class StoredAnswer:
    request_digest: str
    queue_id: str
    status_code: int
    answer: dict[str, Any]


def request_digest(method: str, path: str, content: Any) -> str:
    """SHA-256 of the canonical JSON of (method, path, content)."""
    canonical = json.dumps(
        {"method": method.upper(), "path": path, "content": content},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class IdempotencyService:
    def __init__(self, db: Database, ttl_seconds: int) -> None:
        self.db = db
        self.ttl = timedelta(seconds=ttl_seconds)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @staticmethod
    def valid_key(key: str) -> bool:
        return KEY_PATTERN.fullmatch(key) is not None

    @asynccontextmanager
    async def lock(self, mailbox: str, key: str) -> AsyncIterator[None]:
        """Serialise the requests of one (mailbox, key) in this process."""
        ident = (mailbox, key)
        lock = self._locks.setdefault(ident, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._locks.get(ident) is lock:
                del self._locks[ident]

    def lookup(self, mailbox: str, key: str) -> StoredAnswer | None:
        """The answer recorded for this key, unless it expired."""
        with self.db.read() as conn:
            row = conn.execute(
                select(api_idempotency).where(
                    api_idempotency.c.mailbox == mailbox, api_idempotency.c.key == key
                )
            ).first()
        if row is None or _expired(row.expires_at):
            return None
        try:
            answer = json.loads(row.answer)
        except ValueError:  # pragma: no cover - written by us
            answer = {}
        return StoredAnswer(row.request_digest, row.queue_id, int(row.status_code), answer)

    def record(
        self,
        conn: Connection,
        mailbox: str,
        key: str,
        digest: str,
        queue_id: str,
        status_code: int,
        answer: dict[str, Any],
    ) -> None:
        """Insert the key in the caller's transaction (the envelope's); an expired row of the
        same key is replaced. A concurrent insert of the same key raises IntegrityError."""
        now = utcnow()
        conn.execute(
            delete(api_idempotency).where(
                api_idempotency.c.mailbox == mailbox,
                api_idempotency.c.key == key,
                api_idempotency.c.expires_at < now,
            )
        )
        conn.execute(
            insert(api_idempotency).values(
                mailbox=mailbox,
                key=key,
                request_digest=digest,
                queue_id=queue_id,
                status_code=status_code,
                answer=json.dumps(answer, ensure_ascii=False, sort_keys=True),
                created_at=now,
                expires_at=now + self.ttl,
            )
        )

    def key_for(self, queue_id: str) -> str | None:
        """The key a send used (for the delivery status), if any."""
        with self.db.read() as conn:
            value = conn.execute(
                select(api_idempotency.c.key).where(api_idempotency.c.queue_id == queue_id)
            ).scalar_one_or_none()
        return str(value) if value is not None else None

    def prune(self, limit: int = 1000) -> int:
        """Forget expired keys (a few at a time); returns how many were removed."""
        now = utcnow()
        with self.db.write() as conn:
            ids = [
                r.id
                for r in conn.execute(
                    select(api_idempotency.c.id)
                    .where(api_idempotency.c.expires_at < now)
                    .limit(limit)
                )
            ]
            if ids:
                conn.execute(delete(api_idempotency).where(api_idempotency.c.id.in_(ids)))
        return len(ids)


def _expired(expires_at: Any) -> bool:
    moment = as_utc(expires_at)
    return moment is not None and moment < utcnow()
