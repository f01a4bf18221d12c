"""`mssante xdm|cda|document` (issue 6): exit codes, messages and the files they write.

In-process with click's CliRunner. The synthetic CDA documents of the package are always
there; the ANS schemas and examples of the shared data are used when present.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mssante.cli import main
from mssante.services.documents import read_document_message

SHARED = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
CDA_DIR = SHARED / "cda"
needs_shared = pytest.mark.skipif(not CDA_DIR.is_dir(), reason=f"no shared data at {CDA_DIR}")
DATA = resources.files("mssante.data").joinpath("cda")
LDL = Path(str(DATA.joinpath("LDL-SES-DEMO.xml")))
DLU = Path(str(DATA.joinpath("DLU-EHPAD-FLUDT-DEMO.xml")))
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PDF_OPTIONS = [
    "--patient-ins", "238031305501250", "--patient-oid", "test", "--family", "Exemple",
    "--given", "Jeanne", "--birth-date", "1938-03-12", "--sex", "F", "--type-code", "11502-2",
    "--facility", "SA01", "--practice", "ETABLISSEMENT", "--author-idnat-ps", "810000000017",
    "--author-family", "Martin", "--author-given", "Camille", "--structure-idnat",
    "1750000028", "--structure-name", "CH de démonstration",
]  # fmt: skip
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "250", **(env or {})})
    result.output_clean = ANSI.sub("", result.output)  # type: ignore[attr-defined]
    return result


def out(result: Result) -> str:
    return str(result.output_clean)  # type: ignore[attr-defined]


def test_groups_are_listed() -> None:
    text = out(run("--help"))
    assert all(name in text for name in ("xdm", "cda", "document"))


def test_xdm_build_from_cda(tmp_path: Path) -> None:
    target = tmp_path / "IHE_XDM.ZIP"
    result = run("xdm", "build", "--cda", LDL, "--cda", DLU, "-o", target)
    assert result.exit_code == 0, result.output
    assert "X-MSS-CODECDA: 11490-0,74207-2" in out(result)
    assert "X-MSS-INS: O" in out(result)
    with zipfile.ZipFile(target) as zf:
        assert "IHE_XDM/SUBSET01/DOC0002.XML" in zf.namelist()


def test_xdm_build_from_pdf_writes_the_r42_copy(tmp_path: Path) -> None:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(PDF)
    result = run("xdm", "build", "--pdf", pdf, *PDF_OPTIONS, "-o", tmp_path / "IHE_XDM.ZIP")
    assert result.exit_code == 0, result.output
    copies = list(tmp_path.glob("*_CR_d_examens_biologiques_EXEMPLE_Jeanne.pdf"))
    assert len(copies) == 1 and copies[0].read_bytes() == PDF
    assert re.fullmatch(r"\d{8}_CR_d_examens_biologiques_EXEMPLE_Jeanne\.pdf", copies[0].name)


@pytest.mark.parametrize(
    ("extra", "code", "text"),
    [
        (["--pdf", "{pdf}", "--type-code", "11502-2"], 1, "patientId"),
        (["--cda", str(LDL), "--facility", "SA99"], 1, "healthcareFacilityTypeCode"),
        (["--cda", str(LDL), "--confidentiality", "ZZ"], 1, "confidentialityCode"),
        ([], 2, "--cda FILE or --pdf FILE"),
    ],
)
def test_xdm_build_errors(tmp_path: Path, extra: list[str], code: int, text: str) -> None:
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(PDF)
    args = [a.replace("{pdf}", str(pdf)) for a in extra]
    result = run("xdm", "build", *args, "-o", tmp_path / "x.zip")
    assert result.exit_code == code, result.output
    assert text in out(result)
    assert not (tmp_path / "x.zip").exists()


def _package(tmp_path: Path) -> Path:
    target = tmp_path / "IHE_XDM.ZIP"
    assert run("xdm", "build", "--cda", LDL, "-o", target).exit_code == 0
    return target


def _rezip(source: Path, target: Path, rename: bool = False, tamper: bool = False) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(buffer, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if tamper and name.endswith("DOC0001.XML"):
                data = data.replace(b"EXEMPLE", b"EXEMPLA")
            zout.writestr(name.lower() if rename else name, data)
    target.write_bytes(buffer.getvalue())
    return target


def test_xdm_inspect_package_and_message(tmp_path: Path) -> None:
    package = _package(tmp_path)
    result = run("xdm", "inspect", package, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["patient_id"] == "238031305501250^^^&1.2.250.1.213.1.4.10&ISO"
    assert [d["type_code"] for d in report["documents"]] == ["11490-0"]
    assert report["problems"] == [] and report["warnings"] == []
    table = out(run("xdm", "inspect", package))
    assert "DOC0001.XML" in table and "urn:asip:ci-sis:ldl-ses:2017" in table
    eml = tmp_path / "message.eml"
    composed = run(
        "document", "compose", "--cda", LDL, "--from", "a@alpha.mssante.fr",
        "--to", "b@beta.mssante.fr", "--nil", "TEST-NIL", "-o", eml,
    )  # fmt: skip
    assert composed.exit_code == 0, composed.output
    from_message = json.loads(run("xdm", "inspect", eml, "--json").output)
    assert from_message["documents"][0]["title"].startswith("Lettre de liaison")


def test_xdm_inspect_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    result = run("xdm", "inspect", bad)
    assert result.exit_code == 1 and "package refused" in out(result)
    plain = tmp_path / "plain.eml"
    plain.write_bytes(b"Subject: hello\r\n\r\nno attachment\r\n")
    assert "no IHE_XDM.ZIP" in out(run("xdm", "inspect", plain))


def test_xdm_validate(tmp_path: Path) -> None:
    package = _package(tmp_path)
    assert run("xdm", "validate", package, "--strict").exit_code == 0
    tampered = _rezip(package, tmp_path / "tampered.zip", tamper=True)
    result = run("xdm", "validate", tampered)
    assert result.exit_code == 1 and "hash-mismatch" in out(result)
    lower = _rezip(package, tmp_path / "lower.zip", rename=True)
    assert run("xdm", "validate", lower).exit_code == 0  # lenient: a warning only
    strict = run("xdm", "validate", lower, "--strict")
    assert strict.exit_code == 1 and "file-name" in out(strict)


@needs_shared
def test_cda_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    schemas, schematrons = CDA_DIR / "schemas", CDA_DIR / "schematrons"
    example = CDA_DIR / "examples" / "LDL-SES_2022.01.xml"
    good = run("cda", "validate", example, "--schemas", schemas, "--schematrons", schematrons)
    assert good.exit_code == 0, good.output
    assert "LDL-SES_2022.01" in out(good) and "valid" in out(good)
    broken = tmp_path / "broken.xml"
    broken.write_bytes(re.sub(rb"<typeId [^>]*/>", b"", example.read_bytes(), count=1))
    env = {"MSSANTE_CDA_SCHEMAS": str(schemas), "MSSANTE_CDA_SCHEMATRONS": str(schematrons)}
    result = run("cda", "validate", broken, "--json", env=env)
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert not report["valid"] and any(i["rule_id"].startswith("xsd:") for i in report["issues"])
    # The synthetic documents pass the XSD; their volet schematron is not their aim.
    synthetic = json.loads(run("cda", "validate", LDL, "--json", env=env).output)
    assert not [i for i in synthetic["issues"] if i["rule_id"].startswith("xsd:")]


def test_cda_validate_without_schemas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"MSSANTE_CDA_SCHEMAS": "", "MSSANTE_CDA_SCHEMATRONS": ""}
    result = run("cda", "validate", LDL, env=env)
    assert result.exit_code == 2 and "no CDA schemas" in out(result)
    missing = run("cda", "validate", LDL, "--schemas", tmp_path / "nope")
    assert missing.exit_code == 2


def test_cda_render_and_extract_pdf(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    assert run("cda", "render", LDL, "-o", page).exit_code == 0
    html = page.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "Motif de l" in html
    assert "<!DOCTYPE html>" in run("cda", "render", DLU).output
    none = run("cda", "extract-pdf", LDL, "-o", tmp_path / "x.pdf")
    assert none.exit_code == 1 and "no embedded PDF" in out(none)
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(PDF)
    assert run("xdm", "build", "--pdf", pdf, *PDF_OPTIONS, "-o", tmp_path / "p.zip").exit_code == 0
    with zipfile.ZipFile(tmp_path / "p.zip") as zf:
        (tmp_path / "doc.xml").write_bytes(zf.read("IHE_XDM/SUBSET01/DOC0001.XML"))
    result = run("cda", "extract-pdf", tmp_path / "doc.xml", "-o", tmp_path / "back.pdf")
    assert result.exit_code == 0 and (tmp_path / "back.pdf").read_bytes() == PDF
    refused = tmp_path / "evil.xml"
    refused.write_bytes(b'<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>')
    assert run("cda", "render", refused).exit_code == 1


def test_document_compose(tmp_path: Path) -> None:
    eml = tmp_path / "message.eml"
    result = run(
        "document", "compose", "--cda", LDL, "--from", "camille.martin@alpha.mssante.fr",
        "--to", "lea.dubois@beta.mssante.fr", "--gp", "lea.dubois@beta.mssante.fr",
        "--nil", "TEST-NIL", "--policy", "warn", "-o", eml,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Attention" in out(result)  # the patient is a mandatory recipient of 11490-0
    received = read_document_message(eml.read_bytes())
    assert received.ok and received.patient_ins == "238031305501250"
    blocked = run(
        "document", "compose", "--cda", LDL, "--from", "a@alpha.mssante.fr",
        "--to", "b@beta.mssante.fr", "--nil", "X", "--policy", "require",
        "-o", tmp_path / "blocked.eml",
    )  # fmt: skip
    assert blocked.exit_code == 1 and "Envoi bloqué" in out(blocked)
    assert not (tmp_path / "blocked.eml").exists()
