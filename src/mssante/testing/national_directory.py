"""A national directory for the demo and the tests: receives our FHIR Patches, serves reads.

It plays the Annuaire Santé (SPEC §4) for a local trust space:

* ``PATCH /fhir/v2/{Practitioner|Organization|PractitionerRole}?identifier=<system>|<value>``
  and ``PATCH /fhir/v2/{type}/{id}`` (``application/fhir+json`` FHIRPath Patch
  ``Parameters``, SPEC §4.2): 200 with the holder, 404 no holder, 412 several holders,
  400 a patch it cannot apply, 401 without the ``ESANTE-API-KEY`` when one is set
  (:mod:`mssante.testing.national_directory_store` does the work);
* the FHIR read API of the directory (:func:`mssante.http.fhir.fhir_router`) under
  ``/fhir/v2``, open (the real one needs an API key for reads too);
* ``GET /annuaire/suggest?q=…``: the search of :mod:`mssante.services.directory_search`;
* ``GET /extraction/Extraction_Correspondance_MSSante``: the public daily extraction
  (SPEC §4.3: a ZIP of one ``|``-separated text file, red-listed BALs left out, R49) that
  operators import to refresh their own copy.

Holders: the real directory knows persons (RPPS) and structures (FINESS) before any BAL is
published on them; here ``registry`` plays that part (``DirectoryEntry`` values without an
address: names, profession, structure name). ``create_missing=True`` instead creates an
unknown holder from the identifier of an insert (no names then), where the real service
answers 404.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mssante.domain.directory import DirectoryEntry
from mssante.domain.identifiers import SYSTEM_IDNAT_PS, SYSTEM_IDNAT_STRUCT
from mssante.formats import fhir_directory
from mssante.formats.directory_columns import MSSANTE_COLUMNS
from mssante.formats.directory_files import ENTRY_FIELDS
from mssante.formats.fhir_patch import FHIR_JSON, PatchError, PatchTarget, parse_target
from mssante.http.server import HttpServer, start_http, stop_http
from mssante.pki import DemoCA, DistinguishedName
from mssante.services.directory_search import DirectorySearch, entry_from_row
from mssante.storage.database import Database
from mssante.storage.schema_directory import directory_entries
from mssante.testing.national_directory_store import (
    HolderNotFound,
    NationalStore,
    SeveralHolders,
    current_snapshot,
)

FHIR_BASE = "/fhir/v2"
MAX_BODY = 256 * 1024
EXTRACTION = "Extraction_Correspondance_MSSante"


class NationalServices:
    """What the read routers use (``services.db``, ``services.directory_search``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.directory_search = DirectorySearch(db)


class NationalDirectory:
    """Build, ``await start()``, then use ``fhir_url``; ``await stop()`` at the end."""

    def __init__(
        self,
        root: Path,
        *,
        database_url: str | None = None,
        ca: DemoCA | None = None,
        registry: Sequence[DirectoryEntry] = (),
        create_missing: bool = False,
        api_key: str = "",
        host: str = "127.0.0.1",
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = Database(database_url or f"sqlite:///{root / 'annuaire.db'}")
        self.store = NationalStore(registry, create_missing=create_missing)
        self.api_key = api_key
        self.host = host
        self.ca = ca
        self.base_url = ""
        self._server: HttpServer | None = None
        self._faults: list[int] = []
        self.received: list[tuple[str, str, int]] = []  # (method, path?query, status)

    @property
    def fhir_url(self) -> str:
        return self.base_url + FHIR_BASE

    @property
    def extraction_url(self) -> str:
        return f"{self.base_url}/extraction/{EXTRACTION}"

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` PATCH requests with ``status`` (tests of retries)."""
        self._faults.extend([status] * count)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)
        tls: dict[str, Any] = {}
        scheme = "http"
        if self.ca is not None:
            cert = self.ca.issue(
                DistinguishedName(
                    common_name="annuaire-demo.mssante.fr",
                    organization="Annuaire national de démonstration",
                ),
                dns_names=("localhost",),
                ip_addresses=(self.host,),
                client=False,
            )
            cert_file, key_file = self.root / "tls" / "server.pem", self.root / "tls" / "server.key"
            cert_file.parent.mkdir(parents=True, exist_ok=True)
            cert.write(cert_file, key_file, chain=True)
            tls = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
            scheme = "https"
        self._server, port = await start_http(create_app(self), self.host, 0, **tls)
        self.base_url = f"{scheme}://{self.host}:{port}"

    def _prepare(self) -> None:
        self.db.migrate()
        with self.db.write() as conn:
            current_snapshot(conn)

    async def stop(self) -> None:
        if self._server is not None:
            await stop_http(self._server)
            self._server = None
        self.db.dispose()

    async def __aenter__(self) -> NationalDirectory:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the data ----------------------------------------------------------------------

    def entries(self) -> list[DirectoryEntry]:
        """Every BAL of the snapshot in force (red-listed ones included)."""
        with self.db.write() as conn:
            snapshot_id = current_snapshot(conn)
            rows = conn.execute(
                select(directory_entries)
                .where(directory_entries.c.snapshot_id == snapshot_id)
                .order_by(directory_entries.c.address)
            )
            return [entry_from_row(r) for r in rows]

    def extraction(self, now: datetime | None = None) -> tuple[str, bytes]:
        """(file name, ZIP bytes) of the public extraction (SPEC §4.3), red list excluded."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M")
        lines = ["|".join(MSSANTE_COLUMNS)]
        for entry in self.entries():
            if entry.list_rouge:
                continue  # R49
            values = (str(getattr(entry, name)) for name in ENTRY_FIELDS)
            lines.append("|".join(v.replace("|", " ").replace("\n", " ") for v in values))
        name = f"{EXTRACTION}_{stamp}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{name}.txt", "\n".join(lines) + "\n")
        return f"{name}.zip", buffer.getvalue()

    def patch(self, target: PatchTarget, params: Any) -> tuple[int, dict[str, Any]]:
        """Apply one conditional PATCH: (HTTP status, FHIR resource or OperationOutcome)."""
        try:
            with self.db.write() as conn:
                outcome = self.store.apply(conn, target, params)
        except SeveralHolders as exc:
            return 412, _issue("conflict", f"Plusieurs ressources correspondent : {exc}.")
        except HolderNotFound as exc:
            return 404, _issue("not-found", f"Aucune ressource ne correspond : {exc}.")
        except PatchError as exc:
            return 400, _issue("invalid", f"Patch refusé : {exc}")
        return 200, outcome.resource


def _issue(code: str, text: str) -> dict[str, Any]:
    """A FHIR ``OperationOutcome`` (openapi-balmss.yaml ``components.responses``)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "details": {"text": text}}],
    }


def _logical_target(resource_type: str, logical_id: str) -> PatchTarget:
    key = fhir_directory.parse_logical_id(resource_type, logical_id)
    if key is None or resource_type == "PractitionerRole":
        raise PatchError(f"identifiant logique {logical_id[:64]!r} inconnu")
    system = SYSTEM_IDNAT_PS if resource_type == "Practitioner" else SYSTEM_IDNAT_STRUCT
    return PatchTarget(resource_type, system, key[0])


def create_app(directory: NationalDirectory) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    async def handle(request: Request, target_of: Any) -> Response:
        status, body = await _patch(request, target_of)
        query = f"?{request.url.query}" if request.url.query else ""
        directory.received.append(("PATCH", request.url.path + query, status))
        return JSONResponse(body, status_code=status, media_type=FHIR_JSON)

    async def _patch(request: Request, target_of: Any) -> tuple[int, dict[str, Any]]:
        if directory.api_key and not secrets.compare_digest(
            request.headers.get("esante-api-key", ""), directory.api_key
        ):
            return 401, _issue("security", "Clé ESANTE-API-KEY absente ou invalide.")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in (FHIR_JSON, "application/json"):
            return 415, _issue("not-supported", f"Type de contenu attendu : {FHIR_JSON}.")
        if directory._faults:
            status = directory._faults.pop(0)
            return status, _issue("transient", "Service momentanément indisponible.")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return 413, _issue("too-costly", "Corps de requête trop volumineux.")
        try:
            params = json.loads(raw)
            target = target_of()
        except (ValueError, PatchError) as exc:
            return 400, _issue("invalid", f"Requête invalide : {exc}")
        return await asyncio.to_thread(directory.patch, target, params)

    @app.patch(FHIR_BASE + "/{resource_type}")
    async def conditional_patch(resource_type: str, request: Request) -> Response:
        identifiers = request.query_params.getlist("identifier")

        def target() -> PatchTarget:
            if len(identifiers) != 1:
                raise PatchError("un seul paramètre identifier=<système>|<valeur> est attendu")
            return parse_target(resource_type, identifiers[0])

        return await handle(request, target)

    @app.patch(FHIR_BASE + "/{resource_type}/{logical_id}")
    async def logical_patch(resource_type: str, logical_id: str, request: Request) -> Response:
        return await handle(request, lambda: _logical_target(resource_type, logical_id))

    @app.get("/extraction/" + EXTRACTION)
    async def extraction() -> Response:
        name, data = await asyncio.to_thread(directory.extraction)
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/annuaire/suggest")
    async def suggest(q: str = "") -> Response:
        if len(q.strip()) < 2:
            text = "La recherche « q » compte au moins 2 caractères."
            return JSONResponse(_issue("invalid", text), 400, media_type=FHIR_JSON)
        search = DirectorySearch(directory.db)
        hits = await asyncio.to_thread(search.suggest, q.strip())
        items = [
            {
                "name": hit.name,
                "profession": hit.entry.profession_label,
                "city": hit.entry.city,
                "address": hit.entry.address,
                "type": hit.entry.bal_type,
                "organization": hit.entry.org_trade_name or hit.entry.org_name,
            }
            for hit in hits
            if not hit.entry.list_rouge  # R49, whatever the search does
        ]
        return JSONResponse(items)

    from mssante.http.fhir import fhir_router

    app.include_router(fhir_router(NationalServices(directory.db), api_keys=()))
    return app
