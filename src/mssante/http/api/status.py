"""``GET /api/v1/mailboxes/{address}/sent/{send_id}``: where a sent message stands, per
recipient (issue 7 item 3; docs/api.md "Statut de remise").

``send_id`` is the queue id answered by the send (and by SMTP: ``250 2.0.0 Ok: queued as
<id>``). A message the BAL did not send, or a BAL outside the token's scope, is 404.
"""

# No `from __future__ import annotations`: FastAPI reads the local `Caller` alias.
import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse

from mssante.http.api.auth import ApiCaller, caller_dependency
from mssante.http.api.models import MessageStatus, problem_responses
from mssante.http.api.problems import ApiProblem
from mssante.services import delivery_status

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def status_router(services: Any, token_validator: Any = None) -> APIRouter:
    router = APIRouter(prefix="/api/v1/mailboxes", tags=["statut de remise"])
    caller = caller_dependency(services, token_validator)
    Caller = Annotated[ApiCaller, Depends(caller)]

    def load(mailbox: str, send_id: str) -> dict[str, Any] | None:
        if not 1 <= len(send_id) <= 32 or not send_id.isalnum():
            return None
        with services.db.read() as conn:
            envelope_id = delivery_status.find_sent(conn, mailbox, send_id)
            if envelope_id is None:
                return None
            return delivery_status.message_status(conn, envelope_id)

    @router.get(
        "/{address}/sent/{send_id}",
        response_model=MessageStatus,
        responses=problem_responses(404),
        summary="Statut de remise d'un message envoyé, par destinataire",
        description="queued → relayed → delivered (DSN de succès ou remise locale) → read "
        "(MDN displayed) / processed / processed_with_error (MDN d'erreur 900–906, `code`). "
        "`failed` porte la raison (`reason`) et le code d'état (`code`, RFC 3463).",
    )
    async def sent_status(address: str, send_id: str, who: Caller) -> JSONResponse:
        mailbox = who.readable(address)
        status = await asyncio.to_thread(load, mailbox, send_id)
        if status is None:
            raise ApiProblem(
                404, "not-found", "Aucun message envoyé depuis cette BAL avec cet identifiant."
            )
        body = MessageStatus.model_validate(status).model_dump(mode="json", exclude_none=True)
        return JSONResponse(body, headers=NO_STORE)

    return router
