"""The integration API for software (DUI, LPS): messages, delivery status, webhooks (issue 7).

`api_router` assembles the ``/api/v1/mailboxes/…`` routes of every module of this package;
`setup_openapi` (in `openapi`) publishes their schema at ``/api/openapi.json`` and a docs
page at ``/api/docs``. Every route authenticates with the RFC 6750 bearer scheme declared
here (`BEARER`), so the OpenAPI document lists it as the security of each operation.
"""

from __future__ import annotations

import importlib
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request

from mssante.http.api.auth import ApiCaller, authenticate

log = logging.getLogger("mssante.http.api")

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="Jeton OAuth2 : client credentials d'une BAL applicative (POST /oauth/token) "
    "ou jeton Pro Santé Connect d'un professionnel (RFC 6750).",
)

# Routers of other modules of this package: (module, factory name). A module that is not
# there yet is skipped, so each part of issue 7 can land on its own.
EXTRA_ROUTERS: tuple[tuple[str, str], ...] = (
    ("mssante.http.api.status", "status_router"),  # delivery status (H5)
    ("mssante.http.api.webhooks", "webhooks_router"),  # webhooks (H5)
)


def bearer_caller(services: Any, token_validator: Any) -> Any:
    """The FastAPI dependency giving the `ApiCaller`, declared as the bearer scheme."""

    async def caller(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> ApiCaller:
        return await authenticate(services, token_validator, request)

    return caller


def api_router(services: Any, token_validator: Any = None) -> APIRouter:
    """The ``/api/v1/mailboxes/…`` routes."""
    from mssante.http.api.messages import messages_router
    from mssante.http.api.send import send_router
    from mssante.services.api_messages import ApiMailboxService
    from mssante.services.api_send import ApiSendService, SendLimits
    from mssante.services.idempotency import IdempotencyService

    config = services.config
    api = config.api
    submission_max = config.smtp.submission.max_message_size
    wake = _waker(services)
    idempotency = IdempotencyService(services.db, api.idempotency_ttl)
    limits = SendLimits(
        per_kind={
            "PER": api.max_message_size_per or submission_max,
            "ORG": api.max_message_size_org or submission_max,
            "APP": api.max_message_size_app or submission_max,
            "CAB": api.max_message_size_cab or submission_max,
        },
        patient_max_bytes=api.patient_max_bytes,
        max_recipients=config.smtp.submission.max_recipients,
        nil=api.default_nil,
        legal_policy=api.legal_recipients_policy,
    )
    sender = ApiSendService(
        services.db, services.mailboxes, services.delivery, idempotency, limits, wake
    )
    mailbox_service = ApiMailboxService(
        services.db,
        services.mailstore,
        services.delivery,
        hostname=config.operator.hostname,
        wake=wake,
    )
    caller = bearer_caller(services, token_validator)
    router = APIRouter()
    router.include_router(
        send_router(caller, sender, services.mailboxes, idempotency, api.max_request_bytes)
    )
    router.include_router(messages_router(caller, mailbox_service))

    # -- routers of other modules (delivery status, webhooks): included when present ----
    for module_name, factory_name in EXTRA_ROUTERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        factory = getattr(module, factory_name, None)
        if factory is not None:
            router.include_router(
                factory(services, token_validator), dependencies=[Security(BEARER)]
            )
    return router


def _waker(services: Any) -> Any:
    """Wake the relay worker after a send or a MDN (else it polls, `relay.poll_interval`)."""

    def wake() -> None:
        callback = getattr(services, "wake_relay", None)
        if callback is not None:
            try:
                callback()
            except Exception:
                log.debug("relay wake-up failed", exc_info=True)

    return wake
