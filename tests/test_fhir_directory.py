"""Directory entries ↔ FHIR resources of the Annuaire Santé API (SPEC §4.1, R47).

Every example of ``shared/data/annuaire/fhir-ig-annuaire`` and ``fhir-api-mss`` is loaded
(parsed into entries) and rendered back: the same identifiers, the same BAL telecom values,
and every extension of each example BAL again, with the same values (R47 adds the two
mandatory extensions where an example omits one).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED_DATA
from mssante.domain.directory import DirectoryEntry
from mssante.formats import fhir_directory as fd
from mssante.formats.fhir_directory_parse import (
    entries_from_bundle,
    entries_from_resource,
    mss_contact_points,
)

EXAMPLES = SHARED_DATA / "annuaire"
HOLDERS = ("Practitioner", "PractitionerRole", "Organization")


def _examples() -> list[Path]:
    files = sorted(EXAMPLES.glob("fhir-ig-annuaire/*.json"))
    files += sorted(EXAMPLES.glob("fhir-api-mss/*.json"))
    return [f for f in files if _load(f).get("resourceType") in (*HOLDERS, "Bundle")]


def _load(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8-sig"))
    return value if isinstance(value, dict) else {}


def _holders(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["resourceType"] == "Bundle":
        return [e["resource"] for e in doc.get("entry", [])]
    return [doc]


def _identifiers(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i.get("system", ""), i["value"]) for i in resource.get("identifier", [])}


def assert_r47(cp: dict[str, Any]) -> None:
    """The as-mailbox-mss ContactPoint shape (SPEC §4.1, R47)."""
    assert cp["system"] == "email" and "@" in cp["value"]
    assert isinstance(cp["rank"], int) and cp["rank"] >= 1
    by_url = {e["url"]: e for e in cp["extension"]}
    assert by_url[fd.EXT_EMAIL_TYPE]["valueCoding"] == {
        "system": fd.SYSTEM_TYPE_MESSAGERIE,
        "code": "MSSANTE",
    }
    subs = {s["url"]: s for s in by_url[fd.EXT_MSS_METADATA]["extension"]}
    assert set(subs) <= {"type", "description", "responsible", "service", "listeRouge"}
    (coding,) = subs["type"]["valueCodeableConcept"]["coding"]
    assert coding["system"] == fd.SYSTEM_TYPE_BAL and coding["code"] in ("PER", "ORG", "APP", "CAB")
    assert isinstance(subs["listeRouge"]["valueBoolean"], bool)


def _assert_extensions_kept(example: dict[str, Any], rendered: dict[str, Any]) -> None:
    mine = {e["url"]: e for e in rendered["extension"]}
    for ext in example.get("extension", []):
        assert ext["url"] in mine, ext["url"]
        if ext["url"] == fd.EXT_MSS_METADATA:
            subs = {s["url"]: s for s in mine[ext["url"]]["extension"]}
            for sub in ext["extension"]:
                assert subs[sub["url"]] == sub
        else:
            assert mine[ext["url"]] == ext
    if "rank" in example:
        assert rendered["rank"] == example["rank"]


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_example_round_trip(path: Path) -> None:
    doc = _load(path)
    if doc["resourceType"] == "Bundle":
        entries = entries_from_bundle(doc)
    else:
        entries = entries_from_resource(doc)
    holders = [h for h in _holders(doc) if mss_contact_points(h)]
    if not holders:
        # No MSSanté BAL (phone, fax, a structure's plain e-mail, or no telecom at all):
        # nothing for the directory of BALs to hold.
        assert entries == []
        return
    rendered = fd.render_entries(entries)
    assert len(rendered) == len(holders)
    for example, mine in zip(holders, rendered, strict=True):
        assert mine["resourceType"] == example["resourceType"]
        assert _identifiers(mine) == _identifiers(example)
        theirs = mss_contact_points(example)
        assert [cp["value"] for cp in mine["telecom"]] == [cp["value"] for cp in theirs]
        for their_cp, my_cp in zip(theirs, mine["telecom"], strict=True):
            assert_r47(my_cp)
            _assert_extensions_kept(their_cp, my_cp)
        # Loading what we render gives the same entries again.
        assert entries_from_resource(mine) == [
            e for e in entries if e.address in {cp["value"] for cp in theirs}
        ]


def test_examples_cover_every_holder_type() -> None:
    """Which examples hold BALs (the others carry none: see test_example_round_trip)."""
    with_bals = {
        p.name for p in _examples() if any(mss_contact_points(h) for h in _holders(_load(p)))
    }
    assert with_bals == {
        "Bundle-mss-bundle-bal-per-elements.json",
        "Practitioner-mss-practitioner-bal-per-martin-elements.json",
        "Practitioner-mss-practitioner-bal-per-martin.json",
        "Practitioner-334081DP.json",
        "Practitioner-3719500DP.json",
        "Organization-example-organization-nancy.json",
    }


def test_nancy_organization_metadata() -> None:
    doc = _load(EXAMPLES / "fhir-ig-annuaire" / "Organization-example-organization-nancy.json")
    (entry,) = entries_from_resource(doc)
    assert entry.bal_type == "ORG"
    assert entry.address == "exemple.address@address.mssante.fr"
    assert entry.id_struct == "1540002698" and entry.id_type_struct == "1"
    assert entry.description == "Description-mss" and entry.list_rouge is False
    assert entry.org_name == "CHRU NANCY - HOPITAUX DE BRABOIS"
    assert entry.postcode == "54511" and entry.city == "VANDOEUVRE LES NANCY CEDEX"
    assert entry.street_type == "R" and entry.street_name == "DU MORVAN"


def test_practitioner_identifiers_and_profession() -> None:
    doc = _load(EXAMPLES / "fhir-ig-annuaire" / "Practitioner-334081DP.json")
    (entry,) = entries_from_resource(doc)
    assert (entry.id_nat_ps, entry.id_type_pp, entry.id_pp) == ("810003461033", "8", "10003461033")
    assert (entry.family_name, entry.given_name, entry.civility) == ("Saucier", "Arthur", "M")
    assert (entry.profession_code, entry.profession_category_code) == ("10", "C")
    assert entry.bal_type == "PER" and entry.rank == 1


def _full_entries() -> list[DirectoryEntry]:
    structure = {
        "id_type_struct": "1",
        "id_struct": "1750000010",
        "org_name": "CH DE L'EXEMPLE",
        "org_trade_name": "Hôpital Exemple",
        "address_l2": "BATIMENT B",
        "address_l3": "BP 12",
        "street_number": "12",
        "street_number_suffix": "B",
        "street_type": "R",
        "street_name": "DE LA SANTE",
        "locality": "LE HAMEAU",
        "city_line": "75013 PARIS",
        "postcode": "75013",
        "departement": "75",
        "country": "FRANCE",
    }
    person = {
        "id_type_pp": "8",
        "id_pp": "10000005479",
        "id_nat_ps": "810000005479",
        "civility": "DR",
        "family_name": "LEFÈVRE",
        "given_name": "Hélène Marie",
        "profession_code": "10",
        "profession_label": "Médecin",
        "profession_category_code": "C",
        "profession_category_label": "Civil",
    }
    return [
        DirectoryEntry("PER", "helene.lefevre@medecin.mssante.fr", **person, rank=2),
        DirectoryEntry(
            "PER",
            "h.lefevre@ch-exemple.mssante.fr",
            **person,
            **structure,
            skill_code="SM54",
            skill_label="Médecine générale",
        ),
        DirectoryEntry(
            "ORG",
            "cardiologie@ch-exemple.mssante.fr",
            **structure,
            service="Cardiologie",
            description="Secrétariat de cardiologie",
            responsible="Mme Durand, cadre de santé",
        ),
        DirectoryEntry("APP", "dui@ch-exemple.mssante.fr", **structure, list_rouge=True),
    ]


def test_our_resources_round_trip() -> None:
    entries = _full_entries()
    resources = fd.render_entries(entries, include_referenced=True)
    types = sorted(r["resourceType"] for r in resources)
    assert types == ["Organization", "Practitioner", "PractitionerRole"]
    bundle = {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}
    back = entries_from_bundle(bundle)
    assert sorted(back, key=lambda e: e.address) == sorted(entries, key=lambda e: e.address)
    for resource in resources:
        for cp in resource.get("telecom", []):
            assert_r47(cp)


def test_responsible_left_out_on_request() -> None:
    org = [e for e in _full_entries() if e.bal_type == "ORG"]
    public = fd.organization(org, include_responsible=False)
    (cp,) = public["telecom"]
    urls = [s["url"] for s in cp["extension"][1]["extension"]]
    assert urls == ["type", "description", "service", "listeRouge"]
    assert "Durand" not in json.dumps(public)


def test_resource_shapes() -> None:
    entries = _full_entries()
    practitioner = fd.practitioner(entries[:2])
    assert practitioner["id"] == "810000005479"
    assert practitioner["meta"]["profile"] == fd.PROFILES["Practitioner"]
    assert [cp["value"] for cp in practitioner["telecom"]] == [entries[0].address]
    assert practitioner["name"] == [
        {"use": "usual", "family": "LEFÈVRE", "given": ["Hélène", "Marie"], "prefix": ["DR"]}
    ]
    role = fd.practitioner_role(entries[1:2])
    assert role["id"] == "810000005479--1750000010"
    assert role["practitioner"]["reference"] == "Practitioner/810000005479"
    assert role["organization"]["reference"] == "Organization/1750000010"
    assert role["code"][0]["coding"][0] == {
        "system": fd.SYSTEM_PROFESSION,
        "code": "10",
        "display": "Médecin",
    }
    org = fd.organization(entries[1:])
    assert [cp["value"] for cp in org["telecom"]] == [
        "cardiologie@ch-exemple.mssante.fr",
        "dui@ch-exemple.mssante.fr",
    ]
    assert {(i["type"]["coding"][0]["code"], i["value"]) for i in org["identifier"]} == {
        ("IDNST", "1750000010"),
        ("FINEG", "750000010"),
    }
    address = org["address"][0]
    assert address["city"] == "PARIS" and address["postalCode"] == "75013"
    assert len(address["line"]) == len(address["_line"]) == 4


@pytest.mark.parametrize(
    "value", ["810000005479", "3" + "18310021300028" + "/A-12", "Élodie", "a--b", "x-2d"]
)
def test_logical_ids(value: str) -> None:
    logical = fd.escape_id(value)
    assert all(c.isascii() and (c.isalnum() or c in "-.") for c in logical)
    assert "--" not in logical
    assert fd.unescape_id(logical) == value
    assert fd.parse_logical_id("Practitioner", logical) == (value,)
    role = fd.practitioner_role_id(value, "1" + value)
    assert fd.parse_logical_id("PractitionerRole", role) == (value, "1" + value)


@pytest.mark.parametrize("bad", ["", "a/b", "-zz", "-2", "a b", "x" * 65])
def test_bad_logical_ids(bad: str) -> None:
    assert fd.parse_logical_id("Practitioner", bad) is None


def test_entry_fields_are_all_known() -> None:
    """Every DirectoryEntry field is rendered or documented as not rendered."""
    not_rendered = {"digitization"}  # removed from the API in IG-AS 1.2.0 (SPEC §4.1)
    assert not_rendered <= {f.name for f in dataclasses.fields(DirectoryEntry)}
