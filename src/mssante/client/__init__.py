"""``mssante.client``: the Python SDK of the mssante integration API (docs/api.md).

Software acting for an applicative BAL (a DUI, an LPS) sends and reads MSSanté mail over
HTTPS, with typed answers and problem documents turned into exceptions::

    from pathlib import Path
    from mssante.client import Client, Document, Patient

    with Client(
        "https://api.operateur.example",
        client_id="mss-app-…",
        client_secret=Path("secret.txt").read_text().strip(),
        verify="ca.pem",
    ) as api:
        sent = api.send(
            "dui@ehpad.mssante.fr",
            ["urgences@hopital.mssante.fr"],
            "Transfert aux urgences",
            "Bonjour, voici le DLU du résident.",
            documents=[Document(Path("dlu.xml"), type_code="74207-2")],
            patient=Patient("279035121518989", "DUPONT", "MARIE", "1927-03-05", "F"),
            read_receipt=True,
        )
        print(sent.id, [(r.address, r.status) for r in sent.recipients])
        for message in api.list_messages("dui@ehpad.mssante.fr", unread=True):
            detail = api.get_message("dui@ehpad.mssante.fr", message.id)

:class:`AsyncClient` has the same methods, awaited. Webhook calls are checked with
:func:`verify_webhook` (or parsed and checked with :func:`parse_webhook`).
"""

from __future__ import annotations

from mssante.client.aio import AsyncClient
from mssante.client.errors import (
    ApiError,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    MailboxSuspended,
    MessageTooLarge,
    NotFound,
    NotInTrustSpace,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from mssante.client.models import (
    FINAL_STATUSES,
    AttachmentInfo,
    Document,
    DocumentInfo,
    File,
    Folder,
    Me,
    MessageDetail,
    MessageStatus,
    MessageSummary,
    Page,
    Patient,
    RecipientStatus,
    Subscription,
    Suggestion,
    WebhookDelivery,
    WebhookEvent,
)
from mssante.client.sync import Client
from mssante.client.webhooks import (
    InvalidSignature,
    parse_webhook,
    verify_signature,
    verify_webhook,
)

__all__ = [
    "FINAL_STATUSES",
    "ApiError",
    "AsyncClient",
    "AttachmentInfo",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Document",
    "DocumentInfo",
    "File",
    "Folder",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidSignature",
    "MailboxSuspended",
    "Me",
    "MessageDetail",
    "MessageStatus",
    "MessageSummary",
    "MessageTooLarge",
    "NotFound",
    "NotInTrustSpace",
    "Page",
    "Patient",
    "RateLimited",
    "RecipientStatus",
    "ServerError",
    "Subscription",
    "Suggestion",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "WebhookDelivery",
    "WebhookEvent",
    "parse_webhook",
    "verify_signature",
    "verify_webhook",
]
