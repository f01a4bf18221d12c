"""The FHIR read API of the directory copy (SPEC §4.1, R47, R49) and its client (R50, R51).

A real `Services` (SQLite, or PostgreSQL with MSSANTE_TEST_DB=postgresql) holds a directory
snapshot written the way the importer writes one; the FHIR router is served by uvicorn on
127.0.0.1 port 0, and the `AnnuaireClient` (the client of the real Annuaire Santé API) is
tested against it, in a worker thread (it is synchronous).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from sqlalchemy import insert, update

from conftest import ALPHA
from mssante.domain.directory import DirectoryEntry
from mssante.http import create_app, start_http, stop_http
from mssante.http.fhir import fhir_router
from mssante.runtime import Services
from mssante.services.annuaire_client import AnnuaireClient, AnnuaireError, RateLimiter
from mssante.storage.database import Database, utcnow
from mssante.storage.schema_directory import (
    directory_current,
    directory_entries,
    directory_snapshots,
)
from mssante.testing.trust_space import LocalTrustSpace

KEY = "cle-de-test-annuaire"
FHIR = "application/fhir+json"

STRUCT = {
    "id_type_struct": "1",
    "id_struct": "1750000010",
    "org_name": "CH DE L'EXEMPLE",
    "street_number": "12",
    "street_type": "R",
    "street_name": "DE LA SANTE",
    "city_line": "75013 PARIS",
    "postcode": "75013",
    "departement": "75",
}
HELENE = {
    "id_type_pp": "8",
    "id_pp": "10000005479",
    "id_nat_ps": "810000005479",
    "family_name": "Lefèvre",
    "given_name": "Hélène",
    "profession_code": "10",
}
ERIC = {"id_nat_ps": "810000000017", "family_name": "DURAND", "given_name": "Éric"}
NURSE = {"id_nat_ps": "810000000025", "family_name": "DUPONT", "given_name": "Anne"}
HIDDEN = {"id_nat_ps": "810000000033", "family_name": "CACHÉE", "given_name": "Zoé"}
# A professional of operator Beta, found by a professional of Alpha typing "berenice".
BERENICE = {"id_nat_ps": "810000000041", "family_name": "BÉRÉNICE", "given_name": "Éloïse"}
MARTINS = 23  # Practitioners named Martin*, for paging


def _entries() -> list[DirectoryEntry]:
    rows = [
        DirectoryEntry("PER", "helene.lefevre@medecin.mssante.fr", **HELENE),
        DirectoryEntry(
            "PER", "helene.secret@medecin.mssante.fr", **HELENE, rank=2, list_rouge=True
        ),
        DirectoryEntry(
            "PER", "eric.durand@ch-exemple.mssante.fr", **ERIC, **STRUCT, profession_code="10"
        ),
        DirectoryEntry(
            "PER", "anne.dupont@ch-exemple.mssante.fr", **NURSE, **STRUCT, profession_code="60"
        ),
        DirectoryEntry(
            "ORG",
            "cardiologie@ch-exemple.mssante.fr",
            **STRUCT,
            service="Cardiologie",
            description="Secrétariat",
            responsible="Mme Responsable",
        ),
        DirectoryEntry("APP", "dui@ch-exemple.mssante.fr", **STRUCT),
        DirectoryEntry("PER", "zoe.cachee@medecin.mssante.fr", **HIDDEN, list_rouge=True),
        DirectoryEntry("PER", "eloise.berenice@beta.mssante.fr", **BERENICE),
    ]
    for i in range(MARTINS):
        rows.append(
            DirectoryEntry(
                "PER",
                f"martin{i:02d}@medecin.mssante.fr",
                id_nat_ps=f"8100001{i:05d}",
                family_name=f"MARTIN{i:02d}" if i % 2 else f"Martîn{i:02d}",
                given_name="Paul",
            )
        )
    return rows


def load_snapshot(db: Database, entries: list[DirectoryEntry]) -> int:
    """Write a complete snapshot and switch to it, as the importer does."""
    now = utcnow()
    with db.write() as conn:
        snapshot_id = conn.execute(
            insert(directory_snapshots).values(
                kind="bal",
                format="fhir",
                source="test",
                state="current",
                started_at=now,
                finished_at=now,
                rows=len(entries),
            )
        ).inserted_primary_key[0]
        rows = []
        for entry in entries:
            row: dict[str, Any] = dataclasses.asdict(entry)
            digest = hashlib.md5(repr(sorted(row.items())).encode(), usedforsecurity=False)
            rows.append({**row, "snapshot_id": snapshot_id, "row_hash": digest.hexdigest()})
        conn.execute(insert(directory_entries), rows)
        switched = conn.execute(
            update(directory_current)
            .where(directory_current.c.kind == "bal")
            .values(snapshot_id=snapshot_id, switched_at=now)
        ).rowcount
        if not switched:
            conn.execute(
                insert(directory_current).values(
                    kind="bal", snapshot_id=snapshot_id, switched_at=now
                )
            )
    return int(snapshot_id)


@pytest.fixture
def services(tmp_path: Path, database_url: Callable[[], str]) -> Iterator[Services]:
    space = LocalTrustSpace.create(tmp_path / "space", [ALPHA], database_urls=[database_url()])
    services = Services(space.operators[0].config)
    services.migrate()
    load_snapshot(services.db, _entries())
    yield services
    services.close()


async def _serve(app: FastAPI) -> AsyncIterator[str]:
    server, port = await start_http(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/fhir/v2"
    finally:
        await stop_http(server)


@pytest.fixture
async def base(services: Services) -> AsyncIterator[str]:
    """The operator's whole HTTP application (open FHIR API: no key configured)."""
    async for url in _serve(create_app(services)):
        yield url


@pytest.fixture
async def keyed(services: Services) -> AsyncIterator[str]:
    """The FHIR router alone, requiring an ESANTE-API-KEY (the demo national directory)."""
    app = FastAPI()
    app.include_router(fhir_router(services, api_keys=[KEY]))
    async for url in _serve(app):
        yield url


async def _get(url: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url, params=params or None)


async def _bundle(url: str, **params: str) -> dict[str, Any]:
    response = await _get(url, **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR)
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def _addresses(bundle: dict[str, Any]) -> set[str]:
    return {cp["value"] for e in bundle.get("entry", []) for cp in e["resource"].get("telecom", [])}


def _outcome(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR)
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    assert issue["severity"] == "error"
    return str(issue["diagnostics"])


# -- reads --------------------------------------------------------------------------------


async def test_metadata_and_reads(base: str) -> None:
    meta = (await _get(f"{base}/metadata")).json()
    assert meta["resourceType"] == "CapabilityStatement" and meta["fhirVersion"] == "4.0.1"
    assert [r["type"] for r in meta["rest"][0]["resource"]] == [
        "Practitioner",
        "PractitionerRole",
        "Organization",
    ]

    practitioner = (await _get(f"{base}/Practitioner/810000005479")).json()
    assert {(i["system"], i["value"]) for i in practitioner["identifier"]} == {
        ("urn:oid:1.2.250.1.71.4.2.1", "810000005479"),
        ("https://rpps.esante.gouv.fr", "10000005479"),
    }
    # R49: the red-listed second BAL of this professional is not there.
    assert [cp["value"] for cp in practitioner["telecom"]] == ["helene.lefevre@medecin.mssante.fr"]

    role = (await _get(f"{base}/PractitionerRole/810000000017--1750000010")).json()
    assert role["practitioner"]["reference"] == "Practitioner/810000000017"
    assert [cp["value"] for cp in role["telecom"]] == ["eric.durand@ch-exemple.mssante.fr"]

    response = await _get(f"{base}/Organization/1750000010")
    org = response.json()
    assert org["name"] == "CH DE L'EXEMPLE"
    assert [cp["value"] for cp in org["telecom"]] == [
        "cardiologie@ch-exemple.mssante.fr",
        "dui@ch-exemple.mssante.fr",
    ]
    assert "Mme Responsable" not in response.text  # SPEC §3: not in free access
    assert "Secrétariat" in response.text and "Cardiologie" in response.text


async def test_errors(base: str) -> None:
    assert "introuvable" in _outcome(await _get(f"{base}/Practitioner/899999999999"), 404)
    _outcome(await _get(f"{base}/Practitioner/zoe-zz"), 404)
    _outcome(await _get(f"{base}/Patient/1"), 404)
    _outcome(await _get(f"{base}/Patient"), 404)
    assert "inconnu" in _outcome(await _get(f"{base}/Practitioner", birthdate="1990"), 400)
    _outcome(await _get(f"{base}/Practitioner", **{"identifier:contains": "8"}), 400)
    _outcome(await _get(f"{base}/Organization", role="10"), 400)
    _outcome(await _get(f"{base}/Practitioner", _count="0"), 400)
    _outcome(await _get(f"{base}/Practitioner", _cursor="a/b"), 400)
    _outcome(await _get(f"{base}/Practitioner", **{"mailbox-mss-type": "XYZ"}), 400)
    async with httpx.AsyncClient() as client:
        for method in ("PUT", "DELETE"):
            for path in ("/Practitioner/810000005479", "/Practitioner"):
                response = await client.request(method, base + path, json={})
                assert "lecture seule" in _outcome(response, 405)


async def test_red_list_never_shown(base: str) -> None:
    """R49: no search, page or read ever shows a red-listed BAL."""
    _outcome(await _get(f"{base}/Practitioner/810000000033"), 404)
    seen: set[str] = set()
    for rtype in ("Practitioner", "PractitionerRole", "Organization"):
        url: str | None = f"{base}/{rtype}?mailbox-mss:contains=%40&_count=50"
        while url:
            bundle = await _bundle(url)
            seen |= _addresses(bundle)
            url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)
    for rtype, params in [
        ("Practitioner", {"name": "zoe"}),
        ("Practitioner", {"family": "cachee"}),
        ("Practitioner", {"mailbox-mss:exact": "zoe.cachee@medecin.mssante.fr"}),
        ("Practitioner", {"mailbox-mss": "helene.secret"}),
    ]:
        assert _ids(await _bundle(f"{base}/{rtype}", **params)) == []
    visible = {e.address for e in _entries() if not e.list_rouge}
    assert seen == visible


# -- search parameters --------------------------------------------------------------------


async def test_mailbox_mss(base: str) -> None:
    practitioner = f"{base}/Practitioner"
    exact = await _bundle(
        practitioner, **{"mailbox-mss:exact": "Helene.Lefevre@medecin.mssante.fr"}
    )
    assert _ids(exact) == ["810000005479"] and exact["total"] == 1
    assert (
        _ids(await _bundle(practitioner, **{"mailbox-mss:exact": "helene.lefevre@medecin"})) == []
    )
    assert _ids(await _bundle(practitioner, **{"mailbox-mss": "HELENE.LEF"})) == ["810000005479"]
    assert _ids(await _bundle(practitioner, **{"mailbox-mss": "lefevre@"})) == []
    assert _ids(await _bundle(practitioner, **{"mailbox-mss:contains": "lefevre@"})) == [
        "810000005479"
    ]
    # The BALs of professionals in a structure are on PractitionerRole (uc-bal-mss §1).
    assert _ids(await _bundle(practitioner, **{"mailbox-mss": "eric.durand"})) == []
    roles = await _bundle(f"{base}/PractitionerRole", **{"mailbox-mss:contains": "@ch-exemple"})
    assert sorted(_ids(roles)) == ["810000000017--1750000010", "810000000025--1750000010"]
    orgs = await _bundle(f"{base}/Organization", **{"mailbox-mss:contains": "@ch-exemple"})
    assert _ids(orgs) == ["1750000010"]
    assert _addresses(orgs) == {"cardiologie@ch-exemple.mssante.fr", "dui@ch-exemple.mssante.fr"}
    apps = await _bundle(f"{base}/Organization", **{"mailbox-mss-type": "APP"})
    assert _ids(apps) == ["1750000010"]
    # _elements (the consumption guide's "réponse restreinte"): tagged SUBSETTED.
    subset = await _bundle(practitioner, _elements="identifier,telecom", family="lefe")
    (resource,) = [e["resource"] for e in subset["entry"]]
    assert set(resource) == {"resourceType", "id", "meta", "identifier", "telecom"}
    assert resource["meta"]["tag"][0]["code"] == "SUBSETTED"
    # Comma = OR (FHIR R4 §3.1.1.5.4).
    both = await _bundle(practitioner, **{"mailbox-mss": "helene,eloise"})
    assert sorted(_ids(both)) == ["810000000041", "810000005479"]


async def test_identifier(base: str) -> None:
    practitioner = f"{base}/Practitioner"
    for value in (
        "810000005479",
        "urn:oid:1.2.250.1.71.4.2.1|810000005479",
        "https://rpps.esante.gouv.fr|10000005479",
        "10000005479",
    ):
        assert _ids(await _bundle(practitioner, identifier=value)) == ["810000005479"], value
    assert _ids(await _bundle(practitioner, identifier="https://x.example|810000005479")) == []
    org = f"{base}/Organization"
    for value in ("https://finess.esante.gouv.fr|750000010", "1750000010", "750000010"):
        assert _ids(await _bundle(org, identifier=value)) == ["1750000010"], value
    roles = await _bundle(f"{base}/PractitionerRole", practitioner="Practitioner/810000000017")
    assert _ids(roles) == ["810000000017--1750000010"]
    roles = await _bundle(f"{base}/PractitionerRole", organization="1750000010", role="60")
    assert _ids(roles) == ["810000000025--1750000010"]
    by_id = await _bundle(practitioner, _id="810000005479,810000000041")
    assert sorted(_ids(by_id)) == ["810000000041", "810000005479"]


async def test_names_accent_and_case_insensitive_prefix(base: str) -> None:
    practitioner = f"{base}/Practitioner"
    for params in (
        {"family": "lefe"},
        {"family": "LEFEVRE"},
        {"name": "hele"},
        {"given": "HÉLÈNE"},
        {"name": "lefèv"},
        {"family:exact": "Lefèvre"},
        {"family:contains": "fevr"},
    ):
        assert _ids(await _bundle(practitioner, **params)) == ["810000005479"], params
    for params in ({"family": "efevre"}, {"family:exact": "lefevre"}, {"given": "lefevre"}):
        assert _ids(await _bundle(practitioner, **params)) == [], params
    # A professional of operator Alpha finds Beta's BAL by typing part of the name, no accent.
    found = await _bundle(practitioner, name="berenic")
    assert _addresses(found) == {"eloise.berenice@beta.mssante.fr"}
    roles = await _bundle(f"{base}/PractitionerRole", name="eric")
    assert _ids(roles) == ["810000000017--1750000010"]
    orgs = await _bundle(f"{base}/Organization", name="ch de l")
    assert _ids(orgs) == ["1750000010"]
    for params in (
        {"address-city": "paris"},
        {"address-city": "PAR"},
        {"address-postalcode": "750"},
        {"address-postalcode:exact": "75013"},
    ):
        assert _ids(await _bundle(f"{base}/Organization", **params)) == ["1750000010"], params
    assert _ids(await _bundle(f"{base}/Organization", **{"address-city": "lyon"})) == []
    # POST _search (form body) answers as GET.
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{practitioner}/_search", data={"family": "lefe"})
    assert response.status_code == 200 and _ids(response.json()) == ["810000005479"]


async def test_paging_follows_next_links(base: str) -> None:
    url: str | None = f"{base}/Practitioner?family=martin&_count=5"
    ids: list[str] = []
    pages = 0
    while url:
        bundle = await _bundle(url)
        pages += 1
        assert len(bundle["entry"]) <= 5
        (self_link,) = [lk["url"] for lk in bundle["link"] if lk["relation"] == "self"]
        assert self_link.startswith("http://127.0.0.1:")
        ids += _ids(bundle)
        url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)
        if url:
            query = dict(parse_qsl(urlsplit(url).query))
            assert query["family"] == "martin" and query["_count"] == "5"
    assert pages == 5
    assert len(ids) == len(set(ids)) == MARTINS
    all_bals = await _bundle(f"{base}/Practitioner", **{"mailbox-mss:contains": "@"})
    assert all_bals["total"] == MARTINS + 2 and len(all_bals["entry"]) == MARTINS + 2


# -- authentication and the client --------------------------------------------------------


async def test_api_key_required_when_configured(keyed: str) -> None:
    _outcome(await _get(f"{keyed}/Practitioner/810000005479"), 401)
    async with httpx.AsyncClient() as client:
        bad = await client.get(f"{keyed}/metadata", headers={"ESANTE-API-KEY": "x"})
        good = await client.get(f"{keyed}/metadata", headers={"ESANTE-API-KEY": KEY})
    _outcome(bad, 401)
    assert good.status_code == 200

    def without_key() -> None:
        with AnnuaireClient(keyed, "") as client:
            client.read("Practitioner", "810000005479")

    with pytest.raises(AnnuaireError) as excinfo:
        await asyncio.to_thread(without_key)
    assert excinfo.value.status == 401 and "ESANTE-API-KEY" in excinfo.value.message


async def test_client_lookup_and_paging(keyed: str) -> None:
    def scenario() -> None:
        with AnnuaireClient(keyed, KEY) as client:
            (per,) = client.lookup("Helene.Lefevre@medecin.mssante.fr")
            assert per.resource_type == "Practitioner" and per.bal_type == "PER"
            assert per.resource["id"] == "810000005479"
            assert per.display_name == "Hélène Lefèvre"
            (org,) = client.lookup("cardiologie@ch-exemple.mssante.fr")
            assert (org.resource_type, org.bal_type) == ("Organization", "ORG")
            assert org.structure == "CH DE L'EXEMPLE"
            (role,) = client.lookup("eric.durand@ch-exemple.mssante.fr")
            assert role.resource_type == "PractitionerRole"
            assert client.lookup("cardiologie@ch-exemple.mssante.fr", ["PER"]) == []
            assert client.lookup("zoe.cachee@medecin.mssante.fr") == []  # R49
            assert client.requests_sent == 15  # three calls per lookup (R51)

            sent = client.requests_sent
            names = list(client.search("Practitioner", {"family": "martin", "_count": "4"}))
            assert len({r["id"] for r in names}) == MARTINS
            assert client.requests_sent - sent == 6  # ceil(23 / 4) pages, next links followed
            posted = list(client.search("Practitioner", [("family", "martin")], post=True))
            assert {r["id"] for r in posted} == {r["id"] for r in names}

    await asyncio.to_thread(scenario)


async def test_client_rate_limit(keyed: str) -> None:
    n = 40

    def burst() -> float:
        with AnnuaireClient(keyed, KEY) as client:
            started = time.monotonic()
            for _ in range(n):
                client.metadata()
            return time.monotonic() - started

    elapsed = await asyncio.to_thread(burst)
    # At most 17 requests in any one-second window (R50).
    assert elapsed >= (n - 17) / 17


def test_rate_limiter_slots() -> None:
    limiter = RateLimiter(17)
    delays = [limiter.reserve() for _ in range(35)]
    assert all(d < 0.5 for d in delays[:17])
    assert all(d >= 0.9 for d in delays[17:34]) and delays[34] >= 1.9


def test_client_cannot_write() -> None:
    client = AnnuaireClient("https://annuaire.example/fhir/v2", "k")
    try:
        for name in ("put", "delete", "patch", "post"):
            assert not hasattr(client, name)
        with pytest.raises(ValueError):
            client.read("Practitioner", "../x")
    finally:
        client.close()


async def test_cli_lookup(keyed: str) -> None:
    import mssante.cli.annuaire_lookup  # noqa: F401 - registers the command
    from mssante.cli import main

    def run(*args: str) -> Any:
        env = {"ESANTE_API_KEY": KEY}
        return CliRunner().invoke(main, ["annuaire", "lookup", *args], env=env)

    found = await asyncio.to_thread(run, "eloise.berenice@beta.mssante.fr", "--base-url", keyed)
    assert found.exit_code == 0, found.output
    assert "Practitioner" in found.output and "810000000041" in found.output
    missing = await asyncio.to_thread(run, "nobody@beta.mssante.fr", "--base-url", keyed)
    assert missing.exit_code == 1 and "Aucune BAL" in missing.output
