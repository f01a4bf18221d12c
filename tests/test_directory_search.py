"""Directory search and suggest (issue 5 items 2 and 7), the same on SQLite and PostgreSQL.

A small realistic directory is written straight into the snapshot tables, indexed with
`index_snapshot`, then searched: accents and case, prefixes, small typos, every searched
field, ranking, red-listed BALs (R49), the snapshot in force only, in-place re-indexing.
Every assertion lists the exact expected addresses: the suite runs on both engines, so
both give the same results. The HTTP endpoints are driven through a running listener with
an OAuth2 client-credentials token of operator Alpha looking up BALs of operator Beta.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, insert, update

from conftest import ALPHA
from mssante.cli.common import main
from mssante.domain.directory import DirectoryEntry
from mssante.domain.directory_text import normalise, one_edit_variants
from mssante.domain.mailboxes import MailboxType
from mssante.http import create_app, start_http, stop_http
from mssante.runtime import Services
from mssante.services.directory_search import (
    DirectorySearch,
    drop_snapshot_index,
    index_entries,
    index_snapshot,
)
from mssante.storage.database import Database
from mssante.storage.schema_directory import (
    directory_current,
    directory_entries,
    directory_snapshots,
)
from mssante.testing.clients import seed_structure_mailbox
from mssante.testing.trust_space import LocalTrustSpace

APP = "dui.cabinet@alpha.mssante.fr"
FINESS = "1750000010"
PASSWORD = "Sesame-ouvre-toi 42!"


def per(
    address: str, family: str, given: str, profession: str, city_line: str, **kw: Any
) -> DirectoryEntry:
    postcode = city_line.split()[0]
    return DirectoryEntry(
        bal_type="PER",
        address=address,
        id_type_pp="8",
        family_name=family,
        given_name=given,
        profession_label=profession,
        city_line=city_line,
        postcode=postcode,
        country="FRANCE",
        **kw,
    )


def org(address: str, bal_type: str, name: str, city_line: str, **kw: Any) -> DirectoryEntry:
    return DirectoryEntry(
        bal_type=bal_type,
        address=address,
        org_name=name,
        city_line=city_line,
        postcode=city_line.split()[0],
        country="FRANCE",
        **kw,
    )


HELENE = "helene.dupont@beta.mssante.fr"
JEAN = "jean.dupond@beta.mssante.fr"
MARC = "marc.dupontel@alpha.mssante.fr"
CHU = "cardiologie.chu@chu-saint-etienne.mssante.fr"
CLAIRE = "claire.dupont@beta.mssante.fr"  # red-listed
MARTIN_B = "martin.bernard@alpha.mssante.fr"
SOPHIE = "sophie.martin@beta.mssante.fr"
LUC = "luc.martinez@alpha.mssante.fr"
PAUL = "paul.marin@beta.mssante.fr"
LILAS = "secretariat@cabinet-lilas.mssante.fr"
EHPAD = "dpi.tilleuls@ehpad.mssante.fr"
FRANCOISE = "f.lefevre@beta.mssante.fr"

ENTRIES = (
    per(HELENE, "DUPONT", "Hélène", "Médecin", "75013 PARIS", skill_label="Cardiologie",
        departement="75", street_name="DE LA SANTE", org_name="CABINET DE CARDIOLOGIE"),
    per(JEAN, "DUPOND", "Jean", "Infirmier", "13001 MARSEILLE", departement="13"),
    per(MARC, "DUPONTEL", "Marc", "Pharmacien", "69003 LYON", departement="69"),
    org(CHU, "ORG", "CHU DE SAINT-ETIENNE", "42055 SAINT-ETIENNE CEDEX 2", departement="42",
        service="Service de cardiologie", id_struct="1420000015"),
    replace(per(CLAIRE, "DUPONT", "Claire", "Médecin", "75013 PARIS"), list_rouge=True),
    per(MARTIN_B, "BERNARD", "Martin", "Masseur-kinésithérapeute", "33000 BORDEAUX"),
    per(SOPHIE, "MARTIN", "Sophie", "Sage-femme", "33000 BORDEAUX"),
    per(LUC, "MARTINEZ", "Luc", "Chirurgien-dentiste", "20000 AJACCIO"),
    per(PAUL, "MARIN", "Paul", "Médecin", "97400 SAINT-DENIS",
        skill_label="Médecine générale"),
    org(LILAS, "CAB", "CABINET MEDICAL DES LILAS", "93260 LES LILAS",
        street_name="DU GENERAL DE GAULLE"),
    org(EHPAD, "APP", "EHPAD LES TILLEULS", "31000 TOULOUSE", service="Dossier patient"),
    per(FRANCOISE, "LEFÈVRE", "Françoise", "Orthophoniste", "59000 LILLE",
        org_trade_name="Centre Œuvre de la Parole"),
)  # fmt: skip


def load_snapshot(db: Database, entries: tuple[DirectoryEntry, ...], *, current: bool) -> int:
    """Write a snapshot straight into the tables of migration 0006, index it, switch to it."""
    now = datetime.now(UTC)
    with db.write() as conn:
        snapshot_id = conn.execute(
            insert(directory_snapshots).values(
                kind="bal", format="mssante", source="test", state="loading", started_at=now
            )
        ).inserted_primary_key[0]
        rows = [{**asdict(e), "snapshot_id": snapshot_id, "row_hash": "0" * 32} for e in entries]
        conn.execute(insert(directory_entries), rows)
        index_snapshot(conn, snapshot_id)
        if current:
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
    return snapshot_id


@pytest.fixture
def space(tmp_path: Path, database_url: Callable[[], str]) -> LocalTrustSpace:
    return LocalTrustSpace.create(tmp_path / "space", [ALPHA], database_urls=[database_url()])


@pytest.fixture
def services(space: LocalTrustSpace) -> Iterator[Services]:
    services = Services(space.operators[0].config)
    services.migrate()
    load_snapshot(services.db, ENTRIES, current=True)
    yield services
    services.close()


@pytest.fixture
def search(services: Services) -> DirectorySearch:
    return DirectorySearch(services.db)


def addresses(hits: list[Any]) -> list[str]:
    return [h.entry.address for h in hits]


# -- normalisation ---------------------------------------------------------------------------


def test_normalise_and_typo_variants() -> None:
    assert normalise("Hélène") == normalise("HELENE") == normalise("helene") == "helene"
    assert normalise("Saint-Étienne (Loire)") == "saint etienne loire"
    assert normalise("Œuvre Lefèvre-Müller") == "oeuvre lefevre muller"
    assert normalise("dupont2@x.fr") == "dupont 2 x fr"  # letters and digits split
    assert normalise("  ·—  ") == ""
    variants = one_edit_variants("dupont")
    assert {"dupond", "dupnot", "upont", "duponts"} <= variants
    assert "dupont" not in variants and "dupotn" in variants


# -- matching --------------------------------------------------------------------------------


def test_accents_and_case_ignored(search: DirectorySearch) -> None:
    for query in ("helene", "HÉLÈNE", "Hélène", "heLENe"):
        assert addresses(search.search(query)) == [HELENE]
    for query in ("francoise lefevre", "FRANÇOISE LEFÈVRE", "lefevre francoise"):
        assert addresses(search.search(query)) == [FRANCOISE]
        assert addresses(search.suggest(query)) == [FRANCOISE]
    assert addresses(search.search("oeuvre parole")) == [FRANCOISE]  # Œ folded


def test_prefixes(search: DirectorySearch) -> None:
    # search: every word is a prefix; the red-listed Claire Dupont never shows (R49).
    assert addresses(search.search("dupo")) == [JEAN, HELENE, MARC]
    assert addresses(search.search("hel dup")) == [HELENE]
    assert addresses(search.search("j dup")) == [JEAN]
    # suggest: only the last word is a prefix.
    assert addresses(search.suggest("helene dup")) == [HELENE]
    assert addresses(search.suggest("hel dupont")) == []
    # Bernard > Bordeaux > beta (the domain of the address); Marin is one edit away.
    assert addresses(search.suggest("martin b")) == [MARTIN_B, SOPHIE, PAUL]


def test_small_typos(search: DirectorySearch) -> None:
    # One edit on words of 5 letters or more: substitution, transposition, insertion,
    # deletion. "dupont" itself also finds "dupond" (one edit), ranked after it.
    assert addresses(search.search("dupomt")) == [HELENE]
    assert addresses(search.search("dupnot")) == [HELENE]
    assert addresses(search.search("dupoont")) == [HELENE]
    assert addresses(search.search("helen dupont")) == [HELENE]
    assert addresses(search.suggest("helenne dupo")) == [HELENE]
    assert addresses(search.search("bordaux")) == [MARTIN_B, SOPHIE]
    # Words under 5 letters get no typo tolerance.
    assert addresses(search.search("lyin")) == []
    assert addresses(search.search("dupont")) == [HELENE, MARC, JEAN]


def test_fields(search: DirectorySearch) -> None:
    assert addresses(search.search("cardiologie")) == [CHU, HELENE]  # service > savoir-faire
    assert addresses(search.search("medecin")) == [HELENE, PAUL]  # profession, then name order
    assert addresses(search.search("medecine generale")) == [PAUL]  # savoir-faire
    assert addresses(search.search("saint etienne")) == [CHU]  # structure name and city
    assert addresses(search.search("chu")) == [CHU]
    assert addresses(search.search("marseille")) == [JEAN]  # city
    assert addresses(search.search("13001")) == [JEAN]  # postcode
    assert addresses(search.search("750")) == [HELENE]  # postcode prefix
    assert addresses(search.search("tilleuls")) == [EHPAD]  # APP BAL
    assert addresses(search.search("general gaulle")) == [LILAS]  # street
    assert addresses(search.search("cabinet")) == [LILAS, HELENE]  # CAB name > PER's structure
    assert addresses(search.search("secretariat")) == [LILAS]  # address local part
    assert addresses(search.search(CHU)) == [CHU]  # the whole address
    assert addresses(search.search("jean.dupond@beta")) == [JEAN]
    assert addresses(search.search("pharmacien lyon")) == [MARC]  # profession + city


def test_filters(search: DirectorySearch) -> None:
    assert addresses(search.search("martin", city="Bordeaux")) == [SOPHIE, MARTIN_B]
    assert addresses(search.search("martin", profession="sage-femme")) == [SOPHIE]
    assert addresses(search.search("dup", departement="13")) == [JEAN]
    assert addresses(search.search("dup", postcode="69")) == [MARC]
    assert addresses(search.search("luc", departement="2A")) == [LUC]  # from the postcode
    assert addresses(search.search("paul", departement="974")) == [PAUL]
    assert addresses(search.search("cardio", bal_type="org")) == [CHU]
    assert addresses(search.search("cardio", bal_type="PER")) == [HELENE]
    assert addresses(search.search("medecin", city="saint denis")) == [PAUL]
    assert addresses(search.search("dup", city="Saint-Étienne")) == []


def test_ranking_and_paging(search: DirectorySearch) -> None:
    # exact family name > exact given name > family-name prefix > one-edit typo.
    hits = search.search("martin")
    assert addresses(hits) == [SOPHIE, MARTIN_B, LUC, PAUL]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert addresses(search.suggest("martin")) == [SOPHIE, MARTIN_B, LUC, PAUL]
    assert addresses(search.search("martin", limit=2)) == [SOPHIE, MARTIN_B]
    assert addresses(search.search("martin", limit=2, offset=2)) == [LUC, PAUL]
    assert addresses(search.suggest("sophie martin")) == [SOPHIE]
    # A page filled by exact name matches alone is read from the name index: same page,
    # same scores, red-listed Claire Dupont (who sorts first) still left out.
    assert addresses(search.search("dupont", limit=1)) == [HELENE]
    assert search.search("dupont", limit=1)[0].score == search.search("dupont")[0].score
    assert addresses(search.suggest("martin", limit=1)) == [SOPHIE]
    assert addresses(search.search("cabinet", limit=1)) == [LILAS]
    assert search.search("martin")[0].name == "Sophie MARTIN"
    assert search.search("tilleuls")[0].name == "EHPAD LES TILLEULS — Dossier patient"


def test_red_list_never_shown(search: DirectorySearch) -> None:
    for query in ("claire", "claire dupont", CLAIRE, "dupont"):
        assert CLAIRE not in addresses(search.search(query))
        assert CLAIRE not in addresses(search.suggest(query))


def test_empty_and_odd_queries(search: DirectorySearch) -> None:
    assert search.search("") == [] and search.suggest("  ") == []
    assert search.search("%_*\"'():") == []
    assert addresses(search.search('"dupont" OR * AND -helene')) == []
    assert addresses(search.search("dupont helene dupont")) == [HELENE]


# -- snapshots and in-place updates -----------------------------------------------------------


def test_only_the_snapshot_in_force(services: Services, search: DirectorySearch) -> None:
    newer = (
        per("helene.dupont@beta.mssante.fr", "DUPONT", "Hélène", "Médecin", "75014 PARIS"),
        per("nouveau.venu@beta.mssante.fr", "VENU", "Nouveau", "Médecin", "75014 PARIS"),
    )
    second = load_snapshot(services.db, newer, current=False)
    assert addresses(search.search("venu")) == []  # loaded, not switched yet
    assert addresses(search.search("dupont")) == [HELENE, MARC, JEAN]
    with services.db.write() as conn:
        conn.execute(update(directory_current).values(snapshot_id=second))
    assert addresses(search.search("venu")) == ["nouveau.venu@beta.mssante.fr"]
    assert addresses(search.search("dupont")) == [HELENE]
    assert search.search("dupont")[0].entry.postcode == "75014"
    with services.db.write() as conn:
        drop_snapshot_index(conn, second)
    assert search.search("venu") == [] and search.suggest("dupont") == []


def test_index_entries_in_place(services: Services, search: DirectorySearch) -> None:
    with services.db.read() as conn:
        snapshot = conn.execute(directory_current.select()).one().snapshot_id
    e = directory_entries.c
    with services.db.write() as conn:
        conn.execute(
            update(directory_entries)
            .where(e.snapshot_id == snapshot, e.address == JEAN)
            .values(city_line="44000 NANTES", postcode="44000", departement="44")
        )
        conn.execute(delete(directory_entries).where(e.snapshot_id == snapshot, e.address == MARC))
        zoe = per("zoe.quenet@beta.mssante.fr", "QUENET", "Zoé", "Médecin", "44000 NANTES")
        row = {**asdict(zoe), "snapshot_id": snapshot, "row_hash": "1" * 32}
        conn.execute(insert(directory_entries).values(row))
        conn.execute(
            update(directory_entries)
            .where(e.snapshot_id == snapshot, e.address == SOPHIE)
            .values(list_rouge=True)
        )
        index_entries(conn, snapshot, [JEAN, MARC.upper(), "zoe.quenet@beta.mssante.fr", SOPHIE])
    assert addresses(search.search("nantes")) == [JEAN, "zoe.quenet@beta.mssante.fr"]
    assert addresses(search.search("marseille")) == []
    assert addresses(search.search("dupontel")) == []
    assert addresses(search.search("quenet")) == ["zoe.quenet@beta.mssante.fr"]
    assert addresses(search.search("quenel")) == ["zoe.quenet@beta.mssante.fr"]  # new word
    assert addresses(search.search("quenxx")) == []  # two edits
    assert addresses(search.search("quenett")) == ["zoe.quenet@beta.mssante.fr"]
    assert SOPHIE not in addresses(search.search("martin"))  # now red-listed (R49)
    assert addresses(search.search("martin", limit=1)) == [MARTIN_B]
    assert addresses(search.search("quenet", limit=1)) == ["zoe.quenet@beta.mssante.fr"]
    # Re-indexing a whole snapshot twice gives the same index.
    with services.db.write() as conn:
        index_snapshot(conn, snapshot)
    assert addresses(search.search("nantes")) == [JEAN, "zoe.quenet@beta.mssante.fr"]


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_search(space: LocalTrustSpace, services: Services) -> None:
    import mssante.cli
    import mssante.cli.annuaire_search  # noqa: F401 - registers `annuaire search`

    config = str(space.operators[0].config_file)
    runner = CliRunner()
    result = runner.invoke(main, ["--config", config, "annuaire", "search", "helene dupont"])
    assert result.exit_code == 0, result.output
    assert "Hélène DUPONT" in result.output and "adresse BAL" in result.output
    result = runner.invoke(
        main, ["--config", config, "annuaire", "search", "martin", "--type", "PER", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert [r["address"] for r in json.loads(result.output)] == [SOPHIE, MARTIN_B, LUC, PAUL]
    result = runner.invoke(main, ["--config", config, "annuaire", "search", "zzzzzz"])
    assert result.exit_code == 0 and "Aucune BAL" in result.output


# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    seed_structure_mailbox(
        services.mailboxes, APP, FINESS, "Cabinet Alpha", PASSWORD, type=MailboxType.APP
    )
    client_id, secret = services.machine_credentials.create_client(APP, actor="test")
    server, port = await start_http(create_app(services), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
            assert answer.status_code == 200, answer.text
            http.headers["Authorization"] = "Bearer " + answer.json()["access_token"]
            yield http
    finally:
        await stop_http(server)


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"] and body["type"].startswith("https://")
    return body


async def test_http_suggest(client: httpx.AsyncClient) -> None:
    # An Alpha user types part of a Beta professional's name, without accents.
    response = await client.get("/annuaire/suggest", params={"q": "helene dup"})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == [
        {
            "name": "Hélène DUPONT",
            "profession": "Médecin",
            "city": "PARIS",
            "address": HELENE,
            "type": "PER",
            "organization": "CABINET DE CARDIOLOGIE",
        }
    ]
    response = await client.get("/annuaire/suggest", params={"q": "dupont"})
    assert [i["address"] for i in response.json()] == [HELENE, MARC, JEAN]
    _problem(await client.get("/annuaire/suggest", params={"q": "h"}), 400)
    _problem(await client.get("/annuaire/suggest"), 400)
    _problem(await client.get("/annuaire/suggest", params={"q": "x" * 201}), 400)
    anonymous = await client.get(
        "/annuaire/suggest", params={"q": "dupont"}, headers={"Authorization": ""}
    )
    _problem(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    forged = await client.get(
        "/annuaire/suggest", params={"q": "dupont"}, headers={"Authorization": "Bearer abc"}
    )
    _problem(forged, 401)


async def test_http_search(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/annuaire/search", params={"q": "martin", "limit": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [i["address"] for i in body["items"]] == [SOPHIE, MARTIN_B, LUC]
    assert body["next_offset"] == 3
    assert body["items"][0]["family_name"] == "MARTIN" and body["items"][0]["score"] > 0
    response = await client.get(
        "/api/v1/annuaire/search", params={"q": "martin", "limit": "3", "offset": "3"}
    )
    assert [i["address"] for i in response.json()["items"]] == [PAUL]
    assert response.json()["next_offset"] is None
    response = await client.get(
        "/api/v1/annuaire/search",
        params={"q": "cardio", "type": "ORG", "city": "saint-étienne", "departement": "42"},
    )
    assert [i["address"] for i in response.json()["items"]] == [CHU]
    response = await client.get(
        "/api/v1/annuaire/search", params={"q": "medecin", "profession": "médecin"}
    )
    assert [i["address"] for i in response.json()["items"]] == [HELENE, PAUL]
    response = await client.get("/api/v1/annuaire/search", params={"q": "claire dupont"})
    assert response.json() == {"items": [], "next_offset": None}  # R49
    _problem(await client.get("/api/v1/annuaire/search", params={"q": "a"}), 400)
    _problem(await client.get("/api/v1/annuaire/search", params={"q": "ab", "type": "XYZ"}), 400)
    _problem(await client.get("/api/v1/annuaire/search", params={"q": "ab", "limit": "0"}), 400)
    _problem(await client.get("/api/v1/annuaire/search", params={"q": "ab", "limit": "x"}), 400)
    _problem(await client.get("/api/v1/annuaire/search", params=[("q", "ab"), ("q", "cd")]), 400)
    anonymous = await client.get(
        "/api/v1/annuaire/search", params={"q": "dupont"}, headers={"Authorization": ""}
    )
    _problem(anonymous, 401)
