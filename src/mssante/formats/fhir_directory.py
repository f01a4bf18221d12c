"""Directory entries as FHIR R4 resources of the Annuaire Santé API v2 (SPEC §4.1, R47).

Each :class:`~mssante.domain.directory.DirectoryEntry` (one BAL) becomes one ``telecom``
ContactPoint of the resource that holds it (IG-MSS, AS-DOC ``uc-bal-mss.md`` §1):

* PER/CAB BAL of a professional without a structure → ``Practitioner`` (id = idNat_PS);
* PER/CAB BAL of a professional in a structure → ``PractitionerRole`` (practitioner +
  structure: profession TRE_G15 in ``code``, savoir-faire in ``specialty``);
* ORG/APP BAL (and any BAL without idNat_PS) → ``Organization`` (id = idNat_Struct).

The ContactPoint follows the ``as-mailbox-mss`` profile (SPEC §4.1, R47): ``system`` email,
``value`` the address, ``rank``, the ``fr-core-contact-point-email-type`` extension coded
``TRE_R256#MSSANTE`` and the ``as-ext-mailbox-mss-metadata`` extension (``type`` TRE_R257,
``description``, ``responsible``, ``service``, ``listeRouge``). ``responsible`` "n'est pas
disponible en accès libre" (SPEC §3): the public read API leaves it out.

Logical ids are stable and URL-safe (``[A-Za-z0-9\\-.]{1,64}``): ASCII letters, digits and dots
are kept, any other character is written ``-xx`` per UTF-8 byte (so an id never holds
``--``); a PractitionerRole id is ``<practitioner id>--<organization id>``.

The reverse (FHIR JSON → entries) is :mod:`mssante.formats.fhir_directory_parse`.
This module is pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mssante.domain.directory import DirectoryEntry

__all__ = [
    "EXT_EMAIL_TYPE",
    "EXT_MSS_METADATA",
    "FhirResource",
    "contact_point",
    "escape_id",
    "group_entries",
    "holder",
    "is_person_entry",
    "organization",
    "organization_id",
    "parse_logical_id",
    "practitioner",
    "practitioner_id",
    "practitioner_role",
    "practitioner_role_id",
    "render_entries",
    "unescape_id",
]

FhirResource = dict[str, Any]

# SPEC §4.1 (IG-AS, FR Core, NOS)
EXT_EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
EXT_MSS_METADATA = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
SYSTEM_TYPE_MESSAGERIE = (
    "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie"
)
SYSTEM_TYPE_BAL = "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL"
SYSTEM_PROFESSION = (
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
)
SYSTEM_CATEGORY = (
    "https://mos.esante.gouv.fr/NOS/TRE_R09-CategorieProfessionnelle/FHIR/"
    "TRE-R09-CategorieProfessionnelle"
)
# Savoir-faire codes of the extraction are mostly TRE_R38 (spécialité ordinale); other
# savoir-faire tables exist (compétences, DESC…) and the extraction does not say which.
SYSTEM_SKILL = (
    "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
)
SYSTEM_IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
SYSTEM_IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"
SYSTEM_RPPS = "https://rpps.esante.gouv.fr"
SYSTEM_FINESS = "https://finess.esante.gouv.fr"
SYSTEM_SIRENE = "https://sirene.fr"  # FR Core SIREN/SIRET identifiers
SYSTEM_IDENTIFIER_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
ADXP = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-"

_AS = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/"
_FR = "https://hl7.fr/ig/fhir/core/StructureDefinition/"
PROFILES = {  # the public-diffusion ("DP") profiles of the IG-AS examples
    "Practitioner": [_FR + "fr-core-practitioner", _AS + "as-dp-practitioner"],
    "PractitionerRole": [_FR + "fr-core-practitioner-role", _AS + "as-dp-practitionerrole"],
    "Organization": [_FR + "fr-core-organization", _AS + "as-dp-organization"],
}
PERSON_BAL_TYPES = ("PER", "CAB")  # held by Practitioner / PractitionerRole (SPEC §3)

# idNat_Struct prefix (SPEC §5, TRE_G07) → the identifier it embeds (type code, system).
_STRUCT_IDENTIFIERS = {"1": ("FINEG", SYSTEM_FINESS), "3": ("SIRET", SYSTEM_SIRENE)}


# -- logical ids --------------------------------------------------------------------------


def escape_id(value: str) -> str:
    """A URL-safe, reversible form of an identifier (``-xx`` per byte of other characters)."""
    out: list[str] = []
    for ch in value:
        if ch.isascii() and (ch.isalnum() or ch == "."):
            out.append(ch)
        else:
            out.extend(f"-{b:02x}" for b in ch.encode("utf-8"))
    return "".join(out)


def unescape_id(value: str) -> str | None:
    """The inverse of :func:`escape_id`, or None when ``value`` is not such a form."""
    raw = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "-":
            pair = value[i + 1 : i + 3]
            if len(pair) != 2 or any(c not in "0123456789abcdef" for c in pair):
                return None
            raw.append(int(pair, 16))
            i += 3
        elif ch.isascii() and (ch.isalnum() or ch == "."):
            raw += ch.encode("ascii")
            i += 1
        else:
            return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text and escape_id(text) == value else None


def practitioner_id(id_nat_ps: str) -> str:
    return escape_id(id_nat_ps)


def organization_id(id_struct: str) -> str:
    return escape_id(id_struct)


def practitioner_role_id(id_nat_ps: str, id_struct: str) -> str:
    return f"{escape_id(id_nat_ps)}--{escape_id(id_struct)}"


def parse_logical_id(resource_type: str, logical_id: str) -> tuple[str, ...] | None:
    """The key of a logical id: (idNat_PS,), (idNat_PS, idNat_Struct) or (idNat_Struct,)."""
    if not 1 <= len(logical_id) <= 64:
        return None
    if resource_type == "PractitionerRole":
        head, sep, tail = logical_id.partition("--")
        person, struct = unescape_id(head), unescape_id(tail)
        if not sep or person is None or struct is None:
            return None
        return (person, struct)
    if resource_type in ("Practitioner", "Organization"):
        value = unescape_id(logical_id)
        return None if value is None else (value,)
    return None


# -- grouping -----------------------------------------------------------------------------


def is_person_entry(entry: DirectoryEntry) -> bool:
    """A BAL held by a professional (Practitioner or PractitionerRole), SPEC §3."""
    return entry.bal_type in PERSON_BAL_TYPES and bool(entry.id_nat_ps)


def holder(entry: DirectoryEntry) -> tuple[str, tuple[str, ...]] | None:
    """(resource type, key) of the resource whose ``telecom`` holds this BAL."""
    if is_person_entry(entry):
        if entry.id_struct:
            return "PractitionerRole", (entry.id_nat_ps, entry.id_struct)
        return "Practitioner", (entry.id_nat_ps,)
    if entry.id_struct:
        return "Organization", (entry.id_struct,)
    return None


def group_entries(
    entries: Iterable[DirectoryEntry],
) -> dict[tuple[str, tuple[str, ...]], list[DirectoryEntry]]:
    """Entries by holding resource, in first-seen order (entries with no holder dropped)."""
    groups: dict[tuple[str, tuple[str, ...]], list[DirectoryEntry]] = {}
    for entry in entries:
        key = holder(entry)
        if key is not None:
            groups.setdefault(key, []).append(entry)
    return groups


def render_entries(
    entries: Iterable[DirectoryEntry],
    *,
    include_responsible: bool = True,
    include_referenced: bool = False,
) -> list[FhirResource]:
    """Every resource holding these BALs (one per holder, in first-seen order).

    ``include_referenced`` adds the Practitioner and Organization that PractitionerRoles
    point to, when they hold no BAL themselves (a self-contained Bundle's content).
    """
    groups = group_entries(entries)
    if include_referenced:
        for (rtype, key), rows in list(groups.items()):
            if rtype == "PractitionerRole":
                groups.setdefault(("Practitioner", key[:1]), []).extend(rows)
                groups.setdefault(("Organization", key[1:]), []).extend(rows)
    out: list[FhirResource] = []
    for (rtype, _), rows in groups.items():
        if rtype == "Practitioner":
            out.append(practitioner(rows, include_responsible=include_responsible))
        elif rtype == "PractitionerRole":
            out.append(practitioner_role(rows, include_responsible=include_responsible))
        else:
            out.append(organization(rows, include_responsible=include_responsible))
    return out


# -- pieces -------------------------------------------------------------------------------


def _coding(system: str, code: str, display: str = "") -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _identifier(type_code: str, system: str, value: str) -> dict[str, Any]:
    return {
        "use": "official",
        "type": {"coding": [_coding(SYSTEM_IDENTIFIER_TYPE, type_code)]},
        "system": system,
        "value": value,
    }


def contact_point(entry: DirectoryEntry, *, include_responsible: bool = True) -> dict[str, Any]:
    """The ``as-mailbox-mss`` ContactPoint of one BAL (SPEC §4.1, R47)."""
    metadata: list[dict[str, Any]] = [
        {
            "url": "type",
            "valueCodeableConcept": {"coding": [_coding(SYSTEM_TYPE_BAL, entry.bal_type)]},
        }
    ]
    if entry.description:
        metadata.append({"url": "description", "valueString": entry.description})
    if entry.responsible and include_responsible:
        metadata.append({"url": "responsible", "valueString": entry.responsible})
    if entry.service:
        metadata.append({"url": "service", "valueString": entry.service})
    metadata.append({"url": "listeRouge", "valueBoolean": entry.list_rouge})
    return {
        "extension": [
            {"url": EXT_EMAIL_TYPE, "valueCoding": _coding(SYSTEM_TYPE_MESSAGERIE, "MSSANTE")},
            {"extension": metadata, "url": EXT_MSS_METADATA},
        ],
        "system": "email",
        "value": entry.address,
        "rank": max(1, entry.rank),
    }


def _telecom(rows: Iterable[DirectoryEntry], include_responsible: bool) -> list[dict[str, Any]]:
    ordered = sorted(rows, key=lambda e: (max(1, e.rank), e.address))
    return [contact_point(e, include_responsible=include_responsible) for e in ordered]


def _first(rows: Sequence[DirectoryEntry], *fields: str) -> DirectoryEntry | None:
    """The first row where one of ``fields`` is set (rows in their given order)."""
    for row in rows:
        if any(getattr(row, f) for f in fields):
            return row
    return None


def _human_name(row: DirectoryEntry) -> dict[str, Any]:
    name: dict[str, Any] = {"use": "usual"}
    if row.family_name:
        name["family"] = row.family_name
    if row.given_name:
        name["given"] = row.given_name.split()
    if row.civility:
        name["prefix"] = [row.civility]
    return name


def _display_name(row: DirectoryEntry | None) -> str:
    if row is None:
        return ""
    return " ".join(p for p in (row.given_name, row.family_name) if p)


def _person_identifiers(row: DirectoryEntry) -> list[dict[str, Any]]:
    ids = [_identifier("IDNPS", SYSTEM_IDNAT_PS, row.id_nat_ps)]
    if row.id_pp and row.id_type_pp == "8":  # the RPPS, when the entry holds it
        ids.append(_identifier("RPPS", SYSTEM_RPPS, row.id_pp))
    return ids


def struct_identifiers(id_struct: str) -> list[dict[str, Any]]:
    """IDNST, plus the FINESS/SIRET it embeds ("1"+FINESS, "3"+SIRET; SPEC §5, R55)."""
    ids = [_identifier("IDNST", SYSTEM_IDNAT_STRUCT, id_struct)]
    derived = _STRUCT_IDENTIFIERS.get(id_struct[:1])
    if derived is not None and len(id_struct) > 1:
        ids.append(_identifier(derived[0], derived[1], id_struct[1:]))
    return ids


def _address(row: DirectoryEntry) -> dict[str, Any] | None:
    """The structure's postal address (extraction lines L2–L6, SPEC §4.3)."""
    lines: list[str] = []
    parts: list[dict[str, Any]] = []

    def add(text: str, ext: list[dict[str, Any]]) -> None:
        lines.append(text)
        parts.append({"extension": ext})

    if row.address_l2:
        add(row.address_l2, [{"url": ADXP + "additionalLocator", "valueString": row.address_l2}])
    if row.address_l3:
        add(row.address_l3, [{"url": ADXP + "deliveryAddressLine", "valueString": row.address_l3}])
    street = [
        ("houseNumber", row.street_number),
        ("buildingNumberSuffix", row.street_number_suffix),
        ("streetNameType", row.street_type),
        ("streetNameBase", row.street_name),
    ]
    if any(v for _, v in street):
        add(
            " ".join(v for _, v in street if v),
            [{"url": ADXP + k, "valueString": v} for k, v in street if v],
        )
    if row.locality:
        add(row.locality, [{"url": ADXP + "precinct", "valueString": row.locality}])
    address: dict[str, Any] = {}
    if lines:
        address["line"] = lines
        address["_line"] = parts
    if row.city:
        address["city"] = row.city
    if row.departement:
        address["district"] = row.departement
    if row.postcode:
        address["postalCode"] = row.postcode
    if row.country:
        address["country"] = row.country
    return address or None


def _meta(resource_type: str) -> dict[str, Any]:
    return {"profile": list(PROFILES[resource_type])}


# -- resources ----------------------------------------------------------------------------


def practitioner(
    rows: Sequence[DirectoryEntry], *, include_responsible: bool = True
) -> FhirResource:
    """The Practitioner of one idNat_PS: ``telecom`` = its BALs without a structure."""
    if not rows or not rows[0].id_nat_ps:
        raise ValueError("a Practitioner needs rows of one idNat_PS")
    id_nat_ps = rows[0].id_nat_ps
    named = _first(rows, "family_name", "given_name") or rows[0]
    ids_row = _first(rows, "id_pp") or rows[0]
    resource: FhirResource = {
        "resourceType": "Practitioner",
        "id": practitioner_id(id_nat_ps),
        "meta": _meta("Practitioner"),
        "language": "fr",
        "identifier": _person_identifiers(ids_row),
        "active": True,
    }
    if named.family_name or named.given_name:
        resource["name"] = [_human_name(named)]
    own = [r for r in rows if not r.id_struct and r.id_nat_ps == id_nat_ps]
    if own:
        resource["telecom"] = _telecom(own, include_responsible)
    profession = _first(rows, "profession_code")
    if profession is not None:
        codings = [
            _coding(SYSTEM_PROFESSION, profession.profession_code, profession.profession_label)
        ]
        if profession.profession_category_code:
            codings.append(
                _coding(
                    SYSTEM_CATEGORY,
                    profession.profession_category_code,
                    profession.profession_category_label,
                )
            )
        resource["qualification"] = [{"code": {"coding": codings}}]
    return resource


def practitioner_role(
    rows: Sequence[DirectoryEntry], *, include_responsible: bool = True
) -> FhirResource:
    """The PractitionerRole of one (idNat_PS, idNat_Struct): its PER/CAB BALs there."""
    if not rows or not rows[0].id_nat_ps or not rows[0].id_struct:
        raise ValueError("a PractitionerRole needs rows of one idNat_PS in one structure")
    first = rows[0]
    named = _first(rows, "family_name", "given_name")
    org = _first(rows, "org_name")
    practitioner_ref: dict[str, Any] = {
        "reference": f"Practitioner/{practitioner_id(first.id_nat_ps)}",
        "identifier": {"system": SYSTEM_IDNAT_PS, "value": first.id_nat_ps},
    }
    if _display_name(named):
        practitioner_ref["display"] = _display_name(named)
    organization_ref: dict[str, Any] = {
        "reference": f"Organization/{organization_id(first.id_struct)}",
        "identifier": {"system": SYSTEM_IDNAT_STRUCT, "value": first.id_struct},
    }
    if org is not None:
        organization_ref["display"] = org.org_name
    resource: FhirResource = {
        "resourceType": "PractitionerRole",
        "id": practitioner_role_id(first.id_nat_ps, first.id_struct),
        "meta": _meta("PractitionerRole"),
        "language": "fr",
        "active": True,
        "practitioner": practitioner_ref,
        "organization": organization_ref,
    }
    profession = _first(rows, "profession_code")
    if profession is not None:
        resource["code"] = [
            {
                "coding": [
                    _coding(
                        SYSTEM_PROFESSION, profession.profession_code, profession.profession_label
                    )
                ]
            }
        ]
    skill = _first(rows, "skill_code")
    if skill is not None:
        resource["specialty"] = [
            {"coding": [_coding(SYSTEM_SKILL, skill.skill_code, skill.skill_label)]}
        ]
    resource["telecom"] = _telecom(rows, include_responsible)
    return resource


def organization(
    rows: Sequence[DirectoryEntry], *, include_responsible: bool = True
) -> FhirResource:
    """The Organization of one idNat_Struct: ``telecom`` = its ORG/APP BALs.

    ``rows`` may include PER rows of that structure: they give its name and address when
    it has no BAL of its own, and are never rendered in its ``telecom``.
    """
    if not rows or not rows[0].id_struct:
        raise ValueError("an Organization needs rows of one idNat_Struct")
    id_struct = rows[0].id_struct
    own = [r for r in rows if not is_person_entry(r)]
    ordered = own + [r for r in rows if is_person_entry(r)]
    named = _first(ordered, "org_name")
    resource: FhirResource = {
        "resourceType": "Organization",
        "id": organization_id(id_struct),
        "meta": _meta("Organization"),
        "language": "fr",
        "identifier": struct_identifiers(id_struct),
        "active": True,
    }
    if named is not None:
        resource["name"] = named.org_name
        if named.org_trade_name:
            resource["alias"] = [named.org_trade_name]
    if own:
        resource["telecom"] = _telecom(own, include_responsible)
    placed = _first(
        ordered, "city_line", "postcode", "street_name", "address_l2", "address_l3", "locality"
    )
    address = _address(placed) if placed is not None else None
    if address is not None:
        resource["address"] = [address]
    return resource
