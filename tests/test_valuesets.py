"""XDS value sets of the CI-SIS and the NOS mappings (R38, SPEC §7.2)."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from defusedxml import ElementTree

from mssante.domain.documents import (
    SLOT_VALUE_SETS,
    Code,
    UnmappedCode,
    ValueSets,
    value_sets,
)

SHARED = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
needs_shared = pytest.mark.skipif(
    not (SHARED / "xds-metadata").is_dir(), reason="shared reference data not available"
)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_document_data.py"
LOINC = "2.16.840.1.113883.6.1"
TRE_A03 = "1.2.250.1.213.1.1.4.1"
# J07 codes that ASS_X04 (dateMaj 2024-02-23) does not map to a classCode.
X04_GAPS = {"101881-1", "28617-9", "34120-6", "60280-5", "78341-5", "89233-1"}
XDS_SCHEMES = {
    "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a": "classCode",
    "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983": "typeCode",
    "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f": "confidentialityCode",
    "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d": "formatCode",
    "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1": "healthcareFacilityTypeCode",
    "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead": "practiceSettingCode",
}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_document_data", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _packaged() -> str:
    return resources.files("mssante.data").joinpath("valuesets.json").read_text("utf-8")


def test_packaged_file_has_header_sources_and_all_value_sets() -> None:
    document = json.loads(_packaged())
    header = document["header"]
    assert header["generator"] == "scripts/build_document_data.py"
    assert "ANS" in header["publisher"]
    keys = {s["key"]: s for s in header["sources"]}
    assert set(keys) == {"J02", "J04", "J06", "J07", "J08", "J10", "X04", "A11", "TRE_A04"}
    assert keys["J07"]["oid"] == "1.2.250.1.213.1.1.5.471"
    assert keys["J07"]["version"] == "20240927120000"
    assert keys["J06"]["oid"] == "1.2.250.1.213.1.1.5.462"
    assert keys["J10"]["oid"] == "1.2.250.1.213.1.1.5.465"
    assert all(s["version"] and s["file"].startswith("xds-metadata/") for s in keys.values())


def test_value_set_sizes_and_metadata() -> None:
    vs = value_sets()
    sizes = {key: len(vs.codes(key)) for key in ("J02", "J04", "J06", "J07", "J08", "J10")}
    assert sizes == {"J02": 69, "J04": 12, "J06": 13, "J07": 114, "J08": 6, "J10": 89}
    info = vs.info("J07")
    assert (info.name, info.slot, info.valid_from) == (
        "JDV_J07_XdsTypeCode_CISIS",
        "typeCode",
        date(2013, 1, 23),
    )
    assert info.valid_to is None
    assert {vs.info(k).slot for k in SLOT_VALUE_SETS.values()} == set(SLOT_VALUE_SETS)


def test_lookup() -> None:
    vs = value_sets()
    code = vs.lookup("J07", "11502-2")
    assert code == Code("11502-2", LOINC)
    assert code is not None and code.display == "CR d'examens biologiques"
    assert code.valid_from == date(2016, 5, 19)  # from TRE_A04
    assert vs.lookup("J07", "PRESC-BIO") == Code("PRESC-BIO", "1.2.250.1.213.1.1.4.12")
    assert vs.lookup("J08", "MASQUE_PS") == Code("MASQUE_PS", "1.2.250.1.213.1.1.4.13")
    assert vs.lookup("J06", "10") == Code("10", TRE_A03)
    assert vs.lookup("J10", "urn:ihe:iti:xds-sd:pdf:2008") == Code(
        "urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3"
    )
    assert vs.lookup("J07", "nope") is None
    with pytest.raises(ValueError, match="unknown value set"):
        vs.lookup("J99", "10")


def test_class_for_type_follows_ass_x04() -> None:
    vs = value_sets()
    assert vs.class_for_type("11502-2") == Code("10", TRE_A03)
    assert vs.class_for_type("11502-2").display == "Compte rendu"
    assert vs.class_for_type("57833-6") == Code("42", TRE_A03)
    assert vs.class_for_type("CERT_DECL") == Code("52", TRE_A03)
    assert vs.class_for_type("E1762") == Code("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN")
    with pytest.raises(UnmappedCode):
        vs.class_for_type("78341-5")


def test_every_type_code_maps_to_a_class_code_of_j06() -> None:
    vs = value_sets()
    unmapped = set()
    for type_code in vs.codes("J07"):
        try:
            klass = vs.class_for_type(type_code.code)
        except UnmappedCode:
            unmapped.add(type_code.code)
            continue
        assert vs.check("classCode", klass) is None, type_code
    assert unmapped == X04_GAPS


def test_format_for_template_follows_ass_a11() -> None:
    vs = value_sets()
    ldl = vs.format_for_template("1.2.250.1.213.1.1.1.29")
    assert ldl == Code("urn:asip:ci-sis:ldl-ses:2017", "1.2.250.1.213.1.1.4.2.282")
    sd = "1.3.6.1.4.1.19376.1.2.20"
    assert vs.format_for_template(sd, "application/pdf").code == "urn:ihe:iti:xds-sd:pdf:2008"
    assert vs.format_for_template(sd, "text/plain").code == "urn:ihe:iti:xds-sd:text:2008"
    assert vs.format_for_template(sd, "image/jpeg").code == "urn:ihe:iti-fr:xds-sd:jpeg:2010"
    with pytest.raises(UnmappedCode, match="several"):
        vs.format_for_template(sd)
    with pytest.raises(UnmappedCode):
        vs.format_for_template(sd, "application/zip")
    with pytest.raises(UnmappedCode):
        vs.format_for_template("1.2.3.4")
    assert vs.format_for_templates(["2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"]) is None


def test_every_a11_format_is_in_j10() -> None:
    document = json.loads(_packaged())
    for template, formats in document["mappings"]["A11"]["templates"].items():
        for fmt in formats:
            code = Code(fmt["format"], fmt["format_system"])
            assert value_sets().check("formatCode", code) is None, template


def test_check_accepts_and_explains() -> None:
    vs = value_sets()
    good = {
        "typeCode": Code("11490-0", LOINC),
        "classCode": Code("10", TRE_A03),
        "formatCode": Code("urn:asip:ci-sis:ldl-ses:2017", "1.2.250.1.213.1.1.4.2.282"),
        "confidentialityCode": Code("N", "2.16.840.1.113883.5.25"),
        "healthcareFacilityTypeCode": Code("SA01", "1.2.250.1.71.4.2.4"),
        "practiceSettingCode": Code("ESSMS", "1.2.250.1.213.1.1.4.9"),
    }
    for slot, code in good.items():
        assert vs.check(slot, code) is None, slot
        assert vs.check(slot, code, on=date(2025, 1, 1)) is None
    reason = vs.check("typeCode", Code("99999-9", LOINC))
    assert reason is not None and "JDV_J07_XdsTypeCode_CISIS" in reason and "99999-9" in reason
    reason = vs.check("classCode", Code("10", LOINC))
    assert reason is not None and "codingScheme" in reason and TRE_A03 in reason
    # a valid code of another value set is still refused in this slot
    assert vs.check("practiceSettingCode", Code("SA01", "1.2.250.1.71.4.2.4")) is not None
    assert vs.check("typeCode", Code("", LOINC)) == "typeCode: empty code"
    with pytest.raises(ValueError, match="unknown XDS slot"):
        vs.check("authorSpecialty", Code("SM26", "1.2.250.1.71.4.2.5"))


def _tiny(valid_to: str | None, set_valid_to: str | None = None) -> ValueSets:
    concept: dict[str, Any] = {"display": "X", "system": "S", "valid_from": "2020-01-01"}
    concept["valid_to"] = valid_to
    vs = {
        "name": "JDV_TEST",
        "oid": "1.2",
        "version": "1",
        "url": "u",
        "slot": "typeCode",
        "valid_from": "2019-01-01",
        "valid_to": set_valid_to,
        "concepts": {"X1": concept},
    }
    mappings: dict[str, Any] = {"X04": {"types": {}}, "A11": {"templates": {}}}
    return ValueSets({"header": {}, "value_sets": {"J07": vs}, "mappings": mappings})


def test_check_validity_dates() -> None:
    expired = _tiny("2021-06-30")
    assert expired.check("typeCode", Code("X1", "S")) is None  # no date: no validity check
    assert expired.check("typeCode", Code("X1", "S"), on=date(2021, 6, 30)) is None
    reason = expired.check("typeCode", Code("X1", "S"), on=date(2021, 7, 1))
    assert reason is not None and "not valid on 2021-07-01" in reason
    assert expired.check("typeCode", Code("X1", "S"), on=date(2019, 12, 31)) is not None
    closed = _tiny(None, "2022-01-01")
    reason = closed.check("typeCode", Code("X1", "S"), on=date(2023, 1, 1))
    assert reason is not None and "not in force" in reason


def test_code_equality_ignores_display_and_validity() -> None:
    assert Code("10", TRE_A03, "Compte rendu") == Code("10", TRE_A03, "autre libellé")
    assert Code("10", TRE_A03) != Code("10", LOINC)
    assert hash(Code("10", TRE_A03, "a")) == hash(Code("10", TRE_A03, "b"))


@needs_shared
def test_valuesets_json_is_up_to_date_with_shared_data() -> None:
    script = _script()
    assert script.render(script.build(SHARED)) == _packaged(), (
        "src/mssante/data/valuesets.json is stale: run scripts/build_document_data.py"
    )


@needs_shared
def test_build_is_deterministic_and_sorted() -> None:
    script = _script()
    first, second = script.render(script.build(SHARED)), script.render(script.build(SHARED))
    assert first == second and first.endswith("\n")
    document = json.loads(first)
    assert list(document) == sorted(document)
    assert list(document["value_sets"]["J07"]["concepts"]) == sorted(
        document["value_sets"]["J07"]["concepts"]
    )


@needs_shared
def test_build_check_mode(tmp_path: Path) -> None:
    script = _script()
    out = tmp_path / "valuesets.json"
    assert script.main(["--shared", str(SHARED), "--out", str(out), "--check"]) == 1
    assert script.main(["--shared", str(SHARED), "--out", str(out)]) == 0
    assert script.main(["--shared", str(SHARED), "--out", str(out), "--check"]) == 0


@needs_shared
def test_cda_examples_type_and_format_codes() -> None:
    """Each CI-SIS CDA example: its code is a J07 typeCode with a classCode, and its
    templateIds give a J10 formatCode (the TROD volet is not in ASS_A11)."""
    hl7 = "{urn:hl7-org:v3}"
    vs = value_sets()
    examples = sorted((SHARED / "cda" / "examples").glob("*.xml"))
    assert len(examples) >= 10
    for path in examples:
        root = ElementTree.parse(path, forbid_dtd=True).getroot()
        code = root.find(f"{hl7}code")
        assert code is not None
        assert vs.check("typeCode", Code(code.get("code", ""), code.get("codeSystem", ""))) is None
        vs.class_for_type(code.get("code", ""))
        templates = [t.get("root", "") for t in root.findall(f"{hl7}templateId")]
        body = root.find(f".//{hl7}nonXMLBody/{hl7}text")
        media = body.get("mediaType") if body is not None else None
        fmt = vs.format_for_templates(templates, media)
        if path.name.startswith("BIO-TROD"):
            assert fmt is None
        else:
            assert fmt is not None and vs.check("formatCode", fmt) is None, path.name
    ldl = ElementTree.parse(SHARED / "cda/examples/LDL-SES_2022.01.xml").getroot()
    templates = [t.get("root", "") for t in ldl.findall(f"{hl7}templateId")]
    assert vs.format_for_templates(templates) == Code(
        "urn:asip:ci-sis:ldl-ses:2017", "1.2.250.1.213.1.1.4.2.282"
    )


@needs_shared
def test_drimbox_metadata_codes() -> None:
    """The French DRIMbox METADATA.XML: every coded slot passes, except the formatCode of
    its signature document (``http://www.w3.org/2000/09/xmldsig#``), which JDV_J10 lacks."""
    rim = "{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}"
    path = SHARED / "xdm/drimbox-KA202401/IHE_XDM/SS000001/METADATA.XML"
    root = ElementTree.parse(path, forbid_dtd=True).getroot()
    refused = []
    checked = 0
    for node in root.iter(f"{rim}Classification"):
        slot = XDS_SCHEMES.get(node.get("classificationScheme", ""))
        if slot is None:
            continue
        scheme = node.find(f"{rim}Slot[@name='codingScheme']/{rim}ValueList/{rim}Value")
        assert scheme is not None and scheme.text
        code = Code(node.get("nodeRepresentation", ""), scheme.text)
        checked += 1
        if value_sets().check(slot, code) is not None:
            refused.append((slot, code.code))
    assert checked == 14
    assert refused == [("formatCode", "http://www.w3.org/2000/09/xmldsig#")]


@dataclass(frozen=True)
class _ParsedCode:
    """The shape of the codes of the XDM metadata parser: ``code`` and ``scheme``."""

    code: str
    scheme: str
    display: str = ""


def test_check_accepts_any_code_with_a_scheme() -> None:
    checker: Callable[[str, _ParsedCode], str | None] = value_sets().check
    assert checker("typeCode", _ParsedCode("11502-2", LOINC)) is None
    assert checker("classCode", _ParsedCode("10", LOINC)) is not None
    assert Code("10", TRE_A03).scheme == TRE_A03
