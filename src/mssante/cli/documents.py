"""Health documents on the command line (issue 6): XDM packages, CDA documents, messages.

``mssante xdm build|inspect|validate``, ``mssante cda validate|render|extract-pdf`` and
``mssante document compose``. They work on files only: no configuration, no database.
CDA schemas and schematrons come from ``--schemas``/``--schematrons``, else the variables
``MSSANTE_CDA_SCHEMAS``/``MSSANTE_CDA_SCHEMATRONS``, else ``../shared/data/cda/schemas`` and
``../shared/data/cda/schematrons`` from the current directory when they exist.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from rich.markup import escape
from rich.table import Table

from mssante.cli.common import _fail, console, domain_errors, err_console, main
from mssante.domain.legal_recipients import Policy
from mssante.formats.xdm_metadata import INS_NIA_OID, INS_NIR_OID, INS_TEST_OID, Problem

F = TypeVar("F", bound=Callable[..., Any])
_OIDS = {"nir": INS_NIR_OID, "nia": INS_NIA_OID, "test": INS_TEST_OID}
_ZIP_MAGIC = b"PK\x03\x04"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}", 2)
        raise  # unreachable: _fail exits


def _write(path: Path | None, data: bytes) -> None:
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        path.write_bytes(data)
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}", 2)


def _problems(title: str, items: tuple[Problem, ...] | list[Problem], colour: str) -> None:
    if items:
        console.print(f"[{colour}]{title} ({len(items)})[/{colour}]")
    for p in items:
        where = f" [{escape(p.where)}]" if p.where else ""
        console.print(f"  {escape(p.code)}{where}: {escape(p.message)}", highlight=False)


def _as_json(items: tuple[Problem, ...] | list[Problem]) -> list[dict[str, str]]:
    return [{"code": p.code, "message": p.message, "where": p.where} for p in items]


# -- options shared by `xdm build` and `document compose` -------------------------------------


def _document_options(func: F) -> F:
    options = [
        click.option(
            "--cda",
            "cda_files",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="A CDA R2 document (repeatable).",
        ),
        click.option(
            "--pdf",
            "pdf_files",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="A PDF to wrap in CDA level 1.",
        ),
        click.option("--patient-ins", help="INS matricule (15 characters), required for a PDF."),
        click.option(
            "--patient-oid",
            type=click.Choice(sorted(_OIDS)),
            default="nir",
            show_default=True,
            help="INS-NIR, INS-NIA or INS-NIR de test.",
        ),
        click.option("--family", help="Patient's birth name."),
        click.option("--given", help="Patient's first given name."),
        click.option("--birth-date", type=click.DateTime(["%Y-%m-%d"]), help="YYYY-MM-DD."),
        click.option("--sex", type=click.Choice(["M", "F", "U"])),
        click.option("--dossier", help="Numéro de dossier (end of the PDF copy name, R42)."),
        click.option("--type-code", help="typeCode (JDV_J07), required for a PDF."),
        click.option("--title", help="Title of a wrapped PDF (default: the type's label)."),
        click.option("--confidentiality", help="confidentialityCode (JDV_J08), e.g. N."),
        click.option("--facility", help="healthcareFacilityTypeCode (JDV_J02), e.g. SA01."),
        click.option("--practice", help="practiceSettingCode (JDV_J04), e.g. ETABLISSEMENT."),
        click.option("--author-idnat-ps", default="", help="Author's idNat_PS (8 + RPPS)."),
        click.option("--author-family", default=""),
        click.option("--author-given", default=""),
        click.option("--structure-idnat", default="", help="Structure's idNat_Struct."),
        click.option("--structure-name", default=""),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _inputs(kw: dict[str, Any]) -> dict[str, Any]:
    from mssante.services.document_package import PatientIdentity, SenderIdentity

    docs = [(_read(p), "text/xml") for p in kw["cda_files"]]
    docs += [(_read(p), "application/pdf") for p in kw["pdf_files"]]
    if not docs:
        _fail("give at least one --cda FILE or --pdf FILE", 2)
    patient = None
    if kw["patient_ins"]:
        birth: date | None = kw["birth_date"].date() if kw["birth_date"] else None
        patient = PatientIdentity(
            kw["patient_ins"],
            _OIDS[kw["patient_oid"]],
            kw["family"] or "",
            kw["given"] or "",
            birth,
            kw["sex"] or "",
            dossier=kw["dossier"] or "",
        )
    sender = SenderIdentity(
        id_nat_ps=kw["author_idnat_ps"],
        family=kw["author_family"],
        given=kw["author_given"],
        id_nat_struct=kw["structure_idnat"],
        organisation=kw["structure_name"],
        software="mssante CLI",
    )
    return {
        "documents": docs,
        "patient": patient,
        "sender_identity": sender,
        "type_code": kw["type_code"],
        "title": kw["title"],
        "confidentiality": kw["confidentiality"],
        "healthcare_facility_type": kw["facility"],
        "practice_setting": kw["practice"],
    }


# -- xdm --------------------------------------------------------------------------------------


@main.group("xdm")
def xdm_group() -> None:
    """IHE XDM packages (IHE_XDM.ZIP): build, inspect, validate."""


@xdm_group.command("build")
@_document_options
@click.option(
    "--sender",
    default="expediteur@localhost",
    show_default=True,
    help="The sending BAL (authorTelecommunication).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("IHE_XDM.ZIP"),
    show_default=True,
)
@domain_errors
def xdm_build(sender: str, output: Path, **kw: Any) -> None:
    """Build an IHE_XDM.ZIP from CDA documents, or from a PDF wrapped in CDA level 1.

    Codes missing from the options are read from the CDA headers; every code is checked
    against its CI-SIS value set.
    """
    from mssante.services.document_package import build_package

    package = build_package(sender_address=sender, **_inputs(kw))
    _write(output, package.xdm)
    for name, pdf in package.pdfs:
        _write(output.parent / name, pdf)
    table = Table("file", "typeCode", "classCode", "formatCode", "title")
    for d in package.documents:
        table.add_row(d.file_name, d.type_code, d.class_code, d.format_code, escape(d.title))
    console.print(table)
    for name, value in package.headers.items():
        console.print(f"{name}: {value}", highlight=False)
    console.print(f"written to {output}" + "".join(f", {n}" for n, _ in package.pdfs))


def _author(author: Any) -> str:
    return " | ".join([author.person, *author.institutions, *author.telecoms][:3]).strip(" |")


def _package_or_message(data: bytes) -> tuple[Any, Any]:
    """(XdmPackage or None, ReceivedDocuments or None), or exit 1 with the refusal."""
    from mssante.formats.xdm import REFUSALS, read_xdm
    from mssante.services.document_intake import check_code, read_document_message

    if data.startswith(_ZIP_MAGIC):
        try:
            return read_xdm(data, lenient=True, code_checker=check_code), None
        except REFUSALS as exc:
            _fail(f"package refused: {exc.reason_code}: {exc.message}")
    received = read_document_message(data)
    if not received.has_xdm:
        _fail("no IHE_XDM.ZIP attachment in this message")
    if received.refused is not None:
        _fail(f"package refused: {received.refused.code}: {received.refused.message}")
    return received.package, received


@xdm_group.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def xdm_inspect(file: Path, as_json: bool) -> None:
    """Show the documents and metadata of FILE: an IHE_XDM.ZIP or a message (.eml)."""
    package, received = _package_or_message(_read(file))
    sub = package.submission
    docs = [
        {
            "entry_id": d.entry.entry_id,
            "path": d.path,
            "mime_type": d.entry.mime_type,
            "type_code": d.entry.type_code.code if d.entry.type_code else None,
            "type_display": d.entry.type_code.display if d.entry.type_code else None,
            "class_code": d.entry.class_code.code if d.entry.class_code else None,
            "format_code": d.entry.format_code.code if d.entry.format_code else None,
            "title": d.entry.title,
            "creation_time": d.entry.creation_time,
            "size": len(d.content),
        }
        for d in package.documents
    ]
    anomalies = [a.__dict__ for a in received.anomalies] if received else []
    problems = list(received.problems) if received else list(package.problems)
    warnings = list(received.warnings) if received else list(package.warnings)
    if as_json:
        report = {
            "patient_id": sub.patient_id,
            "submission_time": sub.submission_time,
            "source_id": sub.source_id,
            "authors": [_author(a) for a in sub.authors],
            "documents": docs,
            "warnings": _as_json(warnings),
            "problems": _as_json(problems),
            "header_anomalies": anomalies,
        }
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    console.print(f"patientId: {escape(sub.patient_id)}", highlight=False)
    console.print(f"submissionTime: {sub.submission_time}  sourceId: {escape(sub.source_id)}")
    for author in sub.authors:
        console.print(f"author: {escape(_author(author))}", highlight=False)
    table = Table("file", "typeCode", "classCode", "formatCode", "created", "size", "title")
    for d in docs:
        table.add_row(
            escape(d["path"].rsplit("/", 1)[-1]),
            escape(f"{d['type_code']} {d['type_display'] or ''}".strip()),
            escape(str(d["class_code"])),
            escape(str(d["format_code"])),
            d["creation_time"],
            str(d["size"]),
            escape(d["title"]),
        )
    console.print(table)
    _problems("warnings", warnings, "yellow")
    _problems("problems", problems, "red")
    for anomaly in anomalies:
        console.print(f"[yellow]header[/yellow] {escape(str(anomaly))}", highlight=False)


@xdm_group.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Layout deviations seen in the wild are errors.")
def xdm_validate(file: Path, strict: bool) -> None:
    """Check FILE (an IHE_XDM.ZIP or a message): layout, hashes, sizes, codes (R36–R38)."""
    from mssante.formats.xdm import validate_xdm
    from mssante.services.document_intake import check_code, read_document_message

    data = _read(file)
    if data.startswith(_ZIP_MAGIC):
        problems = validate_xdm(data, lenient=not strict, code_checker=check_code)
    else:
        received = read_document_message(data, lenient=not strict)
        if not received.has_xdm:
            _fail("no IHE_XDM.ZIP attachment in this message")
        problems = list(received.problems)
    if problems:
        _problems("problems", problems, "red")
        sys.exit(1)
    console.print(f"{file}: valid ({'strict' if strict else 'lenient'})")


# -- cda --------------------------------------------------------------------------------------


def _data_dir(given: Path | None, variable: str, default: str, what: str) -> Path | None:
    if given is not None:
        if not given.is_dir():
            _fail(f"{what}: {given} is not a directory", 2)
        return given
    if os.environ.get(variable):
        path = Path(os.environ[variable])
        if not path.is_dir():
            _fail(f"{what}: {variable}={path} is not a directory", 2)
        return path
    fallback = Path.cwd() / ".." / "shared" / "data" / "cda" / default
    return fallback.resolve() if fallback.is_dir() else None


@main.group("cda")
def cda_group() -> None:
    """CDA R2 documents: validate, render, extract the embedded PDF."""


@cda_group.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--schemas",
    type=click.Path(file_okay=False, path_type=Path),
    help="CDA XSD directory (default: $MSSANTE_CDA_SCHEMAS).",
)
@click.option(
    "--schematrons",
    type=click.Path(file_okay=False, path_type=Path),
    help="CI-SIS schematron directory (default: $MSSANTE_CDA_SCHEMATRONS).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cda_validate(file: Path, schemas: Path | None, schematrons: Path | None, as_json: bool) -> None:
    """Validate FILE against the CDA XSD and the schematron of its CI-SIS volet."""
    from mssante.formats.cda import CdaError
    from mssante.formats.cda_validation import CdaValidator, SchematronError

    xsd_dir = _data_dir(schemas, "MSSANTE_CDA_SCHEMAS", "schemas", "--schemas")
    if xsd_dir is None:
        _fail(
            "no CDA schemas: pass --schemas DIR or set MSSANTE_CDA_SCHEMAS "
            "(the directory holding infrastructure/cda/CDA_extended.xsd)",
            2,
        )
    sch_dir = _data_dir(schematrons, "MSSANTE_CDA_SCHEMATRONS", "schematrons", "--schematrons")
    assert xsd_dir is not None
    validator = CdaValidator(xsd_dir, sch_dir)
    data = _read(file)
    try:
        xsd = validator.validate_xsd(data)
        report = validator.check_schematron(data)
    except CdaError as exc:
        _fail(f"{file}: refused: {exc}")
        return
    except SchematronError as exc:
        _fail(f"{file}: schematron: {exc}")
        return
    issues = [*xsd, *report.issues]
    errors = [i for i in issues if i.severity == "error"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "volet": report.volet,
                    "schematron": str(report.schematron) if report.schematron else None,
                    "issues": [i.__dict__ for i in issues],
                    "unchecked_value_sets": list(report.unchecked_value_sets),
                    "valid": not errors,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        console.print(f"XSD: {len(xsd)} issue(s)", highlight=False)
        where = report.schematron.name if report.schematron else "none"
        note = "" if sch_dir else " (no schematron directory)"
        console.print(f"volet: {report.volet or '-'}; schematron: {where}{note}", highlight=False)
        for issue in issues:
            colour = "red" if issue.severity == "error" else "yellow"
            console.print(
                f"[{colour}]{issue.severity}[/{colour}] {escape(issue.rule_id)} "
                f"{escape(issue.location)}: {escape(issue.message)}",
                highlight=False,
            )
        if report.unchecked_value_sets:
            console.print(
                "value sets missing (assertions not decided): "
                + ", ".join(report.unchecked_value_sets),
                highlight=False,
            )
        console.print(f"{file}: {'valid' if not errors else f'{len(errors)} error(s)'}")
    if errors:
        sys.exit(1)


@cda_group.command("render")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML file (default: standard output).",
)
def cda_render(file: Path, output: Path | None) -> None:
    """Render FILE as a self-contained HTML page (everything escaped, strict CSP)."""
    from mssante.formats.cda import CdaError
    from mssante.formats.cda_render import render_html

    try:
        page = render_html(_read(file))
    except CdaError as exc:
        _fail(f"{file}: refused: {exc}")
        return
    _write(output, page.encode("utf-8"))


@cda_group.command("extract-pdf")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def cda_extract_pdf(file: Path, output: Path) -> None:
    """Write the PDF embedded in FILE (level 1 body, or a PDF observationMedia)."""
    from mssante.formats.cda import CdaError, extract_embedded_pdf

    try:
        pdf = extract_embedded_pdf(_read(file))
    except CdaError as exc:
        _fail(f"{file}: refused: {exc}")
        return
    if pdf is None:
        _fail(f"{file}: no embedded PDF")
        return
    _write(output, pdf)
    console.print(f"{len(pdf)} bytes written to {output}")


# -- document ---------------------------------------------------------------------------------


@main.group("document")
def document_group() -> None:
    """Document messages (IHE_XDM.ZIP, X-MSS-* headers, R42 PDF copy)."""


@document_group.command("compose")
@_document_options
@click.option("--from", "sender", required=True, help="The sending BAL.")
@click.option("--to", "recipients", multiple=True, required=True, help="Repeatable.")
@click.option("--nil", required=True, help="X-MSS-NIL: the product reference (convergence).")
@click.option("--text", default="", help="Text of the message (default: a short French one).")
@click.option("--use-case", help="One of the six ESSMS flows (mssante/data/use_cases.json).")
@click.option(
    "--policy",
    type=click.Choice(["inform", "warn", "require"]),
    default="inform",
    show_default=True,
    help="Legal-recipients policy (arrêté du 26 avril 2022).",
)
@click.option("--gp", help="Address of the médecin traitant.")
@click.option("--prescriber", help="Address of the prescriber.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Message file (default: standard output).",
)
@domain_errors
def document_compose(
    sender: str,
    recipients: tuple[str, ...],
    nil: str,
    text: str,
    use_case: str | None,
    policy: str,
    gp: str | None,
    prescriber: str | None,
    output: Path | None,
    **kw: Any,
) -> None:
    """Write an MSSanté document message (RFC 5322) ready to submit."""
    from mssante.services.documents import compose_document_message

    message = compose_document_message(
        sender_address=sender,
        recipients=list(recipients),
        nil=nil,
        text_body=text,
        use_case=use_case,
        legal_policy=cast(Policy, policy),
        gp=gp,
        prescriber=prescriber,
        **_inputs(kw),
    )
    for notice in message.notices:
        err_console.print(f"[yellow]{escape(notice)}[/yellow]", highlight=False)
    if not message.allowed:
        _fail("not written: the legal-recipients policy blocks this message")
    _write(output, message.data)
    if output is not None:
        console.print(f"{escape(message.subject)}\nwritten to {output}", highlight=False)
