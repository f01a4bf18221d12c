"""`mssante annuaire …`: import, search, publish and look up the national directory.

This module defines the ``annuaire`` group and its import commands (issue 5 item 1):
``import FILE…``, ``sample`` and ``status``. Other modules add their commands to the group
(``annuaire_search.py``, ``annuaire_publish.py``, ``annuaire_lookup.py``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from mssante.cli.common import _fail, _services, console, domain_errors, err_console, main


@main.group("annuaire")
def annuaire() -> None:
    """Copie locale de l'annuaire national (Annuaire Santé, extractions MSSanté/RASS/PSC)."""


class _RowsColumn(ProgressColumn):
    """Rows read and rows per second (the bar itself follows bytes, for the ETA)."""

    def render(self, task: Task) -> Text:
        rows = int(task.fields.get("rows", 0))
        elapsed = task.elapsed or 0.0
        rate = rows / elapsed if elapsed > 0 else 0.0
        if not rows:
            return Text("")
        return Text(f"{rows:>9,} lignes {rate:>7,.0f}/s".replace(",", " "))


def _progress_bar() -> tuple[Progress, Any]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        _RowsColumn(),
        TimeElapsedColumn(),
        TextColumn("reste"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(step: Any) -> None:
        if step.phase == "read":
            task = tasks.get(step.file)
            if task is None:
                for other in tasks.values():  # the previous file is done
                    progress.stop_task(other)
                task = tasks[step.file] = progress.add_task(
                    f"lecture {step.file}", total=step.bytes_total or None, rows=0
                )
            progress.update(task, completed=step.bytes_done, rows=step.rows)
            return
        for task in tasks.values():
            if not progress.tasks[task].finished:
                progress.update(task, completed=progress.tasks[task].total)
            progress.stop_task(task)
        if step.phase == "index" and "index" not in tasks:
            tasks["index"] = progress.add_task("index de recherche", total=None, rows=0)
        elif step.phase == "switch" and "switch" not in tasks:
            tasks["switch"] = progress.add_task("comparaison, bascule", total=None, rows=0)

    return progress, update


def _summary(report: Any) -> None:
    table = Table(title="Import de l'annuaire", title_justify="left")
    for column in ("", "lignes", "rejetées", "doublons", "ajoutés", "modifiés", "retirés"):
        table.add_column(column, justify="right" if column else "left")
    for kind, kr in report.kinds.items():
        label = "BAL" if kind == "bal" else "professionnels"
        table.add_row(
            f"{label} ({','.join(kr.formats)}) instantané {kr.snapshot_id}",
            *(str(v) for v in (kr.rows, kr.rejected, kr.duplicates, kr.added, kr.changed)),
            str(kr.removed),
        )
    console.print(table)
    rate = report.rows_per_second
    console.print(f"{report.seconds:.1f} s, {rate:,.0f} lignes/s".replace(",", " "))
    if report.errors:
        console.print(f"[yellow]lignes rejetées ({report.rejected}), les premières :[/yellow]")
        for name, error in report.errors:
            console.print(f"  {escape(name)} ligne {error.line} : {escape(error.reason)}")
    if report.suspended:
        console.print(
            f"[bold red]Avis : {len(report.suspended)} BAL PER suspendues, professionnel "
            "absent de l'annuaire (R60) ; réactivez-les après vérification :[/bold red]"
        )
        for address in report.suspended:
            console.print(f"  {escape(address)}", highlight=False)


@annuaire.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Refuser le fichier à la première ligne invalide.")
@click.option(
    "--force",
    is_flag=True,
    help="Accepter un import qui retire beaucoup de BAL ou de professionnels.",
)
@click.option("--no-progress", is_flag=True, help="Pas de barre de progression.")
@click.pass_context
@domain_errors
def import_files(
    ctx: click.Context, files: tuple[Path, ...], strict: bool, force: bool, no_progress: bool
) -> None:
    """Importe des extractions (.txt ou .zip) : Extraction_Correspondance_MSSante,
    PS_LibreAcces_Personne_activite ou Extraction_ProSanteConnect_Personne_activite.

    Le format est reconnu à l'en-tête. Le nouvel instantané remplace l'ancien d'un coup,
    ou pas du tout ; les lignes invalides sont signalées avec leur numéro et ignorées.
    """
    services = _services(ctx)
    try:
        if no_progress:
            report = services.directory.import_files(files, strict=strict, force=force)
        else:
            bar, update = _progress_bar()
            with bar:
                report = services.directory.import_files(
                    files, strict=strict, force=force, progress=update
                )
    finally:
        services.close()
    _summary(report)


@annuaire.command("sample")
@click.option("--rows", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mssante", "rass", "psc"]),
    default="mssante",
    show_default=True,
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Fichier écrit (.txt, ou .zip contenant un .txt).",
)
def sample(rows: int, fmt: str, seed: int, output: Path) -> None:
    """Écrit une extraction synthétique réaliste au format exact (tests, mesures)."""
    from mssante.formats.directory_files import FORMATS
    from mssante.formats.directory_sample import write_sample

    try:
        if output.suffix.lower() == ".zip":
            member = f"{FORMATS[fmt].label}_sample.txt"
            with (
                zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as zf,
                zf.open(member, "w", force_zip64=True) as out,
            ):
                write_sample(out, fmt, rows, seed)
        else:
            with output.open("wb") as out:
                write_sample(out, fmt, rows, seed)
    except OSError as exc:
        _fail(f"{output}: {exc.strerror}", 2)
    console.print(f"{rows} lignes {fmt} écrites dans {escape(str(output))}", highlight=False)


@annuaire.command("status")
@click.pass_context
@domain_errors
def status(ctx: click.Context) -> None:
    """Instantanés de l'annuaire : en vigueur, en cours de chargement, derniers imports."""
    services = _services(ctx)
    try:
        snapshots = services.directory.status()
    finally:
        services.close()
    if not snapshots:
        console.print("aucun import de l'annuaire")
        return
    table = Table(title="Instantanés de l'annuaire", title_justify="left")
    for column in ("id", "type", "format", "état", "lignes", "+", "~", "-", "fin", "source"):
        table.add_column(column)
    for s in snapshots:
        state = f"[green]{s.state}[/green]" if s.current else s.state
        finished = s.finished_at.strftime("%Y-%m-%d %H:%M") if s.finished_at else ""
        table.add_row(
            str(s.id), s.kind, s.format, state, str(s.rows), str(s.added), str(s.changed),
            str(s.removed), finished, escape(s.source + (f" ({s.message})" if s.message else "")),
        )  # fmt: skip
    console.print(table)
