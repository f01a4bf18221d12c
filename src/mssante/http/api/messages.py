"""The mailbox routes of the integration API: folders, list, read, download, change, delete.

``{address}`` is a BAL the bearer token covers, else 404 (its existence is not revealed).
The work is done by `services.api_messages.ApiMailboxService` through the IMAP mail store,
so the API and IMAP clients see the same flags and folders.
"""

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mssante.domain.errors import DomainError
from mssante.http.api.auth import ApiCaller
from mssante.http.api.errors import api_error
from mssante.http.api.models import (
    AttachmentOut,
    DocumentOut,
    FolderOut,
    MessageDetail,
    MessageList,
    MessagePatch,
    MessageSummary,
    ReceiptOut,
    problem_responses,
)
from mssante.http.api.problems import ApiProblem
from mssante.services.api_messages import FLAGGED, ApiMailboxService, Summary
from mssante.services.mailstore import SEEN

CHUNK = 64 * 1024
_BINARY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Le contenu, tel quel.",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}
MessageId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _base(address: str) -> str:
    return f"/api/v1/mailboxes/{quote(address, safe='@')}/messages"


def _summary(item: Summary) -> MessageSummary:
    return MessageSummary.model_validate(item, from_attributes=True)


async def _run(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(func, *args, **kwargs)
    except DomainError as exc:
        raise api_error(exc) from None


def _download(data: bytes, filename: str, content_type: str) -> StreamingResponse:
    view = memoryview(data)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])

    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                         for c in filename) or "fichier"  # fmt: skip
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    return StreamingResponse(
        chunks(),
        media_type=content_type,
        headers={
            "Content-Disposition": disposition,
            "Content-Length": str(len(data)),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


def messages_router(caller: Any, service: ApiMailboxService) -> APIRouter:
    router = APIRouter(tags=["messages"])
    Who = Annotated[ApiCaller, Depends(caller)]

    @router.get(
        "/api/v1/mailboxes/{address}/folders",
        response_model=list[FolderOut],
        summary="Dossiers de la BAL",
        responses=problem_responses(404),
    )
    async def list_folders(address: str, who: Who) -> list[FolderOut]:
        box = who.readable(address)

        def run() -> list[FolderOut]:
            out = []
            for folder in service.folders(who.principal, box):
                status = service.store.status(who.principal, folder)
                out.append(FolderOut(name=folder.name, special_use=folder.special_use,
                                     total=status.messages, unseen=status.unseen))  # fmt: skip
            return out

        result: list[FolderOut] = await _run(run)
        return result

    @router.get(
        "/api/v1/mailboxes/{address}/messages",
        response_model=MessageList,
        summary="Lister les messages (plus récents d'abord)",
        responses=problem_responses(404, 422),
    )
    async def list_messages(
        address: str,
        who: Who,
        folder: Annotated[str, Query(min_length=1, max_length=255)] = "INBOX",
        unread: Annotated[bool | None, Query()] = None,
        since: Annotated[datetime | None, Query(description="RFC 3339")] = None,
        patient_ins: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
        document_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    ) -> MessageList:
        box = who.readable(address)
        if since is not None and since.tzinfo is None:
            raise ApiProblem(400, "invalid-request", "since : date RFC 3339 avec fuseau attendue.")
        items, next_cursor = await _run(
            service.list_messages, who.principal, box, folder=folder, unread=unread,
            since=since, patient_ins=patient_ins, document_type=document_type,
            limit=limit, cursor=cursor,
        )  # fmt: skip
        return MessageList(items=[_summary(i) for i in items], next_cursor=next_cursor)

    @router.get(
        "/api/v1/mailboxes/{address}/messages/{message_id}",
        response_model=MessageDetail,
        summary="Lire un message (le marque lu ; accusé de lecture R25)",
        responses=problem_responses(404),
    )
    async def read_message(
        address: str,
        who: Who,
        message_id: MessageId,
        peek: Annotated[bool, Query(description="Ne pas marquer lu.")] = False,
    ) -> MessageDetail:
        box = who.readable(address)
        detail = await _run(service.read, who.principal, box, message_id, peek=peek)
        url = f"{_base(box)}/{message_id}"
        data = _summary(detail.summary).model_dump(by_alias=True)
        return MessageDetail.model_validate(
            {
                **data,
                "headers": detail.headers,
                "text": detail.text,
                "html": detail.html,
                "attachments": [
                    AttachmentOut(
                        index=a.index,
                        filename=a.filename,
                        content_type=a.content_type,
                        size=a.size,
                        url=f"{url}/attachments/{a.index}",
                    )
                    for a in detail.attachments
                ],
                "documents": [
                    DocumentOut(**d.__dict__, url=f"{url}/documents/{d.index}")
                    for d in detail.documents
                ],
                "read_receipt_requested": detail.read_receipt_requested,
                "read_receipt_sent": detail.read_receipt_sent,
                "problems": detail.problems,
            }
        )

    @router.get(
        "/api/v1/mailboxes/{address}/messages/{message_id}/attachments/{index}",
        summary="Télécharger une pièce jointe",
        response_class=Response,
        responses={**problem_responses(404), **_BINARY},
    )
    async def download_attachment(
        address: str,
        who: Who,
        message_id: MessageId,
        index: Annotated[int, Path(ge=0, le=10_000)],
    ) -> Response:
        box = who.readable(address)
        info, data = await _run(service.attachment, who.principal, box, message_id, index)
        return _download(data, info.filename, info.content_type)

    @router.get(
        "/api/v1/mailboxes/{address}/messages/{message_id}/documents/{index}",
        summary="Télécharger un document du paquet IHE XDM (CDA)",
        response_class=Response,
        responses={**problem_responses(404), **_BINARY},
    )
    async def download_document(
        address: str,
        who: Who,
        message_id: MessageId,
        index: Annotated[int, Path(ge=0, le=10_000)],
    ) -> Response:
        box = who.readable(address)
        info, data = await _run(service.document, who.principal, box, message_id, index)
        return _download(data, info.filename, info.mime_type.split(";")[0].strip() or "text/xml")

    @router.patch(
        "/api/v1/mailboxes/{address}/messages/{message_id}",
        response_model=MessageSummary,
        summary="Changer les drapeaux ou le dossier d'un message",
        responses=problem_responses(404, 422),
    )
    async def update_message(
        address: str,
        patch: MessagePatch,
        who: Who,
        message_id: MessageId,
    ) -> MessageSummary:
        box = who.readable(address)
        add, remove = set(patch.add_flags), set(patch.remove_flags)
        for flag, wanted in ((SEEN, patch.seen), (FLAGGED, patch.flagged)):
            if wanted is not None:
                (add if wanted else remove).add(flag)
        if add & remove:
            raise ApiProblem(400, "invalid-request", "Un drapeau à la fois ajouté et retiré.")
        item = await _run(service.update, who.principal, box, message_id, add=add,
                          remove=remove, target=patch.folder)  # fmt: skip
        return _summary(item)

    @router.delete(
        "/api/v1/mailboxes/{address}/messages/{message_id}",
        status_code=204,
        summary="Supprimer (vers la corbeille ; depuis la corbeille : définitivement)",
        response_class=Response,
        responses={**problem_responses(404), 204: {"description": "Supprimé."}},
    )
    async def delete_message(address: str, who: Who, message_id: MessageId) -> Response:
        box = who.readable(address)
        await _run(service.delete, who.principal, box, message_id)
        return Response(status_code=204)

    @router.post(
        "/api/v1/mailboxes/{address}/messages/{message_id}/receipt",
        response_model=ReceiptOut,
        status_code=202,
        summary="Envoyer l'accusé de lecture demandé (MDN RFC 8098, R25)",
        responses=problem_responses(404, 409, 422),
    )
    async def send_receipt(
        address: str,
        request: Request,
        who: Who,
        message_id: MessageId,
    ) -> ReceiptOut:
        box = who.readable(address)
        sent_to = await _run(service.send_receipt, who.principal, box, message_id)
        return ReceiptOut(sent=True, to=sent_to)

    return router
