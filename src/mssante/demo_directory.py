"""The national directory of `mssante demo` (issue 5 item 4): publish, then refresh copies.

The demo runs a stand-in of the Annuaire Santé (:mod:`mssante.testing.national_directory`)
before the operators. It knows the demo's professionals and structures as the real one
knows them from RPPS and FINESS (names, profession, town), and nothing of their BALs. Both
operators are configured with its ``publish_url``: each BAL the demo creates is published by
FHIR PATCH (SPEC §4.2, R48) by the operator's publication worker.

Then each operator refreshes its own copy of the directory the way a real operator does:
it downloads the public extraction ``Extraction_Correspondance_MSSante`` (SPEC §4.3, daily in
production) and imports it (:meth:`mssante.services.directory.DirectoryService.import_files`).
So a professional of one operator finds, through the ``/annuaire/suggest`` of their own
operator, the users of the other operator; the national FHIR API serves the same BALs.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import httpx

from mssante.domain.directory import DirectoryEntry
from mssante.domain.mailboxes import MailboxType
from mssante.pki import DemoCA
from mssante.testing.national_directory import NationalDirectory
from mssante.testing.trust_space import LocalTrustSpace

# Where the demo structures are (the extraction's L6 line and postcode, SPEC §4.3).
_PLACES = {
    "hopital-demo.mssante.fr": ("75013", "75013 PARIS", "75"),
    "ehpad-demo.mssante.fr": ("13008", "13008 MARSEILLE", "13"),
}
# TRE_G15 profession codes of the demo's professionals.
_PROFESSIONS = {"Médecin": "10", "Pharmacien": "21"}


class _Actor(Protocol):
    @property
    def domain(self) -> str: ...
    @property
    def type(self) -> MailboxType: ...
    @property
    def label(self) -> str: ...
    @property
    def rpps(self) -> str | None: ...
    @property
    def structure(self) -> tuple[str, str] | None: ...
    @property
    def profession(self) -> str: ...


def registry(actors: Iterable[_Actor]) -> list[DirectoryEntry]:
    """The persons and structures the national directory knows before any BAL."""
    out: list[DirectoryEntry] = []
    seen: set[str] = set()
    for actor in actors:
        postcode, city_line, dept = _PLACES.get(actor.domain, ("", "", ""))
        if actor.rpps and actor.rpps not in seen:
            seen.add(actor.rpps)
            words = actor.label.split(",")[0].split()
            profession = actor.profession or "Médecin"
            code = next((c for p, c in _PROFESSIONS.items() if profession.startswith(p)), "")
            out.append(
                DirectoryEntry(
                    "PER",
                    "",
                    id_type_pp="8",
                    id_pp=actor.rpps,
                    id_nat_ps="8" + actor.rpps,
                    civility="DR" if words[0] == "Dr" else "",
                    family_name=words[-1],
                    given_name=words[-2],
                    profession_code=code,
                    profession_label=profession,
                )
            )
        if actor.structure and actor.structure[0] not in seen:
            seen.add(actor.structure[0])
            out.append(
                DirectoryEntry(
                    "ORG",
                    "",
                    id_type_struct=actor.structure[0][:1],
                    id_struct=actor.structure[0],
                    org_name=actor.structure[1],
                    city_line=city_line,
                    postcode=postcode,
                    departement=dept,
                )
            )
    return out


async def start_national(root: Path, ca: DemoCA, actors: Iterable[_Actor]) -> NationalDirectory:
    """Start the national directory (HTTPS with the demo CA) on 127.0.0.1, any port."""
    national = NationalDirectory(root / "annuaire-national", ca=ca, registry=registry(actors))
    await national.start()
    return national


def operator_keys(national: NationalDirectory, ca_file: Path) -> dict[str, str]:
    """The ``[directory]`` keys of each demo operator: publish there, trust the demo CA."""
    return {"publish_url": national.fhir_url, "publish_ca_file": str(ca_file)}


async def publish_and_refresh(
    space: LocalTrustSpace, national: NationalDirectory, timeout: float = 20.0
) -> dict[str, Any]:
    """Wait until every operator's outbox is sent, then refresh each operator's copy."""
    deadline = time.monotonic() + timeout
    failed = 0
    for local in space.operators:
        op = local.operator
        assert op is not None
        if op.publication_worker is not None:
            op.publication_worker.wake()
        publication = op.services.publication
        while await asyncio.to_thread(publication.pending_count):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        failed += len(await asyncio.to_thread(publication.list_outbox, state="failed"))
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    async with httpx.AsyncClient(verify=ctx, timeout=30) as client:
        response = await client.get(national.extraction_url)
    response.raise_for_status()
    name = response.headers["content-disposition"].split('filename="')[1].rstrip('"')
    path = national.root / name
    path.write_bytes(response.content)
    imported = 0
    for local in space.operators:
        op = local.operator
        assert op is not None
        report = await asyncio.to_thread(op.services.directory.import_files, [path], actor="demo")
        imported = report.rows
    return {
        "published": len(await asyncio.to_thread(national.entries)),
        "failed": failed,
        "imported": imported,
    }


def add_to_state(state: dict[str, Any], national: NationalDirectory) -> None:
    state["directory"] = {"fhir": national.fhir_url}


def summary_line(state: dict[str, Any]) -> str:
    return f"Annuaire national de démonstration : {state['directory']['fhir']}"
