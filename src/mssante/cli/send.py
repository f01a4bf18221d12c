"""`mssante send`: send a message through the HTTP API (built on mssante.client).

No operator configuration is needed: the command talks to an operator's API like any
integrating software, with a bearer token or the client credentials of an APP BAL. It prints
the send id and each recipient's status; ``--wait`` polls the status until every recipient
has a final one (docs/api.md, "Delivery status"). API errors are printed from the problem
document's French ``detail`` and exit with status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape

from mssante.cli.common import console, err_console, main
from mssante.client import (
    ApiError,
    Client,
    ClientError,
    ConnectionFailed,
    Document,
    File,
    MessageStatus,
    Patient,
)

_LABELS = {
    "queued": "en file d'attente",
    "relayed": "transmis à l'opérateur du destinataire",
    "delivered": "distribué",
    "failed": "échec",
    "read": "lu",
    "processed": "traité",
    "processed_with_error": "traité avec erreur",
}
_PATIENT_OPTIONS = ("patient_ins", "patient_family", "patient_given", "patient_birth_date")


def _error(message: str, code: int = 1) -> None:
    err_console.print(f"[red]erreur :[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _api_error(exc: ApiError) -> str:
    where = f"HTTP {exc.status}"
    if exc.type.startswith("https://mssante.fr/problems/"):
        where += f", {exc.type.rsplit('/', 1)[1]}"
    return f"{exc.detail or exc.title} ({where})"


def _print_status(status: MessageStatus, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(status.raw, ensure_ascii=False))
        return
    console.print(f"Envoi : {escape(status.id)}", highlight=False, soft_wrap=True)
    if status.message_id:
        console.print(f"Message-ID : {escape(status.message_id)}", highlight=False, soft_wrap=True)
    for r in status.recipients:
        label = _LABELS.get(r.status, r.status)
        extra = f" — {r.reason}" if r.reason else ""
        if r.code is not None:
            extra += f" (code {r.code})"
        console.print(
            f"  {escape(r.address)} : {escape(label + extra)}", highlight=False, soft_wrap=True
        )


@main.command("send")
@click.option("--api", "api_url", required=True, help="Base URL of the operator's HTTP API.")
@click.option("--token", envvar="MSSANTE_TOKEN", help="Bearer token (or MSSANTE_TOKEN).")
@click.option("--client-id", help="OAuth2 client id of an APP BAL (client credentials).")
@click.option(
    "--client-secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the client secret (never give a secret on the command line).",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA certificate (PEM) of the operator's HTTPS certificate.",
)
@click.option("--from", "sender", required=True, help="BAL to send as.")
@click.option("--to", "to", multiple=True, required=True, help="Recipient (repeatable).")
@click.option("--cc", multiple=True, help="Copy recipient (repeatable).")
@click.option("--subject", required=True)
@click.option("--text", default=None, help="Body text.")
@click.option(
    "--text-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None
)
@click.option(
    "--attach",
    "attachments",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File to attach (repeatable; uploaded streamed).",
)
@click.option(
    "--document",
    "documents",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CDA R2 (XML) or PDF document for the IHE XDM package (repeatable).",
)
@click.option("--type-code", help="LOINC type code of the documents (e.g. 11490-0).")
@click.option("--patient-ins", help="Patient's INS (NIR or NIA).")
@click.option("--patient-family", help="Patient's birth family name.")
@click.option("--patient-given", help="Patient's first given name.")
@click.option("--patient-birth-date", help="Patient's birth date, YYYY-MM-DD.")
@click.option("--patient-sex", type=click.Choice(["M", "F", "U"]), default="U")
@click.option("--use-case", help="Use-case template name (see docs/api.md).")
@click.option("--read-receipt", is_flag=True, help="Ask for a read receipt (RFC 8098).")
@click.option("--idempotency-key", help="Idempotency-Key (default: a new UUID).")
@click.option("--wait", is_flag=True, help="Poll the status until every recipient is final.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="For --wait (s).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def send_command(
    api_url: str,
    token: str | None,
    client_id: str | None,
    client_secret_file: Path | None,
    ca_file: Path | None,
    sender: str,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    subject: str,
    text: str | None,
    text_file: Path | None,
    attachments: tuple[Path, ...],
    documents: tuple[Path, ...],
    type_code: str | None,
    patient_ins: str | None,
    patient_family: str | None,
    patient_given: str | None,
    patient_birth_date: str | None,
    patient_sex: str,
    use_case: str | None,
    read_receipt: bool,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Send a message through an operator's HTTP API, as the BAL given by --from."""
    if bool(token) == bool(client_id):
        _error("donnez soit --token, soit --client-id et --client-secret-file", 2)
    if client_id and client_secret_file is None:
        _error("--client-id demande --client-secret-file", 2)
    if text is not None and text_file is not None:
        _error("--text et --text-file s'excluent", 2)
    try:
        body = text_file.read_text(encoding="utf-8") if text_file else (text or "")
        secret = (
            client_secret_file.read_text(encoding="utf-8").strip() if client_secret_file else None
        )
    except (OSError, UnicodeDecodeError) as exc:
        _error(f"lecture impossible : {exc}", 2)
        return
    patient = None
    given = {
        k: v
        for k, v in zip(
            _PATIENT_OPTIONS,
            (patient_ins, patient_family, patient_given, patient_birth_date),
            strict=True,
        )
        if v
    }
    if given:
        if len(given) != len(_PATIENT_OPTIONS):
            missing = ", ".join(
                "--" + k.replace("_", "-") for k in _PATIENT_OPTIONS if k not in given
            )
            _error(f"patient incomplet : il manque {missing}", 2)
        assert patient_ins and patient_family and patient_given and patient_birth_date
        patient = Patient(
            patient_ins, patient_family, patient_given, patient_birth_date, patient_sex
        )
    try:
        with Client(
            api_url,
            token=token or None,
            client_id=client_id,
            client_secret=secret,
            verify=ca_file if ca_file else True,
        ) as client:
            status = client.send(
                sender,
                list(to),
                subject,
                body,
                cc=list(cc),
                attachments=[File(p) for p in attachments],
                documents=[Document(p, type_code=type_code) for p in documents],
                patient=patient,
                use_case=use_case,
                read_receipt=read_receipt,
                idempotency_key=idempotency_key,
            )
            if wait and not status.final:
                status = client.wait_status(sender, status.id, timeout=timeout)
    except ApiError as exc:
        _error(_api_error(exc))
        return
    except ConnectionFailed as exc:
        _error(f"{exc} ({api_url})")
        return
    except ClientError as exc:
        _error(str(exc))
        return
    _print_status(status, as_json)
    if wait and not status.final:
        err_console.print("délai dépassé : certains destinataires n'ont pas de statut final")
