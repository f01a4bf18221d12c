#!/usr/bin/env python3
"""Build ``src/mssante/data/valuesets.json`` from the ANS NOS publications in shared/data.

The runtime package cannot read ``../shared/data`` (it is not installed), so this script
extracts what `mssante.domain.documents` needs, and nothing more:

- the XDS metadata value sets of the CI-SIS (R38, SPEC §7.2): typeCode JDV_J07 (SVS XML),
  classCode JDV_J06 (FHIR JSON), formatCode JDV_J10 (FHIR JSON), confidentialityCode JDV_J08,
  healthcareFacilityTypeCode JDV_J02 and practiceSettingCode JDV_J04 (SVS XML): for each
  concept its code, display and code system OID; the validity of each value set
  (``dateValid``/``dateFin`` or the FHIR effective period) and, for the LOINC codes of J07,
  the validity of the concept from TRE_A04-Loinc;
- the NOS mappings ASS_X04 (typeCode → classCode) and ASS_A11 (CDA templateId → formatCode).

FHIR value sets name code systems by URL; XDS metadata (``codingScheme``) uses OIDs, so the
URLs are translated with `FHIR_SYSTEM_OIDS`, and the translation is checked against the OIDs
that ASS_X04 and ASS_A11 use for the same codes.

Output is deterministic (sorted keys, no timestamp), so a rebuild from the same sources gives
the same bytes; ``--check`` exits 1 when the committed file is out of date. XML is parsed
with defusedxml (no DTD, no entity expansion, no network).

Usage: ``python scripts/build_document_data.py [--shared DIR] [--out FILE] [--check]``
(``MSSANTE_SHARED_DATA`` also names the shared data folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from defusedxml import ElementTree

SVS = "{urn:ihe:iti:svs:2008}"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "mssante" / "data" / "valuesets.json"
LOINC_OID = "2.16.840.1.113883.6.1"

# key → (file in xds-metadata/, kind, XDS slot the value set constrains)
VALUE_SET_FILES: dict[str, tuple[str, str, str]] = {
    "J02": ("JDV_J02_XdsHealthcareFacilityTypeCode_CISIS.xml", "svs", "healthcareFacilityTypeCode"),
    "J04": ("JDV_J04_XdsPracticeSettingCode_CISIS.xml", "svs", "practiceSettingCode"),
    "J06": ("ValueSet-JDV-J06-XdsClassCode-CISIS.json", "fhir", "classCode"),
    "J07": ("JDV_J07_XdsTypeCode_CISIS.xml", "svs", "typeCode"),
    "J08": ("JDV_J08_XdsConfidentialityCode_CISIS.xml", "svs", "confidentialityCode"),
    "J10": ("JDV_J10_XdsFormatCode_CISIS.json", "fhir", "formatCode"),
}
MAPPING_FILES = {
    "X04": "ASS_X04-CorrespondanceType-Classe-CISIS.xml",
    "A11": "ASS_A11-CorresModeleCDA-XdsFormatCode-CISIS.xml",
}
TRE_A04_FILE = "TRE_A04-Loinc.xml"

# NOS terminology (FHIR CodeSystem URL) → the codingScheme written in XDS metadata.
# TRE_A10 "NomenclatureURN" has no OID: XDS writes the literal "URN" (see ASS_X04 and the
# DRIMbox METADATA.XML in shared/data/xdm/).
_NOS = "https://mos.esante.gouv.fr/NOS/"
FHIR_SYSTEM_OIDS = {
    _NOS + "TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument": "1.2.250.1.213.1.1.4.1",
    _NOS + "TRE_A06-FormatCodeComplementaire/FHIR/TRE-A06-FormatCodeComplementaire": (
        "1.2.250.1.213.1.1.4.2.282"
    ),
    _NOS + "TRE_A09-DICOMuidRegistry/FHIR/TRE-A09-DICOMuidRegistry": "1.2.840.10008.2.6.1",
    _NOS + "TRE_A10-NomenclatureURN/FHIR/TRE-A10-NomenclatureURN": "URN",
    _NOS + "TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode": "1.3.6.1.4.1.19376.1.2.3",
}


def _day(stamp: str | None) -> str | None:
    """NOS ``20240927120000`` or FHIR ``2016-05-19T00:00:00+01:00`` → ``2024-09-27``."""
    if not stamp:
        return None
    stamp = stamp.strip()
    if len(stamp) >= 10 and stamp[4] == "-":
        return stamp[:10]
    if len(stamp) >= 8 and stamp[:8].isdigit():
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"
    raise ValueError(f"unrecognised NOS date {stamp!r}")


def _svs_root(path: Path) -> Any:
    root = ElementTree.parse(path, forbid_dtd=True).getroot()
    value_set = root.find(f"{SVS}ValueSet")
    if value_set is None:
        raise ValueError(f"{path.name}: no SVS ValueSet element")
    return value_set


def _concept(display: str, system: str) -> dict[str, Any]:
    return {"display": display, "system": system}


def read_svs(path: Path, slot: str) -> dict[str, Any]:
    vs = _svs_root(path)
    concepts: dict[str, Any] = {}
    for node in vs.iter(f"{SVS}Concept"):
        code, system = node.get("code", "").strip(), node.get("codeSystem", "").strip()
        if not code or not system:
            raise ValueError(f"{path.name}: concept without code or codeSystem")
        if code in concepts:
            raise ValueError(f"{path.name}: duplicate code {code!r}")
        concepts[code] = _concept(node.get("displayName", "").strip(), system)
    return {
        "concepts": concepts,
        "name": (vs.get("displayName") or "").removesuffix(".tabs"),
        "oid": vs.get("id"),
        "slot": slot,
        "url": vs.get("urlFichier"),
        "valid_from": _day(vs.get("dateValid")),
        "valid_to": _day(vs.get("dateFin")),
        "version": vs.get("dateMaj"),
    }


def read_fhir(path: Path, slot: str) -> dict[str, Any]:
    resource = json.loads(path.read_text(encoding="utf-8"))
    if resource.get("resourceType") != "ValueSet":
        raise ValueError(f"{path.name}: not a FHIR ValueSet")
    concepts: dict[str, Any] = {}
    for include in resource["compose"]["include"]:
        system = FHIR_SYSTEM_OIDS.get(include["system"])
        if system is None:
            raise ValueError(f"{path.name}: no OID known for code system {include['system']}")
        for item in include.get("concept", []):
            if item["code"] in concepts:
                raise ValueError(f"{path.name}: duplicate code {item['code']!r}")
            concepts[item["code"]] = _concept(item.get("display", "").strip(), system)
    period: dict[str, str] = {}
    for ext in resource.get("extension", []):
        if ext.get("url", "").endswith("/resource-effectivePeriod"):
            period = ext.get("valuePeriod", {})
    oid = next((i["value"].removeprefix("urn:oid:") for i in resource.get("identifier", [])), None)
    return {
        "concepts": concepts,
        "name": resource.get("name"),
        "oid": oid,
        "slot": slot,
        "url": resource.get("url"),
        "valid_from": _day(period.get("start")),
        "valid_to": _day(period.get("end")),
        "version": resource.get("version"),
    }


def read_mapping(path: Path) -> tuple[dict[str, Any], list[tuple[dict[str, str], ...]]]:
    vs = _svs_root(path)
    pairs: list[tuple[dict[str, str], ...]] = []
    for mapped in vs.iter(f"{SVS}MappedConcept"):
        concepts = tuple(
            {"code": n.get("code", "").strip(), "system": n.get("codeSystem", "").strip()}
            for n in mapped.findall(f"{SVS}Concept")
        )
        if len(concepts) != 2 or not all(c["code"] and c["system"] for c in concepts):
            raise ValueError(f"{path.name}: a MappedConcept is not a pair of coded concepts")
        pairs.append(concepts)
    meta = {
        "name": (vs.get("displayName") or "").removesuffix(".tabs"),
        "oid": vs.get("id"),
        "url": vs.get("urlFichier"),
        "version": vs.get("dateMaj"),
    }
    return meta, pairs


def _check_systems(value_set: dict[str, Any], code: str, system: str, where: str) -> None:
    concept = value_set["concepts"].get(code)
    if concept is not None and concept["system"] != system:
        raise ValueError(
            f"{where}: {code!r} has code system {system}, the value set says {concept['system']}"
        )


def build(shared: Path) -> dict[str, Any]:
    """The whole valuesets.json document, from the shared data folder."""
    folder = shared / "xds-metadata"
    value_sets: dict[str, Any] = {}
    for key, (name, kind, slot) in VALUE_SET_FILES.items():
        reader = read_svs if kind == "svs" else read_fhir
        value_sets[key] = reader(folder / name, slot)

    # TRE_A04: validity of the LOINC concepts of J07 (when TRE_A04 lists them).
    tre_a04 = _svs_root(folder / TRE_A04_FILE)
    for node in tre_a04.iter(f"{SVS}Concept"):
        concept = value_sets["J07"]["concepts"].get(node.get("code"))
        if concept is not None and concept["system"] == LOINC_OID:
            concept["valid_from"] = _day(node.get("dateValid"))
            concept["valid_to"] = _day(node.get("dateFin"))

    x04_meta, x04_pairs = read_mapping(folder / MAPPING_FILES["X04"])
    x04: dict[str, Any] = {}
    for type_code, class_code in x04_pairs:
        _check_systems(value_sets["J07"], type_code["code"], type_code["system"], "ASS_X04")
        _check_systems(value_sets["J06"], class_code["code"], class_code["system"], "ASS_X04")
        if type_code["code"] in x04:
            raise ValueError(f"ASS_X04: type code {type_code['code']!r} mapped twice")
        x04[type_code["code"]] = {
            "class": class_code["code"],
            "class_system": class_code["system"],
            "type_system": type_code["system"],
        }

    a11_meta, a11_pairs = read_mapping(folder / MAPPING_FILES["A11"])
    a11: dict[str, list[dict[str, str]]] = {}
    for template, fmt in a11_pairs:
        _check_systems(value_sets["J10"], fmt["code"], fmt["system"], "ASS_A11")
        a11.setdefault(template["code"], []).append(
            {"format": fmt["code"], "format_system": fmt["system"]}
        )
    for formats in a11.values():
        formats.sort(key=lambda f: f["format"])

    sources = [
        {
            "file": f"xds-metadata/{VALUE_SET_FILES[key][0]}",
            "key": key,
            "name": value_sets[key]["name"],
            "oid": value_sets[key]["oid"],
            "version": value_sets[key]["version"],
        }
        for key in sorted(value_sets)
    ]
    sources += [
        {"file": f"xds-metadata/{MAPPING_FILES[key]}", "key": key, **meta}
        for key, meta in (("X04", x04_meta), ("A11", a11_meta))
    ]
    a04_meta = {
        "name": (tre_a04.get("displayName") or "").removesuffix(".tabs"),
        "oid": tre_a04.get("id"),
        "url": tre_a04.get("urlFichier"),
        "version": tre_a04.get("dateMaj"),
    }
    sources.append({"file": f"xds-metadata/{TRE_A04_FILE}", "key": "TRE_A04", **a04_meta})
    return {
        "header": {
            "description": (
                "XDS metadata value sets of the CI-SIS and their NOS mappings, extracted from "
                "the ANS publications (Nomenclatures des Objets de Santé, "
                "https://mos.esante.gouv.fr/NOS/). Code systems are the XDS codingScheme OIDs. "
                "J07 LOINC concepts carry their TRE_A04 validity."
            ),
            "format": 1,
            "generator": "scripts/build_document_data.py",
            "publisher": "Agence du Numérique en Santé (ANS)",
            "sources": sources,
        },
        "mappings": {
            "A11": {**a11_meta, "templates": a11},
            "X04": {**x04_meta, "types": x04},
        },
        "value_sets": value_sets,
    }


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _render(value: Any, depth: int) -> str:
    """Nested objects indented one space per level; objects of scalars on one line."""
    if _scalar(value) or (isinstance(value, dict) and all(map(_scalar, value.values()))):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, list):
        items = [inner + _render(item, depth + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]" if items else "[]"
    items = [
        f"{inner}{json.dumps(key, ensure_ascii=False)}: {_render(value[key], depth + 1)}"
        for key in sorted(value)
    ]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"


def render(document: dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, one concept per line, UTF-8, final newline."""
    return _render(document, 0) + "\n"


def default_shared() -> Path:
    env = os.environ.get("MSSANTE_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if --out is out of date")
    args = parser.parse_args(argv)
    text = render(build(args.shared))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date; rebuild it with {Path(__file__).name}")
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.encode('utf-8'))} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
