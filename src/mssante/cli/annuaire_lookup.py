"""`mssante annuaire lookup ADDRESS`: find a BAL in the Annuaire Santé FHIR API (R50, R51)."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from mssante.cli.annuaire import annuaire
from mssante.cli.common import _fail, console
from mssante.domain.directory import BAL_TYPES
from mssante.services.annuaire_client import DEFAULT_BASE_URL, AnnuaireClient, AnnuaireError


@annuaire.command("lookup")
@click.argument("address")
@click.option(
    "--base-url",
    default=DEFAULT_BASE_URL,
    show_default=True,
    envvar="ESANTE_API_URL",
    help="URL de base de l'API FHIR (celle de l'ANS, ou /fhir/v2 d'un opérateur mssante).",
)
@click.option(
    "--api-key",
    envvar="ESANTE_API_KEY",
    default="",
    help="Clé d'API (en-tête ESANTE-API-KEY) ; par défaut la variable ESANTE_API_KEY.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Certificats d'AC (PEM) de confiance pour le TLS du serveur.",
)
@click.option(
    "--type",
    "bal_types",
    multiple=True,
    type=click.Choice(BAL_TYPES),
    help="Ne garder que ce type de BAL (répétable).",
)
@click.option("--json", "as_json", is_flag=True, help="Sortie JSON (les ressources FHIR).")
def lookup(
    address: str,
    base_url: str,
    api_key: str,
    ca_file: str | None,
    bal_types: tuple[str, ...],
    as_json: bool,
) -> None:
    """Chercher une adresse MSSanté dans l'annuaire (mailbox-mss:exact, trois requêtes)."""
    if "@" not in address:
        _fail("une adresse de messagerie est attendue (nom@domaine.mssante.fr)", 2)
    try:
        with AnnuaireClient(base_url, api_key, verify=ca_file or True) as client:
            found = client.lookup(address, bal_types)
    except AnnuaireError as exc:
        _fail(exc.message)
        return
    except ValueError as exc:
        _fail(str(exc), 2)
        return
    if as_json:
        click.echo(
            json.dumps(
                [{"resourceType": r.resource_type, "resource": r.resource} for r in found],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    if not found:
        console.print(f"Aucune BAL {escape(address.lower())} dans l'annuaire.", highlight=False)
        raise SystemExit(1)
    table = Table(title=f"BAL {escape(address.lower())}")
    for column in ("Ressource", "Identifiant", "Nom", "Type de BAL", "Structure"):
        table.add_column(column)
    for result in found:
        table.add_row(
            escape(result.resource_type),
            escape(str(result.resource.get("id", ""))),
            escape(result.display_name),
            escape(result.bal_type),
            escape(result.structure),
        )
    console.print(table)
