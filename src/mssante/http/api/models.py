"""Request and answer models of the integration API: they make the OpenAPI schema.

Every route declares its answers with these (``response_model`` and `problem_responses`),
so the published schema is what the API really returns (checked by schemathesis).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mssante.http.api.problems import PROBLEM_MEDIA_TYPE

_FORBID = ConfigDict(extra="forbid")

# -- problems ---------------------------------------------------------------------------


class Problem(BaseModel):
    """RFC 9457 problem details; ``type`` is ``https://mssante.fr/problems/<slug>``."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


_PROBLEM_TEXT = {
    400: "Requête invalide (paramètres, corps JSON, clé d'idempotence).",
    401: "Jeton absent, invalide ou expiré (WWW-Authenticate: Bearer).",
    403: "Le jeton ne permet pas cette action sur cette BAL.",
    404: "BAL, message, pièce jointe ou dossier introuvable pour ce jeton.",
    409: "Conflit (BAL suspendue, requête concurrente avec la même clé, accusé déjà envoyé).",
    413: "Message ou requête trop volumineux.",
    415: "Type de contenu non pris en charge.",
    422: "Requête bien formée mais refusée (destinataire, document, règle MSSanté).",
    500: "Erreur interne (identifiant d'erreur dans le détail).",
    503: "Service momentanément indisponible.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for FastAPI: each status answered with a problem document."""
    wanted = sorted(set(statuses) | {400, 401, 500, 503})
    return {
        status: {
            "description": _PROBLEM_TEXT.get(status, "Erreur."),
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in wanted
    }


# -- sending ----------------------------------------------------------------------------


class AttachmentIn(BaseModel):
    model_config = _FORBID

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(default="application/octet-stream", max_length=255)
    content_base64: str | None = Field(
        default=None, description="Contenu en base64 (absent en multipart : partie jointe)."
    )


class DocumentIn(BaseModel):
    model_config = _FORBID

    filename: str = Field(default="document", min_length=1, max_length=255)
    content_type: Literal[
        "text/xml", "application/xml", "application/hl7-v3+xml", "application/pdf"
    ] = "text/xml"
    content_base64: str | None = None
    type_code: str | None = Field(default=None, max_length=64, description="LOINC (JDV_J07).")
    title: str | None = Field(default=None, max_length=500)


class PatientIn(BaseModel):
    model_config = _FORBID

    ins: str = Field(min_length=1, max_length=32)
    ins_oid: str = Field(default="1.2.250.1.213.1.4.8", max_length=64)
    family: str = Field(default="", max_length=255)
    given: str = Field(default="", max_length=255)
    birth_date: date | None = None
    sex: Literal["M", "F", "U", ""] = ""


class SendRequest(BaseModel):
    """A message to send (the object of the ``message`` part in multipart)."""

    model_config = _FORBID

    to: list[str] = Field(default_factory=list, max_length=1000)
    cc: list[str] = Field(default_factory=list, max_length=1000)
    bcc: list[str] = Field(default_factory=list, max_length=1000)
    subject: str = Field(default="", max_length=998)
    text: str = Field(default="", max_length=10_000_000)
    in_reply_to: str | None = Field(default=None, max_length=998)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    documents: list[DocumentIn] = Field(default_factory=list, max_length=20)
    patient: PatientIn | None = None
    use_case: str | None = Field(default=None, max_length=100)
    notify: list[Literal["success", "failure", "delay"]] | None = None
    read_receipt: bool = False
    nil: str | None = Field(default=None, max_length=200, description="X-MSS-NIL.")
    healthcare_facility_type: str | None = Field(default=None, max_length=64)
    practice_setting: str | None = Field(default=None, max_length=64)
    confidentiality: str | None = Field(default=None, max_length=16)


class RecipientStatus(BaseModel):
    address: str
    status: Literal[
        "queued", "relayed", "delivered", "failed", "read", "processed", "processed_with_error"
    ]
    reason: str | None = None
    code: str | None = None
    updated_at: datetime


class MessageStatus(BaseModel):
    """A sent message and the status of each recipient; ``id`` is the send id."""

    id: str
    mailbox: str | None = None
    message_id: str | None = None
    submitted_at: datetime
    idempotency_key: str | None = None
    recipients: list[RecipientStatus]
    notices: list[str] = Field(default_factory=list)


# -- reading ----------------------------------------------------------------------------


class MessageSummary(BaseModel):
    model_config = ConfigDict(populate_by_name=True, from_attributes=True)

    id: str
    folder: str
    message_id: str | None
    sender: str = Field(alias="from")
    to: list[str]
    cc: list[str]
    subject: str
    date: datetime | None
    received_at: datetime
    size: int
    flags: list[str]
    seen: bool
    has_documents: bool
    attachments_count: int


class MessageList(BaseModel):
    items: list[MessageSummary]
    next_cursor: str | None


class AttachmentOut(BaseModel):
    index: int
    filename: str
    content_type: str
    size: int
    url: str


class DocumentOut(BaseModel):
    index: int
    filename: str
    mime_type: str
    type_code: str | None
    type_display: str
    title: str
    patient_ins: str | None
    creation_time: str
    problems: list[str]
    url: str


class MessageDetail(MessageSummary):
    headers: dict[str, list[str]]
    text: str
    html: str | None
    attachments: list[AttachmentOut]
    documents: list[DocumentOut]
    read_receipt_requested: bool
    read_receipt_sent: bool
    problems: list[str] = Field(description="Ce qui n'a pas pu être lu du message.")


class MessagePatch(BaseModel):
    model_config = _FORBID

    seen: bool | None = None
    flagged: bool | None = None
    add_flags: list[str] = Field(default_factory=list, max_length=20)
    remove_flags: list[str] = Field(default_factory=list, max_length=20)
    folder: str | None = Field(default=None, min_length=1, max_length=255)


class FolderOut(BaseModel):
    name: str
    special_use: str | None
    total: int
    unseen: int


class ReceiptOut(BaseModel):
    sent: bool
    to: list[str]
