"""Webhooks of the integration API (issue 7 item 5): subscriptions per BAL, events, the
delivery log and the work queue of the sender (`mssante.http.webhook_worker`).

* An event is written by :func:`emit` in the transaction of the change it describes (a
  delivery into a BAL's INBOX: ``message.received``; a delivery status change of a message
  the BAL sent: ``message.status``), with one ``webhook_deliveries`` row per matching
  subscription. Nothing is sent before the commit: the worker is woken after it through the
  :class:`~mssante.services.changes.ChangeBus` (pseudo-folder :data:`WAKE`; on PostgreSQL
  the same ``pg_notify`` reaches the other processes).
* The queue is ``webhook_deliveries`` (`mssante.services.webhook_queue`): leased rows,
  the events of one message in order, retries with backoff, given up after 24 hours.
* Secrets are needed to sign, so they cannot be hashed: they are sealed with AES-256-GCM
  under a key derived (HKDF, own label) from the blob keyring's active key, and are shown
  only in the answer that creates the subscription.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, func, insert, select, update

from mssante.domain.errors import NotFound, RuleViolation
from mssante.services import traces
from mssante.services.changes import ChangeBus
from mssante.services.message_summary import rfc3339
from mssante.services.webhook_queue import WAKE, QueueSettings, WebhookQueue
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema_webhooks import (
    webhook_deliveries,
    webhook_events,
    webhook_subscriptions,
)

log = logging.getLogger("mssante.webhooks")

EVENT_TYPES = ("message.received", "message.status")
_SECRET_INFO = b"mssante webhook secret v1"
MAX_SUBSCRIPTIONS = 20  # per BAL


class InvalidWebhook(RuleViolation):
    """A subscription request the rules refuse; `detail` is the French text for the API."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class WebhookSettings(QueueSettings):
    allow_http: bool = False  # http:// to any host (demo, tests); loopback is always allowed


class SecretBox:
    """Seals subscription secrets: ``<key id>:<base64 nonce || AES-GCM ciphertext>``, the
    subscription id as associated data (a sealed secret copied to another row won't open)."""

    def __init__(self, keyring: Any) -> None:
        self.keyring = keyring

    def _key(self, key_id: str) -> bytes:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SECRET_INFO)
        return hkdf.derive(self.keyring.key(key_id))

    def seal(self, secret: str, subscription_id: str) -> str:
        key_id = self.keyring.active_id
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._key(key_id)).encrypt(
            nonce, secret.encode("utf-8"), subscription_id.encode("ascii")
        )
        return f"{key_id}:" + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, subscription_id: str) -> str:
        key_id, _, blob = stored.partition(":")
        raw = base64.b64decode(blob)
        try:
            plain = AESGCM(self._key(key_id)).decrypt(
                raw[:12], raw[12:], subscription_id.encode("ascii")
            )
        except (InvalidTag, KeyError) as exc:
            raise ValueError(f"webhook secret of {subscription_id} cannot be opened") from exc
        return plain.decode("utf-8")


def check_url(url: str, allow_http: bool) -> str:
    """https; http only to a loopback host, or to any host with `allow_http` (demo)."""
    url = url.strip()
    if not url or len(url) > 2000 or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise InvalidWebhook("bad url", "L'URL du webhook est invalide.")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InvalidWebhook("bad url", "L'URL du webhook est invalide.") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidWebhook(
            "bad scheme", "L'URL du webhook doit être en https:// avec un nom d'hôte."
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhook(
            "userinfo", "L'URL du webhook ne doit pas contenir d'identifiants (user:pass@)."
        )
    if parts.fragment:
        raise InvalidWebhook("fragment", "L'URL du webhook ne doit pas contenir de fragment (#).")
    if parts.scheme == "http" and not allow_http and not _loopback(host):
        raise InvalidWebhook(
            "http refused",
            "Les webhooks doivent utiliser https:// (http:// n'est accepté que vers la "
            "machine locale).",
        )
    return url


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_secret(secret: str | None) -> str:
    if secret is None:
        return "whsec_" + secrets.token_urlsafe(32)
    if not 16 <= len(secret) <= 256 or not all(0x21 <= ord(c) <= 0x7E for c in secret):
        raise InvalidWebhook(
            "bad secret",
            "Le secret doit compter de 16 à 256 caractères ASCII visibles.",
        )
    return secret


def check_events(events: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(e.strip() for e in events))
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if not chosen or unknown:
        raise InvalidWebhook(
            "bad events",
            "Événements possibles : " + ", ".join(EVENT_TYPES) + ".",
        )
    return chosen


# -- events (inside the caller's transaction) --------------------------------------------


def emit(
    conn: Connection,
    mailbox: str,
    event_type: str,
    message_key: str,
    data: Callable[[], dict[str, Any]] | dict[str, Any],
) -> int:
    """Write one event for `mailbox` and a delivery per subscription to it, in the
    caller's transaction; `data` is built only when someone subscribed. Returns the
    number of deliveries queued."""
    subscribed = [
        row.id
        for row in conn.execute(
            select(webhook_subscriptions.c.id, webhook_subscriptions.c.events).where(
                webhook_subscriptions.c.mailbox == mailbox.lower(),
                webhook_subscriptions.c.active.is_(True),
            )
        )
        if event_type in row.events.split(",")
    ]
    if not subscribed:
        return 0
    now = utcnow()
    event_id = str(uuid.uuid4())
    body = {
        "id": event_id,
        "type": event_type,
        "created_at": rfc3339(now),
        "mailbox": mailbox.lower(),
        "data": data() if callable(data) else data,
    }
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    seq = conn.execute(
        insert(webhook_events).values(
            id=event_id,
            mailbox=mailbox.lower(),
            type=event_type,
            message_key=message_key[:255],
            payload=payload,
            created_at=now,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    conn.execute(
        insert(webhook_deliveries),
        [
            {
                "subscription_id": sub,
                "event_seq": seq,
                "message_key": message_key[:255],
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for sub in subscribed
        ],
    )
    ChangeBus.touched(conn, WAKE)
    return len(subscribed)


# -- the service -------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    id: str
    mailbox: str
    url: str
    events: tuple[str, ...]
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "created_at": rfc3339(self.created_at),
        }


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row.id,
        mailbox=row.mailbox,
        url=row.url,
        events=tuple(e for e in row.events.split(",") if e),
        created_at=as_utc(row.created_at) or utcnow(),
    )


def _delivery(row: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": str(row.id),
        "event_id": row.event_id,
        "event": row.type,
        "attempts": int(row.attempts),
        "status": row.status,
        "created_at": rfc3339(row.created_at),
    }
    if row.last_status_code is not None:
        item["last_status_code"] = int(row.last_status_code)
    if row.last_error:
        item["last_error"] = row.last_error
    if row.status == "pending" and row.next_attempt_at is not None:
        item["next_attempt_at"] = rfc3339(row.next_attempt_at)
    if row.delivered_at is not None:
        item["delivered_at"] = rfc3339(row.delivered_at)
    return item


_LOG_COLUMNS = (
    webhook_deliveries.c.id,
    webhook_deliveries.c.status,
    webhook_deliveries.c.attempts,
    webhook_deliveries.c.next_attempt_at,
    webhook_deliveries.c.last_status_code,
    webhook_deliveries.c.last_error,
    webhook_deliveries.c.created_at,
    webhook_deliveries.c.delivered_at,
    webhook_events.c.id.label("event_id"),
    webhook_events.c.type,
)


class WebhookService:
    def __init__(self, db: Database, keyring: Any, settings: WebhookSettings) -> None:
        self.db = db
        self.box = SecretBox(keyring)
        self.settings = settings
        self.queue = WebhookQueue(db, self.box, settings)

    # -- management (the API checks the caller's right to the BAL first) -------------------

    def subscribe(
        self,
        mailbox: str,
        url: str,
        events: Sequence[str],
        secret: str | None = None,
        actor: str | None = None,
    ) -> tuple[Subscription, str]:
        """Create a subscription; returns it with its secret (never shown again)."""
        url = check_url(url, self.settings.allow_http)
        chosen = check_events(events)
        secret = check_secret(secret)
        sub_id = str(uuid.uuid4())
        now = utcnow()
        with self.db.write() as conn:
            count = conn.execute(
                select(func.count()).where(
                    webhook_subscriptions.c.mailbox == mailbox.lower(),
                    webhook_subscriptions.c.active.is_(True),
                )
            ).scalar_one()
            if count >= MAX_SUBSCRIPTIONS:
                raise InvalidWebhook(
                    "too many",
                    f"Une BAL ne peut avoir plus de {MAX_SUBSCRIPTIONS} abonnements actifs.",
                )
            conn.execute(
                insert(webhook_subscriptions).values(
                    id=sub_id,
                    mailbox=mailbox.lower(),
                    url=url,
                    events=",".join(chosen),
                    secret=self.box.seal(secret, sub_id),
                    created_at=now,
                    active=True,
                    created_by=actor,
                )
            )
            traces.record(
                conn,
                "webhook.subscribed",
                mailbox=mailbox.lower(),
                actor=actor,
                detail=f"{sub_id} {','.join(chosen)} {urlsplit(url).netloc}"[:500],
            )
        sub = Subscription(sub_id, mailbox.lower(), url, chosen, now)
        return sub, secret

    def subscriptions(self, mailbox: str) -> list[Subscription]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(webhook_subscriptions)
                .where(
                    webhook_subscriptions.c.mailbox == mailbox.lower(),
                    webhook_subscriptions.c.active.is_(True),
                )
                .order_by(webhook_subscriptions.c.created_at, webhook_subscriptions.c.id)
            ).all()
        return [_subscription(r) for r in rows]

    def _get(self, conn: Connection, mailbox: str, sub_id: str) -> Subscription:
        row = conn.execute(
            select(webhook_subscriptions).where(
                webhook_subscriptions.c.id == sub_id,
                webhook_subscriptions.c.mailbox == mailbox.lower(),
                webhook_subscriptions.c.active.is_(True),
            )
        ).first()
        if row is None:
            raise NotFound(f"no webhook {sub_id} for {mailbox}")
        return _subscription(row)

    def get(self, mailbox: str, sub_id: str) -> Subscription:
        with self.db.read() as conn:
            return self._get(conn, mailbox, sub_id)

    def delete(self, mailbox: str, sub_id: str, actor: str | None = None) -> None:
        """Deactivate; its pending deliveries fail (the log stays readable by the operator)."""
        with self.db.write() as conn:
            self._get(conn, mailbox, sub_id)
            conn.execute(
                update(webhook_subscriptions)
                .where(webhook_subscriptions.c.id == sub_id)
                .values(active=False)
            )
            conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.subscription_id == sub_id,
                    webhook_deliveries.c.status == "pending",
                )
                .values(status="failed", last_error="abonnement supprimé", next_attempt_at=None)
            )
            traces.record(
                conn, "webhook.deleted", mailbox=mailbox.lower(), actor=actor, detail=sub_id
            )

    def deliveries(
        self, mailbox: str, sub_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The delivery log of a subscription, newest first; `cursor` is the last id seen."""
        limit = max(1, min(limit, 200))
        with self.db.read() as conn:
            self._get(conn, mailbox, sub_id)
            query = (
                select(*_LOG_COLUMNS)
                .join(webhook_events, webhook_events.c.seq == webhook_deliveries.c.event_seq)
                .where(webhook_deliveries.c.subscription_id == sub_id)
                .order_by(webhook_deliveries.c.id.desc())
                .limit(limit + 1)
            )
            if cursor:
                if not cursor.isdigit() or len(cursor) > 18:
                    raise InvalidWebhook("bad cursor", "Le curseur de pagination est invalide.")
                query = query.where(webhook_deliveries.c.id < int(cursor))
            rows = conn.execute(query).all()
        items = [_delivery(r) for r in rows[:limit]]
        return items, (items[-1]["id"] if len(rows) > limit else None)

    def replay(self, mailbox: str, sub_id: str, delivery_id: str) -> dict[str, Any]:
        """Send an event again: a new delivery of the same event, queued after any pending
        delivery of the same message."""
        if not delivery_id.isdigit() or len(delivery_id) > 18:
            raise NotFound(f"no delivery {delivery_id[:40]}")
        now = utcnow()
        with self.db.write() as conn:
            self._get(conn, mailbox, sub_id)
            row = conn.execute(
                select(webhook_deliveries.c.event_seq, webhook_deliveries.c.message_key).where(
                    webhook_deliveries.c.id == int(delivery_id),
                    webhook_deliveries.c.subscription_id == sub_id,
                )
            ).first()
            if row is None:
                raise NotFound(f"no delivery {delivery_id} in {sub_id}")
            new_id = conn.execute(
                insert(webhook_deliveries).values(
                    subscription_id=sub_id,
                    event_seq=row.event_seq,
                    message_key=row.message_key,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            ChangeBus.touched(conn, WAKE)
            created = conn.execute(
                select(*_LOG_COLUMNS)
                .join(webhook_events, webhook_events.c.seq == webhook_deliveries.c.event_seq)
                .where(webhook_deliveries.c.id == new_id)
            ).one()
        return _delivery(created)
