"""FHIR R4 read API of the directory, shaped like the Annuaire Santé API v2 (SPEC §4.1).

Routes (under ``/fhir/v2``, as the ANS gateway ``https://gateway.api.esante.gouv.fr/fhir/v2``):

* ``GET /metadata`` — the CapabilityStatement;
* ``GET /{type}/{id}`` — one Practitioner, PractitionerRole or Organization;
* ``GET /{type}?…`` and ``POST /{type}/_search`` (form body) — a ``searchset`` Bundle of at
  most 50 resources with absolute ``self``/``next`` links (R50: clients follow ``next``);
* ``PUT`` and ``DELETE`` — 405: the API is read-only, as the gateway (SPEC §4.1).

Every answer is ``application/fhir+json``; errors are OperationOutcome resources with a
French ``diagnostics`` (400 bad parameter, 401 missing key, 404 unknown id, 405). Red-listed
BALs are never shown (R49) and the ``responsible`` metadata is left out (SPEC §3: not in
free access). With ``[directory] fhir_api_keys`` set, the ``ESANTE-API-KEY`` header must
carry one of the keys (as the gateway requires its key).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mssante import __version__
from mssante.formats.fhir_directory import FhirResource
from mssante.http.fhir.params import (
    MAX_QUERY_BYTES,
    FhirParamError,
    link_query,
    parse_search,
    query_pairs,
)
from mssante.services.directory_fhir import (
    RESOURCE_TYPES,
    SEARCH_PARAMETERS,
    DirectoryFhirReader,
    SearchValueError,
)

__all__ = ["API_KEY_HEADER", "FHIR_JSON", "PREFIX", "fhir_router", "operation_outcome"]

PREFIX = "/fhir/v2"
FHIR_JSON = "application/fhir+json"
API_KEY_HEADER = "ESANTE-API-KEY"
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
_SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(
        body, status_code=status, media_type=FHIR_JSON, headers={**_HEADERS, **(headers or {})}
    )


def operation_outcome(
    status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None
) -> Response:
    """A FHIR OperationOutcome error (FHIR R4 §3.1.0.4; issue-type codes)."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
    return _json(body, status, headers)


def _capability_statement(base: str) -> dict[str, Any]:
    resources = []
    for rtype in RESOURCE_TYPES:
        params = [
            {"name": name, "type": _param_type(name)} for name in SEARCH_PARAMETERS[rtype]
        ] + [{"name": "_count", "type": "number"}]
        resources.append(
            {
                "type": rtype,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": params,
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": {"name": "mssante", "version": __version__},
        "implementation": {
            "description": "Copie locale de l'annuaire MSSanté (API FHIR Annuaire Santé v2)",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{"mode": "server", "resource": resources}],
    }


def _param_type(name: str) -> str:
    if name in ("_id", "identifier", "mailbox-mss-type", "role"):
        return "token"
    if name in ("practitioner", "organization"):
        return "reference"
    return "string"


def _subset(resource: FhirResource, elements: Sequence[str]) -> FhirResource:
    """``_elements``: the mandatory elements plus those asked, tagged SUBSETTED."""
    kept = {k: v for k, v in resource.items() if k in ("resourceType", "id") or k in elements}
    meta = dict(resource.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), dict(_SUBSETTED)]
    kept["meta"] = meta
    return kept


def _api_keys(services: Any, explicit: Sequence[str] | None) -> tuple[str, ...]:
    if explicit is not None:
        return tuple(k for k in explicit if k)
    config = getattr(services, "config", None)
    directory = getattr(config, "directory", None)
    return tuple(k for k in getattr(directory, "fhir_api_keys", ()) if k)


def fhir_router(services: Any, *, api_keys: Sequence[str] | None = None) -> APIRouter:
    """The ``/fhir/v2/…`` routes over ``services.db`` (``api_keys`` overrides the config)."""
    reader = DirectoryFhirReader(services.db)
    keys = [k.encode("utf-8") for k in _api_keys(services, api_keys)]
    router = APIRouter(prefix=PREFIX, tags=["fhir"])

    def refused(request: Request) -> Response | None:
        if not keys:
            return None
        given = request.headers.get(API_KEY_HEADER, "").encode("utf-8")
        if given and any(hmac.compare_digest(given, k) for k in keys):
            return None
        return operation_outcome(
            401, "security", f"Clé d'API absente ou invalide (en-tête {API_KEY_HEADER})."
        )

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    async def run_search(request: Request, rtype: str, pairs: list[tuple[str, str]]) -> Response:
        if rtype not in RESOURCE_TYPES:
            return operation_outcome(
                404, "not-supported", f"Type de ressource non pris en charge : {rtype[:40]!r}."
            )
        try:
            parsed = parse_search(rtype, pairs)
            page = await asyncio.to_thread(reader.search, parsed.search)
        except (FhirParamError, SearchValueError) as exc:
            return operation_outcome(400, "invalid", str(exc))
        url = f"{base_url(request)}/{rtype}"
        links = [{"relation": "self", "url": f"{url}?{link_query(parsed.pairs)}".rstrip("?")}]
        if page.next_cursor is not None:
            links.append(
                {"relation": "next", "url": f"{url}?{link_query(parsed.pairs, page.next_cursor)}"}
            )
        entries = []
        for resource in page.resources:
            if parsed.elements is not None:
                resource = _subset(resource, parsed.elements)
            entries.append(
                {
                    "fullUrl": f"{url}/{resource['id']}",
                    "resource": resource,
                    "search": {"mode": "match"},
                }
            )
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if page.total is not None:
            bundle["total"] = page.total
        bundle["link"] = links
        bundle["entry"] = entries
        return _json(bundle)

    @router.get("/metadata", summary="CapabilityStatement")
    async def metadata(request: Request) -> Response:
        return refused(request) or _json(_capability_statement(base_url(request)))

    @router.get("/{rtype}", summary="Search (FHIR search-type)")
    async def search_get(request: Request, rtype: str) -> Response:
        denied = refused(request)
        if denied is not None:
            return denied
        try:
            pairs = query_pairs(request.url.query)
        except FhirParamError as exc:
            return operation_outcome(400, "invalid", str(exc))
        return await run_search(request, rtype, pairs)

    @router.post("/{rtype}/_search", summary="Search by POST (form body)")
    async def search_post(request: Request, rtype: str) -> Response:
        denied = refused(request)
        if denied is not None:
            return denied
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return operation_outcome(
                415, "not-supported", "Le corps doit être application/x-www-form-urlencoded."
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_QUERY_BYTES:
                return operation_outcome(
                    413, "too-costly", "La requête de recherche est trop longue."
                )
        try:
            # FHIR R4 §3.1.1.1.2: parameters of the URL and of the body both apply.
            pairs = query_pairs(request.url.query) + query_pairs(body.decode("utf-8"))
        except (FhirParamError, UnicodeDecodeError) as exc:
            detail = str(exc) if isinstance(exc, FhirParamError) else "Corps mal encodé."
            return operation_outcome(400, "invalid", detail)
        return await run_search(request, rtype, pairs)

    @router.get("/{rtype}/{rid}", summary="Read one resource")
    async def read(request: Request, rtype: str, rid: str) -> Response:
        denied = refused(request)
        if denied is not None:
            return denied
        if rtype not in RESOURCE_TYPES:
            return operation_outcome(
                404, "not-supported", f"Type de ressource non pris en charge : {rtype[:40]!r}."
            )
        resource = await asyncio.to_thread(reader.read, rtype, rid)
        if resource is None:
            return operation_outcome(
                404, "not-found", f"Ressource {rtype}/{rid[:64]} introuvable dans l'annuaire."
            )
        return _json(resource)

    async def read_only(request: Request) -> Response:
        return operation_outcome(
            405,
            "not-supported",
            "L'annuaire est en lecture seule : seules les méthodes GET et POST _search "
            "sont acceptées.",
            headers={"Allow": "GET"},
        )

    for path in ("/{rtype}", "/{rtype}/{rid}"):
        router.add_api_route(path, read_only, methods=["PUT", "DELETE"], include_in_schema=False)
    return router
