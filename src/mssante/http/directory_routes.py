"""Directory search and suggest for compose forms (issue 5 items 2 and 7).

* ``GET /annuaire/suggest?q=…`` — the ten best matches for a compose form's address field
  (the last word is a prefix), as a JSON list of
  ``{"name", "profession", "city", "address", "type", "organization"}``;
* ``GET /api/v1/annuaire/search?q=&type=&city=&postcode=&departement=&profession=&limit=&offset=``
  — ranked, paged search: ``{"items": [...], "next_offset": int | null}``.

Both need a bearer token (RFC 6750) of this operator's users or applications
(:func:`mssante.http.api.auth.authenticate`): the directory is public data, the service is
for the operator's users. Red-listed BALs are never returned (R49). Errors are RFC 9457
problem documents (:class:`~mssante.http.api.problems.ApiProblem`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mssante.domain.directory import BAL_TYPES
from mssante.http.api.auth import authenticate
from mssante.http.api.problems import ApiProblem
from mssante.services.directory_search import SearchHit

MIN_QUERY = 2
MAX_QUERY = 200
MAX_FILTER = 100
SUGGEST_SIZE = 10
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10_000
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_FILTERS = ("type", "city", "postcode", "departement", "profession")


def _item(hit: SearchHit) -> dict[str, Any]:
    entry = hit.entry
    return {
        "name": hit.name,
        "profession": entry.profession_label,
        "city": entry.city,
        "address": entry.address,
        "type": entry.bal_type,
        "organization": entry.org_trade_name or entry.org_name,
    }


def _detailed(hit: SearchHit) -> dict[str, Any]:
    entry = hit.entry
    return {
        **_item(hit),
        "family_name": entry.family_name,
        "given_name": entry.given_name,
        "skill": entry.skill_label,
        "service": entry.service,
        "postcode": entry.postcode,
        "departement": entry.departement,
        "id_nat_ps": entry.id_nat_ps,
        "id_struct": entry.id_struct,
        "score": hit.score,
    }


def _param(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ApiProblem(400, "invalid-request", f"Le paramètre « {name} » est répété.")
    return values[0] if values else None


def _query(request: Request) -> str:
    q = (_param(request, "q") or "").strip()
    if len(q) < MIN_QUERY:
        raise ApiProblem(
            400,
            "invalid-request",
            f"La recherche « q » doit compter au moins {MIN_QUERY} caractères.",
        )
    if len(q) > MAX_QUERY:
        raise ApiProblem(
            400, "invalid-request", f"La recherche « q » dépasse {MAX_QUERY} caractères."
        )
    return q


def _integer(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = _param(request, name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiProblem(
            400,
            "invalid-request",
            f"Le paramètre « {name} » doit être un entier entre {low} et {high}.",
        )
    return int(raw)


def _filters(request: Request) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _FILTERS:
        value = (_param(request, name) or "").strip()
        if len(value) > MAX_FILTER:
            raise ApiProblem(
                400, "invalid-request", f"Le paramètre « {name} » dépasse {MAX_FILTER} caractères."
            )
        out[name] = value or None
    bal_type = out["type"]
    if bal_type is not None and bal_type.upper() not in BAL_TYPES:
        raise ApiProblem(
            400,
            "invalid-request",
            "Le paramètre « type » doit valoir " + ", ".join(BAL_TYPES) + ".",
        )
    return out


def directory_router(services: Any, token_validator: Any = None) -> APIRouter:
    """``GET /annuaire/suggest`` and ``GET /api/v1/annuaire/search``."""
    router = APIRouter(tags=["annuaire"])

    async def answer(request: Request, produce: Callable[[], Any]) -> Response:
        try:
            await authenticate(services, token_validator, request)
            body = await asyncio.to_thread(produce)
        except ApiProblem as exc:
            return exc.response(instance=request.url.path)
        return JSONResponse(body, headers=_HEADERS)

    @router.get("/annuaire/suggest", summary="Suggestions de BAL pour un formulaire d'envoi")
    async def suggest(request: Request) -> Response:
        def produce() -> Any:
            q = _query(request)
            hits = services.directory_search.suggest(q, SUGGEST_SIZE)
            return [_item(h) for h in hits]

        return await answer(request, produce)

    @router.get("/api/v1/annuaire/search", summary="Recherche dans l'annuaire national")
    async def search(request: Request) -> Response:
        def produce() -> Any:
            q = _query(request)
            filters = _filters(request)
            limit = _integer(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
            offset = _integer(request, "offset", 0, 0, MAX_OFFSET)
            hits = services.directory_search.search(
                q,
                bal_type=filters["type"],
                city=filters["city"],
                postcode=filters["postcode"],
                departement=filters["departement"],
                profession=filters["profession"],
                limit=limit + 1,
                offset=offset,
            )
            more = len(hits) > limit
            return {
                "items": [_detailed(h) for h in hits[:limit]],
                "next_offset": offset + limit if more else None,
            }

        return await answer(request, produce)

    return router
