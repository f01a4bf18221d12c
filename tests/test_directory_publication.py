"""Publication of our BALs to the national directory (SPEC §4.2, R48, R49; issue 5 item 4).

Patch shapes against the IG-MSS examples (openapi-balmss.yaml), then a real operator's
services publishing to a real national directory service on 127.0.0.1 (HTTPS with the demo
CA), read back through its FHIR API, its suggest endpoint and its extraction.
"""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from conftest import ALPHA, SHARED_DATA
from mssante.domain.directory import DirectoryEntry
from mssante.domain.identifiers import luhn_check_digit
from mssante.domain.mailboxes import MailboxSpec, MailboxStatus, MailboxType
from mssante.formats.fhir_patch import (
    PatchError,
    apply_patch,
    build_patch,
    contact_point,
    contact_point_fields,
    target_for,
)
from mssante.pki import DemoCA
from mssante.runtime import Services
from mssante.services import traces
from mssante.storage.database import utcnow
from mssante.storage.schema_publication import directory_outbox
from mssante.testing.national_directory import NationalDirectory
from mssante.testing.trust_space import LocalTrustSpace

OPENAPI = SHARED_DATA / "annuaire" / "fhir-api-mss" / "openapi-balmss.yaml"
FINESS_A = "1" + "75000003" + luhn_check_digit("75000003")  # idNat_Struct "1"+FINESS
FINESS_DUP = "1" + "75000004" + luhn_check_digit("75000004")
RPPS_LEA = "1000000002" + luhn_check_digit("1000000002")
RPPS_UNKNOWN = "1000000009" + luhn_check_digit("1000000009")
DOMAIN = ALPHA.domain

REGISTRY = (
    DirectoryEntry(
        "PER",
        "",
        id_type_pp="8",
        id_pp=RPPS_LEA,
        id_nat_ps="8" + RPPS_LEA,
        family_name="Dubois-Lefèvre",
        given_name="Léa",
        profession_code="10",
        profession_label="Médecin",
    ),
    DirectoryEntry(
        "ORG", "", id_type_struct="1", id_struct=FINESS_A, org_name="Maison départementale"
    ),
    # Two structures under one FINESS (a data-quality case of the real directory): 412.
    DirectoryEntry("ORG", "", id_type_struct="1", id_struct=FINESS_DUP, org_name="EJ"),
    DirectoryEntry("ORG", "", id_type_struct="1", id_struct=FINESS_DUP, org_name="EG"),
)


def _entry(**fields: Any) -> DirectoryEntry:
    base = DirectoryEntry("PER", "lea.dubois@alpha.mssante.fr", id_nat_ps="8" + RPPS_LEA)
    return replace(base, **fields)


# -- patch shapes (pure) ------------------------------------------------------------------


def _openapi_example(path: str, name: str) -> dict[str, Any]:
    spec = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    examples = spec["paths"][path]["patch"]["requestBody"]["content"]["application/fhir+json"]
    value: dict[str, Any] = examples["examples"][name]["value"]
    return value


def _skeleton(params: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """Operation parts as (name, value[x] key) pairs: the shape without the values."""
    out = []
    for op in params["parameter"]:
        assert op["name"] == "operation"
        out.append([(p["name"], next(k for k in p if k.startswith("value"))) for p in op["part"]])
    return out


@pytest.mark.skipif(not OPENAPI.is_file(), reason="shared IG-MSS data not found")
@pytest.mark.parametrize(
    ("operation", "example"),
    [
        ("insert", "insertBALPER"),
        ("replace", "replaceBALPERContactPoint"),
        ("delete", "deleteBALPER"),
    ],
)
def test_per_patches_have_the_shape_of_the_ig_examples(operation: str, example: str) -> None:
    ours = build_patch(operation, "Practitioner", _entry())
    theirs = _openapi_example("/Practitioner", example)
    assert ours["resourceType"] == "Parameters"
    assert _skeleton(ours) == _skeleton(theirs)
    parts = {p["name"]: p for p in ours["parameter"][0]["part"]}
    path = parts["path"]["valueString"]
    if operation == "insert":
        assert path == "Practitioner.telecom" and parts["index"]["valueInteger"] == 0
        cp = parts["value"]["valueContactPoint"]
        assert cp["system"] == "email" and cp["value"] == "lea.dubois@alpha.mssante.fr"
        assert contact_point_fields(cp)["bal_type"] == "PER"
    else:
        assert path == "Practitioner.telecom.where(value = 'lea.dubois@alpha.mssante.fr')"


@pytest.mark.skipif(not OPENAPI.is_file(), reason="shared IG-MSS data not found")
def test_org_patches_and_targets() -> None:
    entry = DirectoryEntry(
        "ORG", "mdph@alpha.mssante.fr", id_struct=FINESS_A, description="Accueil", service="MDPH"
    )
    target = target_for("ORG", None, FINESS_A)
    assert target.url("https://x/fhir/v2") == (
        "https://x/fhir/v2/Organization?identifier=https://finess.esante.gouv.fr%7C" + FINESS_A[1:]
    )
    insert = build_patch("insert", "Organization", entry)
    theirs = _openapi_example("/Organization", "replaceContactPoint")
    assert _skeleton(build_patch("replace", "Organization", entry)) == _skeleton(theirs)
    cp = insert["parameter"][0]["part"][3]["valueContactPoint"]
    assert cp == contact_point(entry)  # rendered exactly like the FHIR read API
    fields = contact_point_fields(cp)
    assert (fields["description"], fields["service"], fields["list_rouge"]) == (
        "Accueil",
        "MDPH",
        False,
    )
    siret = target_for("APP", None, "3" + "1" * 14)
    assert (siret.resource_type, siret.system) == ("Organization", "urn:oid:1.2.250.1.71.4.2.2")
    per = target_for("PER", "8" + RPPS_LEA, None)
    assert per.identifier == "urn:oid:1.2.250.1.71.4.2.1|8" + RPPS_LEA
    with pytest.raises(PatchError):
        target_for("ORG", None, None)


def test_apply_patch_insert_replace_delete_and_refusals() -> None:
    resource: dict[str, Any] = {"resourceType": "Practitioner"}
    a, b = _entry(), _entry(address="o'brien@alpha.mssante.fr", rank=2)
    resource = apply_patch(resource, build_patch("insert", "Practitioner", a))
    resource = apply_patch(resource, build_patch("insert", "Practitioner", b))
    assert [cp["value"] for cp in resource["telecom"]] == [b.address, a.address]
    red = replace(a, list_rouge=True)
    resource = apply_patch(resource, build_patch("replace", "Practitioner", red))
    assert contact_point_fields(resource["telecom"][1])["list_rouge"] is True
    # The IG-MSS form: one metadata sub-extension (listeRouge) of the BAL selected by value.
    meta = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
    one = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {
                        "name": "path",
                        "valueString": "Practitioner.telecom.where(value = "
                        "'o\\'brien@alpha.mssante.fr')"
                        f".extension('{meta}').extension('listeRouge').value",
                    },
                    {"name": "value", "valueBoolean": True},
                ],
            }
        ],
    }
    resource = apply_patch(resource, one)
    assert contact_point_fields(resource["telecom"][0])["list_rouge"] is True
    resource = apply_patch(resource, build_patch("full", "Practitioner", a))  # idempotent
    assert sorted(cp["value"] for cp in resource["telecom"]) == sorted([a.address, b.address])
    resource = apply_patch(resource, build_patch("delete", "Practitioner", b))
    assert [cp["value"] for cp in resource["telecom"]] == [a.address]
    refusals = [
        build_patch("replace", "Practitioner", replace(a, bal_type="CAB")),  # type is immutable
        build_patch("insert", "Practitioner", a),  # already there
        build_patch("replace", "Practitioner", b),  # not there
        {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": []}]},
        {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "replace"},
                        {"name": "path", "valueString": "Practitioner.name"},
                        {"name": "value", "valueString": "X"},
                    ],
                }
            ],
        },
    ]
    for params in refusals:
        with pytest.raises(PatchError):
            apply_patch(resource, params)


# -- an operator publishing to a national directory ---------------------------------------


@dataclass
class World:
    national: NationalDirectory
    services: Services
    ca_file: Path

    async def publish(self, **kw: Any) -> Any:
        """One pass, off the loop (the national directory serves on this loop)."""

        def run() -> Any:
            with self.services.publication.client() as client:
                return self.services.publication.publish_pending(client, **kw)

        return await asyncio.to_thread(run)

    async def get(self, url: str, **params: str) -> httpx.Response:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        async with httpx.AsyncClient(verify=ctx, timeout=10) as client:
            return await client.get(url, params=params)

    def outbox(self) -> list[Any]:
        with self.services.db.read() as conn:
            return conn.execute(select(directory_outbox).order_by(directory_outbox.c.id)).all()

    async def fhir(self, path: str, **params: str) -> dict[str, Any]:
        response = await self.get(self.national.fhir_url + path, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def fhir_addresses(self, path: str, **params: str) -> set[str]:
        bundle = await self.fhir(path, **params)
        return {
            cp["value"] for e in bundle.get("entry", []) for cp in e["resource"].get("telecom", [])
        }


@pytest.fixture
async def world(tmp_path: Path, database_url: Callable[[], str]) -> AsyncIterator[World]:
    ca = DemoCA.create("test CA")
    ca_file = tmp_path / "ca.pem"
    ca.write_cert(ca_file)
    national = NationalDirectory(
        tmp_path / "national", database_url=database_url() or None, ca=ca, registry=REGISTRY
    )
    await national.start()
    space = LocalTrustSpace.create(
        tmp_path / "space",
        [ALPHA],
        database_urls=[database_url()],
        ca=ca,
        directory={"publish_url": national.fhir_url, "publish_ca_file": str(ca_file)},
    )
    services = Services(space.operators[0].config)
    services.migrate()
    try:
        yield World(national, services, ca_file)
    finally:
        services.close()
        await national.stop()


def _per(services: Services, rpps: str = RPPS_LEA, **spec: Any) -> str:
    address = spec.pop("address", "lea.dubois@" + DOMAIN)
    services.mailboxes.create_professional("8" + rpps, "Dubois-Lefèvre", "Léa")
    services.mailboxes.create_mailbox(
        MailboxSpec(address=address, type=MailboxType.PER, id_nat_ps="8" + rpps, **spec)
    )
    return address


def _org(services: Services, id_struct: str = FINESS_A, local: str = "mdph") -> str:
    services.mailboxes.create_structure(id_struct, "Structure")
    address = f"{local}@{DOMAIN}"
    services.mailboxes.create_mailbox(
        MailboxSpec(
            address=address,
            type=MailboxType.ORG,
            id_nat_struct=id_struct,
            responsible="Mme la directrice",
            description="Accueil",
        )
    )
    return address


async def test_create_change_close_reach_the_national_directory(world: World) -> None:
    per, org = _per(world.services), _org(world.services)
    assert [r.operation for r in world.outbox()] == ["insert", "insert"]  # same transaction
    report = await world.publish()
    assert [(r.address, r.status, r.outcome) for r in report.results] == [
        (per, 200, "sent"),
        (org, 200, "sent"),
    ]
    stored = {e.address: e for e in world.national.entries()}
    assert stored[per].family_name == "Dubois-Lefèvre"  # the holder's names (RPPS)
    assert stored[org].org_name == "Maison départementale"
    # The FHIR read API, family without accents:
    assert per in await world.fhir_addresses("/Practitioner", family="lefevre")
    assert org in await world.fhir_addresses("/Organization", name="departementale")

    world.services.mailboxes.update(org, {"description": "Secrétariat", "rank": 2})
    assert (await world.publish()).sent == 1
    stored = {e.address: e for e in world.national.entries()}
    assert (stored[org].description, stored[org].rank) == ("Secrétariat", 2)

    world.services.mailboxes.set_status(per, MailboxStatus.SUSPENDED)
    assert world.outbox()[-1].operation == "replace"  # nothing for the suspension
    world.services.mailboxes.set_status(per, MailboxStatus.CLOSED)
    assert world.outbox()[-1].operation == "delete"
    assert (await world.publish()).sent == 1
    assert per not in {e.address for e in world.national.entries()}
    assert per not in await world.fhir_addresses("/Practitioner", family="lefevre")
    assert all(r.state == "sent" for r in world.outbox())
    with world.services.db.read() as conn:
        events = traces.list_events(conn, action="directory.publish")
    assert len(events) == 4 and {e.outcome for e in events} == {"ok"}


async def test_404_and_412_are_final_and_reported(world: World) -> None:
    unknown = _per(world.services, RPPS_UNKNOWN, address="inconnu@" + DOMAIN)
    ambiguous = _org(world.services, FINESS_DUP, "ambigu")
    report = await world.publish()
    assert [(r.address, r.status, r.outcome) for r in report.results] == [
        (unknown, 404, "failed"),
        (ambiguous, 412, "failed"),
    ]
    assert "porteur inconnu" in report.results[0].error
    assert "plusieurs porteurs" in report.results[1].error
    assert [r.state for r in world.outbox()] == ["failed", "failed"]
    assert (await world.publish(now=utcnow() + timedelta(days=1))).results == []  # never retried
    with world.services.db.read() as conn:
        failed = traces.list_events(conn, action="directory.publish")
    assert {(e.mailbox, e.outcome) for e in failed} == {
        (unknown, "failed"),
        (ambiguous, "failed"),
    }
    assert world.national.entries() == []


async def test_503_then_200_is_retried_in_order(world: World) -> None:
    per = _per(world.services)
    world.services.mailboxes.update(per, {"rank": 3})
    world.national.fail_next(503)
    report = await world.publish()
    assert [(r.operation, r.status, r.outcome) for r in report.results] == [
        ("insert", 503, "retry")
    ]  # the replace waits behind the insert of the same address
    rows = world.outbox()
    assert [(r.state, r.attempts) for r in rows] == [("pending", 1), ("pending", 0)]
    assert (await world.publish()).results == []  # not due yet (backoff)
    report = await world.publish(now=utcnow() + timedelta(hours=1))
    assert [(r.operation, r.outcome) for r in report.results] == [
        ("insert", "sent"),
        ("replace", "sent"),
    ]
    assert [e.rank for e in world.national.entries()] == [3]


async def test_network_error_is_retried(world: World, tmp_path: Path) -> None:
    _per(world.services)
    await world.national.stop()  # nobody listens any more
    report = await world.publish()
    assert report.retrying == 1 and report.results[0].status is None
    assert world.outbox()[0].state == "pending"


async def test_red_listed_bal_is_published_as_such_and_never_shown(world: World) -> None:
    red = _per(world.services, list_rouge=True)
    patch = json.loads(world.outbox()[0].patch)
    cp = patch["parameter"][0]["part"][3]["valueContactPoint"]
    assert contact_point_fields(cp)["list_rouge"] is True
    assert (await world.publish()).sent == 1
    assert [(e.address, e.list_rouge) for e in world.national.entries()] == [(red, True)]
    assert red not in await world.fhir_addresses("/Practitioner", family="dubois")
    assert red not in await world.fhir_addresses("/Practitioner", **{"mailbox-mss": red})
    suggest = await world.get(world.national.base_url + "/annuaire/suggest", q="dubois")
    assert suggest.status_code == 200 and red not in suggest.text
    extraction = await world.get(world.national.extraction_url)
    with zipfile.ZipFile(io.BytesIO(extraction.content)) as archive:
        (name,) = archive.namelist()
        assert name.startswith("Extraction_Correspondance_MSSante_")
        assert red not in archive.read(name).decode("utf-8")


async def test_publish_all_and_refusals_of_the_receiver(world: World) -> None:
    per, org = _per(world.services), _org(world.services)
    await world.publish()
    assert world.services.publication.queue_all() == 2
    report = await world.publish()
    assert report.sent == 2  # delete + insert: idempotent
    assert sorted(e.address for e in world.national.entries()) == sorted([per, org])
    # The receiver refuses what cannot be applied (400: final) and a missing key (401).
    url = (
        world.national.fhir_url + "/Practitioner?identifier=urn:oid:1.2.250.1.71.4.2.1|8" + RPPS_LEA
    )
    body = build_patch("insert", "Practitioner", _entry(address=org, bal_type="PER"))
    ctx = ssl.create_default_context(cafile=str(world.ca_file))
    async with httpx.AsyncClient(verify=ctx) as client:
        answer = await client.patch(
            url, content=json.dumps(body), headers={"Content-Type": "application/fhir+json"}
        )
    assert answer.status_code == 400 and answer.json()["resourceType"] == "OperationOutcome"


async def test_cli_publish_prints_the_results(world: World, tmp_path: Path) -> None:
    import mssante.cli.annuaire_publish  # noqa: F401 - registers `annuaire publish`
    from mssante.cli import main

    _per(world.services)
    _per(world.services, RPPS_UNKNOWN, address="inconnu@" + DOMAIN)
    config = tmp_path / "space" / DOMAIN / "mssante.toml"
    runner = CliRunner()
    args = ["--config", str(config), "annuaire", "publish"]
    env = {"COLUMNS": "300"}  # one table row per line
    result = await asyncio.to_thread(runner.invoke, main, args, env=env)
    assert result.exit_code == 1, result.output
    assert "lea.dubois@" + DOMAIN in result.output and "publiée" in result.output
    assert "404" in result.output and "échec définitif" in result.output
    assert "1 publiée(s), 1 en échec, 0 en attente" in result.output
    result = await asyncio.to_thread(runner.invoke, main, [*args, "--all"], env=env)
    assert "2 BAL mise(s) en file" in result.output


def test_nothing_is_recorded_when_publication_is_off(
    tmp_path: Path, database_url: Callable[[], str]
) -> None:
    space = LocalTrustSpace.create(tmp_path / "space", [ALPHA], database_urls=[database_url()])
    services = Services(space.operators[0].config)
    services.migrate()
    try:
        assert not services.publication.settings.enabled
        _per(services)
        with services.db.read() as conn:
            assert conn.execute(select(directory_outbox)).all() == []
    finally:
        services.close()
