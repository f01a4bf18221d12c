"""`make bench`, documents part (issue 6): figures, not timed tests.

Measures, in this process, on one core:

* build throughput (packages/s): `build_package` (CDA parse, metadata derived from the header,
  value-set checks, zip) for a ~1 MB CDA, an ANS example whose narrative is padded;
* read/validate throughput (packages/s) of that package: `validate_xdm` (zip limits, METADATA.XML,
  hashes, sizes, value sets), `read_document_message` on the whole mail (MIME, package, CDA
  header, MSSanté headers), and the same with the CDA XSD when the shared schemas are there;
* the schematron time per document for every ANS example: compilation of its volet (once per
  process, cache cold) and one run (median of warm runs).

Writes bench/results/documents.json. Uses ``../shared/data`` (or ``MSSANTE_SHARED_DATA``) when
present; without it, the synthetic documents of the package and no XSD/schematron figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mssante.formats.cda_validation import CdaValidator
from mssante.formats.xdm import validate_xdm
from mssante.services.document_intake import check_code
from mssante.services.documents import (
    SenderIdentity,
    build_package,
    compose_document_message,
    read_document_message,
)

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(
    os.environ.get("MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
TARGET_SIZE = 1024 * 1024
SENDER = "camille.martin@hopital-demo.mssante.fr"
IDENTITY = SenderIdentity(
    id_nat_ps="810000000017",
    family="Martin",
    given="Camille",
    id_nat_struct="1750000028",
    organisation="Centre hospitalier de démonstration",
)
console = Console(width=None if sys.stdout.isatty() else 150)


_WORDS = (
    "patient douleur traitement surveillance constantes tension pouls température poids "
    "consultation examen bilan biologique imagerie kinésithérapie marche appui chute "
    "hanche fémur ostéosynthèse anticoagulant paracétamol amlodipine injection infirmier "
    "évaluation autonomie sommeil alimentation hydratation cutané pansement cicatrice "
    "rééducation orthopédie gériatrie retour domicile EHPAD famille médecin traitant"
).split()


def padded_cda(base: bytes, size: int = TARGET_SIZE) -> bytes:
    """`base` with paragraphs of varied French words (compressible like real narrative text,
    not like one repeated line) added to its first section's narrative up to about `size`."""
    match = re.search(rb"</text>", base)
    if match is None:
        raise ValueError("no narrative <text> to pad")
    rng = random.Random(6)  # reproducible filler text
    chunks: list[bytes] = []
    total = len(base)
    while total < size:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(12, 40)))
        chunk = f"<paragraph>J{len(chunks) + 1} : {words}.</paragraph>".encode()
        chunks.append(chunk)
        total += len(chunk)
    return base[: match.start()] + b"".join(chunks) + base[match.start() :]


def rate(func: Callable[[], object], seconds: float, minimum: int = 3) -> dict[str, float]:
    """Calls per second of `func` over about `seconds` (at least `minimum` calls)."""
    func()  # warm-up: imports, value sets, compiled XSD
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < minimum or time.perf_counter() < deadline:
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return {
        "per_s": round(len(times) / sum(times), 2),
        "median_ms": round(statistics.median(times) * 1000, 2),
        "runs": len(times),
    }


def throughput(args: argparse.Namespace, validator: CdaValidator | None) -> dict[str, Any]:
    examples = SHARED / "cda" / "examples"
    if (examples / "LDL-SES_2022.01.xml").is_file():
        base, source = (examples / "LDL-SES_2022.01.xml").read_bytes(), "LDL-SES_2022.01.xml"
    else:
        source = "LDL-SES-DEMO.xml (synthetic)"
        base = resources.files("mssante.data").joinpath("cda", "LDL-SES-DEMO.xml").read_bytes()
    cda = padded_cda(base)

    def build() -> bytes:
        package = build_package(
            sender_address=SENDER, sender_identity=IDENTITY, documents=[(cda, "text/xml")]
        )
        return package.xdm

    xdm = build()
    message = compose_document_message(
        sender_address=SENDER,
        sender_identity=IDENTITY,
        recipients=["lea.dubois@hopital-demo.mssante.fr"],
        documents=[(cda, "text/xml")],
        nil="MSSANTE-BENCH",
    ).data
    assert not validate_xdm(xdm, code_checker=check_code)
    report: dict[str, Any] = {
        "cda_source": source,
        "cda_bytes": len(cda),
        "package_bytes": len(xdm),
        "message_bytes": len(message),
        "build": rate(build, args.seconds),
        "validate_xdm": rate(lambda: validate_xdm(xdm, code_checker=check_code), args.seconds),
        "read_message": rate(lambda: read_document_message(message), args.seconds),
    }
    if validator is not None:
        assert validator.validate_xsd(cda) == [], "the padded CDA must stay XSD-valid"
        xsd_only = CdaValidator(validator.schemas_dir, None, cache_dir=validator.cache_dir)
        report["read_message_xsd"] = rate(
            lambda: read_document_message(message, validator=xsd_only), args.seconds
        )
    return report


def schematrons(validator: CdaValidator, runs: int) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((SHARED / "cda" / "examples").glob("*.xml")):
        data = path.read_bytes()
        volet, sch = validator.schematron_for(data)
        row: dict[str, Any] = {"example": path.name, "bytes": len(data), "volet": volet}
        if sch is None:
            rows.append(row | {"schematron": None, "note": "no volet schematron (level 1)"})
            continue
        compile_s = validator.prepare(sch)
        reports = [validator.check_schematron(data) for _ in range(runs)]
        rows.append(
            row
            | {
                "schematron": sch.name,
                "compile_s": round(compile_s, 2),
                "run_ms": round(statistics.median(r.seconds for r in reports) * 1000, 1),
                "errors": len(reports[0].errors),
                "warnings": len(reports[0].issues) - len(reports[0].errors),
            }
        )
    return rows


def print_tables(report: dict[str, Any]) -> None:
    tp = report["results"]["throughput"]
    table = Table(title=f"1 MB CDA ({tp['cda_source']}, {tp['cda_bytes']} bytes)")
    table.add_column("operation")
    table.add_column("packages/s", justify="right")
    table.add_column("median ms", justify="right")
    labels = {
        "build": "build IHE_XDM.ZIP (build_package)",
        "validate_xdm": "validate package (validate_xdm + value sets)",
        "read_message": "read message (read_document_message)",
        "read_message_xsd": "read message + CDA XSD",
    }
    for key, label in labels.items():
        if key in tp:
            table.add_row(label, f"{tp[key]['per_s']:.1f}", f"{tp[key]['median_ms']:.1f}")
    console.print(table)
    rows = report["results"].get("schematron")
    if not rows:
        console.print(f"schematron: {report['results'].get('schematron_skipped', 'skipped')}")
        return
    sch = Table(title="CI-SIS schematron per document")
    for name in ("example", "volet", "compile s", "run ms", "errors"):
        sch.add_column(name, justify="left" if name in ("example", "volet") else "right")
    for row in rows:
        sch.add_row(
            row["example"],
            row["volet"] or "-",
            str(row.get("compile_s", "-")),
            str(row.get("run_ms", "-")),
            str(row.get("errors", "-")),
        )
    console.print(sch)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput figure")
    parser.add_argument("--runs", type=int, default=3, help="warm schematron runs per example")
    parser.add_argument("--output", type=Path, default=RESULTS / "documents.json")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    schemas = SHARED / "cda" / "schemas"
    cache = Path(tempfile.mkdtemp(prefix="mssante-schematron-"))  # cold compilation cache
    validator = (
        CdaValidator(schemas, SHARED / "cda" / "schematrons", cache_dir=cache)
        if schemas.is_dir()
        else None
    )
    report: dict[str, Any] = {
        "benchmark": "documents",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {"seconds_per_figure": args.seconds, "schematron_runs": args.runs},
        "notes": [
            "one process, one thread; figures, not pass/fail thresholds",
            "the 1 MB CDA is an ANS example whose first narrative section is padded",
            "schematron compile_s: ISO schematron -> XSLT 3.0 (ours) + SaxonC compilation, "
            "cold cache; run_ms: one validation of the document, warm",
        ],
        "results": {},
    }
    report["results"]["throughput"] = throughput(args, validator)
    if validator is not None and (SHARED / "cda" / "examples").is_dir():
        report["results"]["schematron"] = schematrons(validator, args.runs)
    else:
        report["results"]["schematron_skipped"] = f"no shared CDA data at {SHARED}"
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print_tables(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    console.print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
