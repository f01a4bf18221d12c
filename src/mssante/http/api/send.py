"""``POST /api/v1/mailboxes/{address}/messages``: send as a BAL (issue 7).

The body is JSON (contents in base64) or multipart/form-data (a ``message`` JSON part and
streamed ``attachment``/``document`` file parts, see `uploads`). With an
``Idempotency-Key`` header the same request is answered the same way and sent once, also
across a restart (`services.idempotency`); the same key with another request is 422
``idempotency-conflict``.
"""

import asyncio
import base64
import binascii
import hashlib
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from mssante.domain.errors import DomainError
from mssante.http.api.auth import ApiCaller
from mssante.http.api.errors import api_error
from mssante.http.api.models import DocumentIn, MessageStatus, SendRequest, problem_responses
from mssante.http.api.problems import ApiProblem
from mssante.http.api.uploads import (
    MemoryContent,
    SpooledContent,
    Upload,
    media_type,
    read_json,
    read_multipart,
)
from mssante.services.api_send import (
    ApiSendService,
    OutgoingFile,
    PatientData,
    SendCommand,
    is_patient,
)
from mssante.services.idempotency import IdempotencyService, request_digest
from mssante.services.mailboxes import MailboxService

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/SendRequest"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"$ref": "#/components/schemas/SendRequest"},
                    "attachment": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                    },
                    "document": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                    },
                },
            },
            "encoding": {"message": {"contentType": "application/json"}},
        },
    },
}


def _decode(value: str | None, what: str) -> bytes:
    try:
        return base64.b64decode((value or "").encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiProblem(400, "invalid-request", f"{what} : base64 invalide.") from None


def _inline(name: str, filename: str, ctype: str, value: str, **extra: Any) -> OutgoingFile:
    data = _decode(value, name)
    return OutgoingFile(
        filename=filename,
        content_type=ctype,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content=MemoryContent(data),
        **extra,
    )


def _command(request: SendRequest, upload: Upload | None) -> SendCommand:
    """The use case's command; multipart file parts pair, in order, with the entries of
    ``attachments``/``documents`` that have no ``content_base64`` (their metadata)."""
    parts = {"attachment": [], "document": []} if upload is None else {
        kind: [f for f in upload.files if f.field == kind] for kind in ("attachment", "document")
    }  # fmt: skip
    attachments: list[OutgoingFile] = []
    documents: list[OutgoingFile] = []
    for kind, entries, out in (
        ("attachment", request.attachments, attachments),
        ("document", request.documents, documents),
    ):
        files = list(parts[kind])
        for entry in entries:
            extra: dict[str, Any] = {}
            if isinstance(entry, DocumentIn):
                extra = {"type_code": entry.type_code, "title": entry.title}
            if entry.content_base64 is not None:
                out.append(
                    _inline(kind, entry.filename, entry.content_type, entry.content_base64, **extra)
                )
                continue
            if not files:
                raise ApiProblem(
                    400, "invalid-request", f"{kind} « {entry.filename[:80]} » sans contenu."
                )
            part = files.pop(0)
            out.append(
                OutgoingFile(entry.filename, entry.content_type, part.size, part.sha256,
                             SpooledContent(part.file), **extra)
            )  # fmt: skip
        for part in files:  # parts without metadata: their own name and type
            ctype = part.content_type
            out.append(
                OutgoingFile(part.filename, ctype, part.size, part.sha256,
                             SpooledContent(part.file))
            )  # fmt: skip
    patient = request.patient
    return SendCommand(
        to=request.to,
        cc=request.cc,
        bcc=request.bcc,
        subject=request.subject,
        text=request.text,
        in_reply_to=request.in_reply_to,
        attachments=attachments,
        documents=documents,
        patient=PatientData(
            ins=patient.ins,
            ins_oid=patient.ins_oid,
            family=patient.family,
            given=patient.given,
            birth_date=patient.birth_date,
            sex=patient.sex,
        )
        if patient is not None
        else None,
        use_case=request.use_case,
        notify=list(request.notify) if request.notify is not None else None,
        read_receipt=request.read_receipt,
        nil=request.nil,
        healthcare_facility_type=request.healthcare_facility_type,
        practice_setting=request.practice_setting,
        confidentiality=request.confidentiality,
    )


def _canonical(request: SendRequest, command: SendCommand) -> dict[str, Any]:
    """What the idempotency digest covers: the request without contents, plus the files by
    SHA-256 (the same whether they came inline or as multipart parts)."""
    content = request.model_dump(mode="json", exclude={"attachments", "documents"})

    def files(items: list[OutgoingFile]) -> list[dict[str, Any]]:
        return [
            {"filename": f.filename, "content_type": f.content_type, "sha256": f.sha256,
             "type_code": f.type_code, "title": f.title}
            for f in items
        ]  # fmt: skip

    content["attachments"] = files(command.attachments)
    content["documents"] = files(command.documents)
    return content


def _validated(value: Any) -> SendRequest:
    if not isinstance(value, dict):
        raise ApiProblem(400, "invalid-request", "Le corps doit être un objet JSON.")
    try:
        return SendRequest.model_validate(value)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "(corps)" for e in exc.errors()})
        detail = "Champs invalides : " + ", ".join(fields[:10]) + "."
        raise ApiProblem(400, "invalid-request", detail, fields=fields[:50]) from None


def send_router(
    caller: Any,
    sender: ApiSendService,
    mailboxes: MailboxService,
    idempotency: IdempotencyService,
    max_request_bytes: int,
) -> APIRouter:
    router = APIRouter(tags=["messages"])

    @router.post(
        "/api/v1/mailboxes/{address}/messages",
        status_code=202,
        response_model=MessageStatus,
        summary="Envoyer un message au nom de la BAL",
        responses={
            **problem_responses(403, 404, 409, 413, 415, 422),
            202: {
                "description": "Message accepté (mis en file ou remis).",
                "headers": {"Location": {"schema": {"type": "string"}}},
            },
        },
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def send_message(
        address: str,
        request: Request,
        who: Annotated[ApiCaller, Depends(caller)],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> JSONResponse:
        box_address = who.sendable(address)
        if idempotency_key is not None and not idempotency.valid_key(idempotency_key):
            raise ApiProblem(
                400, "invalid-request", "Idempotency-Key : 1 à 255 caractères ASCII visibles."
            )
        box = await asyncio.to_thread(mailboxes.get, box_address)
        kind = media_type(request)
        upload: Upload | None = None
        try:
            if kind == "application/json":
                body = _validated(await read_json(request, max_request_bytes))
            elif kind == "multipart/form-data":

                def limit_for(message: dict[str, Any]) -> tuple[int, str]:
                    rcpts = [str(a) for k in ("to", "cc", "bcc") for a in message.get(k) or []
                             if isinstance(message.get(k), list)]  # fmt: skip
                    limit, patient = sender.limit_for(box.type.value, rcpts)
                    if patient:
                        return min(limit, max_request_bytes), _patient_detail(limit)
                    return min(limit, max_request_bytes), _size_detail(limit)

                upload = await read_multipart(request, max_request_bytes, limit_for)
                body = _validated(upload.message)
            else:
                raise ApiProblem(
                    415,
                    "unsupported-media-type",
                    "Corps attendu : application/json ou multipart/form-data.",
                )
            command = _command(body, upload)
            digest = request_digest("POST", f"/api/v1/mailboxes/{box_address}/messages",
                                    _canonical(body, command))  # fmt: skip
            peer = request.client.host if request.client else "api"
            try:
                if idempotency_key is None:
                    result = await asyncio.to_thread(
                        sender.send, who.principal, box_address, command, peer=peer
                    )
                else:
                    async with idempotency.lock(box_address, idempotency_key):
                        result = await asyncio.to_thread(
                            sender.send, who.principal, box_address, command,
                            peer=peer, key=idempotency_key, digest=digest,
                        )  # fmt: skip
            except DomainError as exc:
                raise api_error(exc) from None
        finally:
            if upload is not None:
                upload.close()
        queue_id = str(result.answer.get("id", ""))
        headers = {
            "Location": f"/api/v1/mailboxes/{quote(box_address, safe='@')}/sent/{queue_id}",
            "Cache-Control": "no-store",
        }
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(result.answer, status_code=result.status_code, headers=headers)

    return router


def _size_detail(limit: int) -> str:
    return f"Le message dépasse la taille autorisée pour cette BAL ({limit} octets)."


def _patient_detail(limit: int) -> str:
    mib = limit / (1024 * 1024)
    return (
        "Un message destiné à un patient (adresse @patient.mssante.fr, messagerie de "
        f"Mon espace santé) ne peut pas dépasser {mib:g} Mo, pièces jointes comprises (R29). "
        "Réduisez ou retirez des pièces jointes ; rien n'a été envoyé."
    )


__all__ = ["is_patient", "send_router"]
