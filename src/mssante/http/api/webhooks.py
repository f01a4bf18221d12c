"""Webhook subscriptions of a BAL, their delivery log and replay (issue 7 item 5;
docs/api.md "Webhooks").

Managing (create, delete, replay) needs a token that may act as the BAL (403 otherwise);
reading (list, log) answers 404 for a BAL outside the token's scope, as every read does.
"""

# No `from __future__ import annotations`: FastAPI reads the local `Caller` alias.
import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from mssante.domain.errors import NotFound
from mssante.http.api.auth import ApiCaller, caller_dependency
from mssante.http.api.models import problem_responses
from mssante.http.api.problems import ApiProblem
from mssante.services.webhooks import InvalidWebhook, WebhookService

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
EventType = Literal["message.received", "message.status"]
EVENTS: tuple[EventType, ...] = ("message.received", "message.status")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="https:// (http:// seulement vers la machine locale, ou si "
        "`api.allow_http_webhooks`).",
    )
    events: list[EventType] = Field(default_factory=lambda: list(EVENTS), min_length=1)
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="Secret de signature (HMAC-SHA256) ; absent : généré et rendu une fois.",
    )


class Webhook(BaseModel):
    id: str
    url: str
    events: list[EventType]
    created_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(description="Rendu dans cette seule réponse : conservez-le.")


class WebhookDelivery(BaseModel):
    id: str
    event_id: str
    event: EventType
    attempts: int
    status: Literal["pending", "delivered", "failed"]
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDelivery]
    next_cursor: str | None


def _json(model: BaseModel, status: int = 200, **headers: str) -> JSONResponse:
    body = model.model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **headers})


def _not_found() -> ApiProblem:
    return ApiProblem(404, "not-found", "Aucun abonnement ou envoi de webhook à cet identifiant.")


def webhooks_router(services: Any, token_validator: Any = None) -> APIRouter:
    router = APIRouter(prefix="/api/v1/mailboxes", tags=["webhooks"])
    caller = caller_dependency(services, token_validator)
    Caller = Annotated[ApiCaller, Depends(caller)]
    service: WebhookService = services.webhooks

    @router.post(
        "/{address}/webhooks",
        status_code=201,
        response_model=WebhookCreated,
        responses=problem_responses(403, 404, 422),
        summary="Abonner une URL aux événements de la BAL",
    )
    async def subscribe(address: str, body: WebhookCreate, who: Caller) -> JSONResponse:
        mailbox = who.sendable(address)
        try:
            sub, secret = await asyncio.to_thread(
                service.subscribe,
                mailbox,
                body.url,
                list(body.events),
                body.secret,
                who.principal.login,
            )
        except InvalidWebhook as exc:
            raise ApiProblem(422, "invalid-request", exc.detail) from None
        created = WebhookCreated(**sub.public(), secret=secret)
        location = f"/api/v1/mailboxes/{mailbox}/webhooks/{sub.id}"
        return _json(created, 201, Location=location)

    @router.get(
        "/{address}/webhooks",
        response_model=list[Webhook],
        responses=problem_responses(404),
        summary="Les abonnements de la BAL (sans leur secret)",
    )
    async def subscriptions(address: str, who: Caller) -> JSONResponse:
        mailbox = who.readable(address)
        subs = await asyncio.to_thread(service.subscriptions, mailbox)
        body = [Webhook(**s.public()).model_dump(mode="json") for s in subs]
        return JSONResponse(body, headers=NO_STORE)

    @router.delete(
        "/{address}/webhooks/{subscription_id}",
        status_code=204,
        responses=problem_responses(403, 404),
        summary="Supprimer un abonnement (ses envois en attente sont abandonnés)",
    )
    async def unsubscribe(address: str, subscription_id: str, who: Caller) -> Response:
        mailbox = who.sendable(address)
        try:
            await asyncio.to_thread(
                service.delete, mailbox, subscription_id[:64], who.principal.login
            )
        except NotFound:
            raise _not_found() from None
        return Response(status_code=204, headers=NO_STORE)

    @router.get(
        "/{address}/webhooks/{subscription_id}/deliveries",
        response_model=WebhookDeliveryList,
        responses=problem_responses(404),
        summary="Journal des envois d'un abonnement (le plus récent d'abord)",
    )
    async def deliveries(
        address: str,
        subscription_id: str,
        who: Caller,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=32)] = None,
    ) -> JSONResponse:
        mailbox = who.readable(address)
        try:
            items, next_cursor = await asyncio.to_thread(
                service.deliveries, mailbox, subscription_id[:64], limit, cursor
            )
        except NotFound:
            raise _not_found() from None
        except InvalidWebhook as exc:
            raise ApiProblem(400, "invalid-request", exc.detail) from None
        page = WebhookDeliveryList(
            items=[WebhookDelivery(**i) for i in items], next_cursor=next_cursor
        )
        body = page.model_dump(mode="json", exclude_none=True)
        body["next_cursor"] = next_cursor
        return JSONResponse(body, headers=NO_STORE)

    @router.post(
        "/{address}/webhooks/{subscription_id}/deliveries/{delivery_id}/replay",
        status_code=202,
        response_model=WebhookDelivery,
        responses=problem_responses(403, 404),
        summary="Renvoyer un événement (nouvel envoi, dans l'ordre des événements du message)",
    )
    async def replay(
        address: str, subscription_id: str, delivery_id: str, who: Caller
    ) -> JSONResponse:
        mailbox = who.sendable(address)
        try:
            item = await asyncio.to_thread(
                service.replay, mailbox, subscription_id[:64], delivery_id[:32]
            )
        except NotFound:
            raise _not_found() from None
        return _json(WebhookDelivery(**item), 202)

    return router
