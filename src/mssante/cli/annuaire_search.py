"""`mssante annuaire search QUERY`: search the directory in force (issue 5 item 2)."""

from __future__ import annotations

import json

import click
from rich.table import Table

from mssante.cli.annuaire import annuaire
from mssante.cli.common import _fail, _services, console, domain_errors
from mssante.domain.directory import BAL_TYPES
from mssante.services.directory_search import SearchHit


def _row(hit: SearchHit) -> dict[str, str | int]:
    entry = hit.entry
    return {
        "name": hit.name,
        "profession": " — ".join(p for p in (entry.profession_label, entry.skill_label) if p),
        "city": entry.city_line,
        "address": entry.address,
        "type": entry.bal_type,
        "score": hit.score,
    }


@annuaire.command("search")
@click.argument("query")
@click.option(
    "--type",
    "bal_type",
    type=click.Choice(BAL_TYPES, case_sensitive=False),
    help="Type de BAL (PER, ORG, APP, CAB).",
)
@click.option("--city", help="Ville (accents et casse ignorés).")
@click.option("--postcode", help="Code postal, ou son début (« 750 »).")
@click.option("--departement", help="Code du département (« 75 », « 2A », « 974 »).")
@click.option("--profession", help="Profession (libellé ou code).")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--suggest", "as_suggest", is_flag=True, help="Mode suggestion (dix au plus).")
@click.option("--json", "as_json", is_flag=True, help="Sortie JSON.")
@click.pass_context
@domain_errors
def annuaire_search(
    ctx: click.Context,
    query: str,
    bal_type: str | None,
    city: str | None,
    postcode: str | None,
    departement: str | None,
    profession: str | None,
    limit: int,
    as_suggest: bool,
    as_json: bool,
) -> None:
    """Cherche QUERY dans l'annuaire en vigueur (nom, profession, ville, structure…)."""
    if len(query.strip()) < 2:
        _fail("la recherche doit compter au moins 2 caractères", 2)
    services = _services(ctx)
    try:
        search = services.directory_search
        if as_suggest:
            hits = search.suggest(query, min(limit, 10))
        else:
            hits = search.search(
                query,
                bal_type=bal_type,
                city=city,
                postcode=postcode,
                departement=departement,
                profession=profession,
                limit=limit,
            )
    finally:
        services.close()
    rows = [_row(h) for h in hits]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        console.print("Aucune BAL ne correspond à cette recherche.", highlight=False)
        return
    table = Table("nom", "profession", "ville", "adresse BAL", "type")
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["profession"]),
            str(row["city"]),
            str(row["address"]),
            str(row["type"]),
        )
    console.print(table)
