"""`mssante annuaire publish`: send our BALs' FHIR Patches to the national directory (R48)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from mssante.cli.annuaire import annuaire
from mssante.cli.common import _fail, _services, console, domain_errors

_OUTCOME = {
    "sent": "[green]publiée[/green]",
    "retry": "[yellow]à réessayer[/yellow]",
    "failed": "[red]échec définitif[/red]",
}
_OPERATION = {
    "insert": "création",
    "replace": "modification",
    "delete": "suppression",
    "full": "état complet",
}


@annuaire.command("publish")
@click.option(
    "--all",
    "queue_all",
    is_flag=True,
    help="Republier l'état complet de chaque BAL non fermée (suppression puis insertion).",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Remettre en file les publications en échec définitif (porteur corrigé, clé renouvelée).",
)
@click.pass_context
@domain_errors
def publish(ctx: click.Context, queue_all: bool, retry_failed: bool) -> None:
    """Envoyer à l'annuaire national les modifications de BAL en attente (FHIR PATCH).

    Les erreurs réseau, 429 et 5xx restent en file (réessayées) ; 404 (porteur inconnu) et
    412 (plusieurs porteurs) sont définitives et listées ici. Code de sortie 1 s'il y a
    un échec définitif.
    """
    services = _services(ctx)
    try:
        publication = services.publication
        if not publication.settings.enabled:
            _fail("publication non configurée : renseignez [directory] publish_url", 2)
        if retry_failed:
            count = publication.requeue_failed()
            console.print(f"{count} publication(s) en échec remise(s) en file", highlight=False)
        if queue_all:
            count = publication.queue_all()
            console.print(f"{count} BAL mise(s) en file (état complet)", highlight=False)
        with publication.client() as client:
            report = publication.publish_pending(client)
        waiting = publication.pending_count()
    finally:
        services.close()
    table = Table(title="Publication vers l'annuaire national")
    for column in ("BAL", "opération", "cible", "HTTP", "résultat", "détail"):
        table.add_column(column)
    for r in report.results:
        table.add_row(
            escape(r.address),
            _OPERATION.get(r.operation, r.operation),
            escape(r.target),
            str(r.status or "—"),
            _OUTCOME.get(r.outcome, r.outcome),
            escape(r.error),
        )
    if report.results:
        console.print(table)
    console.print(
        f"{report.sent} publiée(s), {report.failed} en échec, {waiting} en attente",
        highlight=False,
    )
    if report.failed:
        raise SystemExit(1)
