"""Document types and the MSSanté conventions around structured documents.

Pure rules, no I/O except reading the package's own ``mssante/data/valuesets.json``
(built from the ANS NOS publications by ``scripts/build_document_data.py``):

- XDS metadata value sets of the CI-SIS (R38, SPEC §7.2): typeCode JDV_J07, classCode
  JDV_J06 (from the typeCode through ASS_X04), formatCode JDV_J10 (from the CDA template
  through ASS_A11), confidentialityCode JDV_J08, healthcareFacilityTypeCode JDV_J02,
  practiceSettingCode JDV_J04. Codes are compared with their XDS ``codingScheme`` (OID).
- Headers of Ref#2 §3 (SPEC §2): ``X-MSS-CODECDA`` (R39), ``X-MSS-INS`` (R40) when building;
  on receipt the values are checked and anomalies returned, never raised (R21).
- Subject ``XDM/1.0/DDM+<libellé> <NOM> <prénom> <JJ/MM/AAAA>`` (R41) and PDF copy names
  ``<AAAAMMJJ>_<type>_<NOM>_<prénom>[_<dossier>].pdf`` (R42).

PDF names are transliterated to ASCII (``é`` → ``e``, ``œ`` → ``oe``) and every other
character becomes ``_``, as in the HL7-LPS example ``20220531_CR_d_imagerie_medicale_
CORSE_FIGATELLIX.pdf``: such names survive every file system, zip tool and MIME client.
Subjects keep their accents (they travel RFC 2047-encoded). The patient of a received
document is taken from METADATA.XML, never from the subject (R43): nothing here parses
the patient out of a subject.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from email.message import Message
from importlib import resources
from typing import Any, Literal, Protocol

ValueSetKey = Literal["J02", "J04", "J06", "J07", "J08", "J10"]
Slot = Literal[
    "typeCode",
    "classCode",
    "formatCode",
    "confidentialityCode",
    "healthcareFacilityTypeCode",
    "practiceSettingCode",
]
SLOT_VALUE_SETS: dict[str, ValueSetKey] = {
    "typeCode": "J07",
    "classCode": "J06",
    "formatCode": "J10",
    "confidentialityCode": "J08",
    "healthcareFacilityTypeCode": "J02",
    "practiceSettingCode": "J04",
}
SUBJECT_PREFIX = "XDM/1.0/DDM+"
# XDS-SD (CDA level 1, template 1.3.6.1.4.1.19376.1.2.20) has one formatCode per media type.
_MEDIA_TOKENS = {
    "application/pdf": "pdf",
    "text/plain": "text",
    "image/jpeg": "jpeg",
    "text/rtf": "rtf",
    "application/rtf": "rtf",
    "image/tiff": "tiff",
}
_PREFIX_RE = re.compile(
    r"^((?:\s*(?:\[[^\]]*\]|(?:re|tr|fw|fwd|ref)\s*:))*\s*)XDM/1\.0/DDM\+", re.IGNORECASE
)
_CODE_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,64}")  # printable ASCII, no comma, no space
_TRANSLIT = str.maketrans(
    {"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "ø": "o", "Ø": "O", "đ": "d"}
)


@dataclass(frozen=True)
class Code:
    """A coded value: equality is (code, system); display and validity are informative."""

    code: str
    system: str
    display: str = field(default="", compare=False)
    valid_from: date | None = field(default=None, compare=False)
    valid_to: date | None = field(default=None, compare=False)

    @property
    def scheme(self) -> str:
        """The XDS name of `system` (the ``codingScheme`` slot)."""
        return self.system

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


class SchemeCoded(Protocol):
    """Any coded value read from XDS metadata: a code and its ``codingScheme``."""

    @property
    def code(self) -> str: ...

    @property
    def scheme(self) -> str: ...


@dataclass(frozen=True)
class ValueSetInfo:
    key: str
    name: str
    oid: str
    version: str
    url: str
    slot: str
    valid_from: date | None
    valid_to: date | None


@dataclass(frozen=True)
class Anomaly:
    """One unexpected MSSanté header value of a received message (R21: logged, not fatal)."""

    header: str
    value: str
    reason: str


class UnmappedCode(LookupError):
    """A NOS mapping (ASS_X04, ASS_A11) has no entry, or several, for this code."""


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


class ValueSets:
    """The CI-SIS XDS value sets and the ASS_X04 / ASS_A11 mappings, read-only."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.header: Mapping[str, Any] = document["header"]
        self._info: dict[str, ValueSetInfo] = {}
        self._codes: dict[str, dict[str, Code]] = {}
        for key, vs in document["value_sets"].items():
            self._info[key] = ValueSetInfo(
                key,
                vs["name"],
                vs["oid"],
                vs["version"],
                vs["url"],
                vs["slot"],
                _day(vs["valid_from"]),
                _day(vs["valid_to"]),
            )
            self._codes[key] = {
                code: Code(
                    code,
                    c["system"],
                    c["display"],
                    _day(c.get("valid_from")),
                    _day(c.get("valid_to")),
                )
                for code, c in vs["concepts"].items()
            }
        self._x04: dict[str, Mapping[str, str]] = dict(document["mappings"]["X04"]["types"])
        self._a11: dict[str, list[Mapping[str, str]]] = dict(
            document["mappings"]["A11"]["templates"]
        )

    @classmethod
    def load(cls) -> ValueSets:
        """The value sets shipped with the package (``mssante/data/valuesets.json``)."""
        text = resources.files("mssante.data").joinpath("valuesets.json").read_text("utf-8")
        return cls(json.loads(text))

    def _set(self, value_set: str) -> dict[str, Code]:
        try:
            return self._codes[value_set]
        except KeyError:
            raise ValueError(f"unknown value set {value_set!r}") from None

    def info(self, value_set: str) -> ValueSetInfo:
        self._set(value_set)
        return self._info[value_set]

    def codes(self, value_set: str) -> list[Code]:
        return list(self._set(value_set).values())

    def lookup(self, value_set: str, code: str) -> Code | None:
        """The concept `code` of `value_set` ("J07", "J06"…), or None when absent."""
        return self._set(value_set).get(code)

    def _code(self, value_set: str, code: str, system: str) -> Code:
        return self.lookup(value_set, code) or Code(code, system)

    def class_for_type(self, type_code: str) -> Code:
        """classCode (JDV_J06) of a typeCode, through ASS_X04; UnmappedCode if unlisted."""
        entry = self._x04.get(type_code)
        if entry is None:
            raise UnmappedCode(f"typeCode {type_code!r} has no classCode in ASS_X04")
        return self._code("J06", entry["class"], entry["class_system"])

    def format_for_template(self, template_id: str, media_type: str | None = None) -> Code:
        """formatCode (JDV_J10) of a CDA templateId, through ASS_A11.

        The XDS-SD template (CDA level 1) maps to one formatCode per embedded media type
        (PDF, text, JPEG, RTF, TIFF): `media_type` (``nonXMLBody/text/@mediaType``) picks
        it; UnmappedCode when the template is unknown or the choice stays ambiguous.
        """
        formats = self._a11.get(template_id)
        if not formats:
            raise UnmappedCode(f"CDA template {template_id!r} has no formatCode in ASS_A11")
        if len(formats) > 1:
            token = _MEDIA_TOKENS.get((media_type or "").split(";")[0].strip().lower())
            formats = [f for f in formats if token and f":{token}:" in f["format"]]
            if len(formats) != 1:
                raise UnmappedCode(
                    f"CDA template {template_id!r} maps to several formatCodes in ASS_A11; "
                    f"media type {media_type!r} does not select one"
                )
        return self._code("J10", formats[0]["format"], formats[0]["format_system"])

    def format_for_templates(
        self, template_ids: Iterable[str], media_type: str | None = None
    ) -> Code | None:
        """formatCode from all the templateIds of a CDA: the last mapped one (the most
        specific, CI-SIS volets declare theirs after the generic ones), or None."""
        mapped = [t for t in template_ids if t in self._a11]
        return self.format_for_template(mapped[-1], media_type) if mapped else None

    def check(self, slot: str, code: Code | SchemeCoded, *, on: date | None = None) -> str | None:
        """Why `code` is not acceptable in the XDS `slot` (R38), or None when it is.

        The code must be in the slot's value set with the same codingScheme; with `on`,
        the concept and the value set must also be valid on that day. `code` is a `Code`
        or any object with ``code`` and ``scheme`` (the XDM metadata parser's codes).
        """
        key = SLOT_VALUE_SETS.get(slot)
        if key is None:
            raise ValueError(f"unknown XDS slot {slot!r}; expected one of {list(SLOT_VALUE_SETS)}")
        info = self._info[key]
        if not code.code:
            return f"{slot}: empty code"
        known = self.lookup(key, code.code)
        if known is None:
            return f"{slot} code {code.code!r} is not in {info.name} ({info.oid})"
        if code.scheme != known.system:
            return (
                f"{slot} code {code.code!r} has codingScheme {code.scheme!r}; "
                f"{info.name} has it in {known.system!r}"
            )
        if on is not None and not known.valid_on(on):
            return f"{slot} code {code.code!r} is not valid on {on.isoformat()} ({info.name})"
        if on is not None and (
            (info.valid_from and on < info.valid_from) or (info.valid_to and on > info.valid_to)
        ):
            return f"{info.name} is not in force on {on.isoformat()}"
        return None


@functools.cache
def value_sets() -> ValueSets:
    """The shared, lazily loaded instance of the packaged value sets."""
    return ValueSets.load()


# --- MSSanté headers (Ref#2 ECO.2.4.x, SPEC §2) ---------------------------------------


def mss_codecda(cda_codes: Sequence[str]) -> str | None:
    """``X-MSS-CODECDA``: the ``ClinicalDocument/code/@code`` of every CDA of the archive,
    in archive order, comma-joined; None (header absent) without CDA (R39)."""
    codes = [c.strip() for c in cda_codes]
    for code in codes:
        if not _CODE_RE.fullmatch(code):
            raise ValueError(f"invalid CDA code for X-MSS-CODECDA: {code!r}")
    return ",".join(codes) or None


def parse_codecda(value: str) -> list[str]:
    """The codes of an ``X-MSS-CODECDA`` value (blank items dropped), e.g. for R22."""
    return [item.strip() for item in value.split(",") if item.strip()]


def mss_ins(flags: Sequence[bool]) -> Literal["O", "N"] | None:
    """``X-MSS-INS`` (R40): one flag per CDA, true when it holds a qualified INS (matricule,
    INS OID and the 4 traits). ``O`` if any is, ``N`` otherwise, None without CDA."""
    if not flags:
        return None
    return "O" if any(flags) else "N"


def _one_line(text: str) -> str:
    """Printable single line: controls (CR, LF…) become spaces, runs of spaces collapse."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def document_subject(libelle: str, family: str, given: str, birth_date: date) -> str:
    """R41 subject ``XDM/1.0/DDM+<libellé> <NOM> <prénom> <JJ/MM/AAAA>``, family name in
    upper case (ECO.2.1.3)."""
    parts = [_one_line(libelle), _one_line(family).upper(), _one_line(given)]
    if not parts[0] or not parts[1]:
        raise ValueError("a document subject needs a label and a family name")
    return SUBJECT_PREFIX + " ".join([p for p in parts if p] + [f"{birth_date:%d/%m/%Y}"])


def strip_subject_prefix(subject: str) -> str:
    """The subject as shown to users: without ``XDM/1.0/DDM+`` (SC.MSS/UX.28). Leading
    tags such as ``[KO Intégration système !][902]`` or ``RE:`` are kept."""
    return _PREFIX_RE.sub(lambda m: m.group(1), subject, count=1)


def is_document_subject(subject: str) -> bool:
    return _PREFIX_RE.match(subject) is not None


def _filename_part(text: str) -> str:
    """ASCII transliteration; anything but letters, digits and ``-`` becomes ``_``."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_text = ascii_text.encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9-]+", "_", ascii_text).strip("_-")


def pdf_copy_name(
    act_date: date, type_label: str, family: str, given: str, dossier: str | None = None
) -> str:
    """R42 / ECO.2.1.6 name of the PDF copy: ``<AAAAMMJJ>_<type>_<NOM>_<prénom>[_<dossier>].pdf``.

    ASCII only (transliterated), safe on every file system; at most 200 characters, the
    type label being shortened first.
    """
    label, name = _filename_part(type_label), _filename_part(family).upper()
    if not label or not name:
        raise ValueError("a PDF copy name needs a document type and a family name")
    tail = [name] + [p for p in (_filename_part(given), _filename_part(dossier or "")) if p]
    rest = "_".join(tail) + ".pdf"
    room = 200 - len(f"{act_date:%Y%m%d}__") - len(rest)
    if room < 1:
        raise ValueError("names too long for a PDF copy name")
    return f"{act_date:%Y%m%d}_{label[:room].strip('_-') or label[0]}_{rest}"


def check_received_headers(
    headers: Mapping[str, str] | Message, *, sets: ValueSets | None = None
) -> list[Anomaly]:
    """Anomalies of the MSSanté headers of a received message (R21); never raises.

    ``X-MSS-INS`` must be ``O`` or ``N``, ``X-MSS-MES`` ``FIN``, ``X-MSS-CODECDA`` a comma
    list of JDV_J07 codes, ``X-MSS-NIL`` non-empty; each header at most once, and
    ``X-MSS-INS`` only with ``X-MSS-CODECDA`` (both describe the CDA of the archive).
    """
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        key = str(name).strip().lower()
        if key in ("x-mss-ins", "x-mss-mes", "x-mss-codecda", "x-mss-nil"):
            text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            found.setdefault(key, []).append(" ".join(text.split()))
    anomalies: list[Anomaly] = []
    for key, values in sorted(found.items()):
        name = "X-MSS-" + key[6:].upper()
        if len(values) > 1:
            anomalies.append(Anomaly(name, " | ".join(values), f"{name} appears {len(values)}×"))
        for value in values:
            anomalies += _check_header(name, value, sets)
    if "x-mss-ins" in found and "x-mss-codecda" not in found:
        reason = "X-MSS-INS without X-MSS-CODECDA: both describe CDA documents (R40)"
        anomalies.append(Anomaly("X-MSS-INS", found["x-mss-ins"][0], reason))
    return anomalies


def _check_header(name: str, value: str, sets: ValueSets | None) -> list[Anomaly]:
    if name == "X-MSS-INS" and value not in ("O", "N"):
        return [Anomaly(name, value, "X-MSS-INS must be O or N (ECO.2.4.2)")]
    if name == "X-MSS-MES" and value != "FIN":
        return [Anomaly(name, value, "X-MSS-MES must be FIN (ECO.2.2.8)")]
    if name == "X-MSS-NIL" and not value:
        return [Anomaly(name, value, "X-MSS-NIL is empty (ECO.2.4.3)")]
    if name != "X-MSS-CODECDA":
        return []
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        return [Anomaly(name, value, "X-MSS-CODECDA is empty (ECO.2.4.1)")]
    out: list[Anomaly] = []
    if not all(items):
        out.append(Anomaly(name, value, "X-MSS-CODECDA has an empty item"))
    try:
        known = sets or value_sets()
    except (OSError, ValueError, KeyError) as exc:  # never fail a delivery on our data
        return [*out, Anomaly(name, value, f"JDV_J07 unavailable: {exc}")]
    for item in filter(None, items):
        if known.lookup("J07", item) is None:
            out.append(Anomaly(name, item, f"{item!r} is not a JDV_J07 typeCode (ECO.2.4.1)"))
    return out
