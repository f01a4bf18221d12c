"""FHIR R4 Practitioner / PractitionerRole / Organization JSON → directory entries (SPEC §4.1).

The inverse of :mod:`mssante.formats.fhir_directory`, and a reader of the Annuaire Santé
resources (IG-AS examples, API v2 answers): one :class:`DirectoryEntry` per MSSanté BAL, that
is per ``telecom`` ContactPoint of system ``email`` that carries the
``fr-core-contact-point-email-type`` extension coded ``MSSANTE`` or the
``as-ext-mailbox-mss-metadata`` extension. Other ContactPoints (phone, fax, the plain
contact e-mail of a structure, AS-DOC ``uc-bal-mss.md`` §1.3) are not BALs and are ignored.

When the metadata carries no ``type``, the holder decides it: PER for Practitioner and
PractitionerRole, ORG for Organization (SPEC §3). A PractitionerRole names its practitioner
and structure by reference: a reference carrying an ``identifier`` (as ours do), or one that
points to a resource passed in ``related`` (e.g. the other entries of a Bundle), gives the
idNat_PS / idNat_Struct, the names and the address; otherwise those stay empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mssante.domain.directory import BAL_TYPES, DirectoryEntry
from mssante.formats.fhir_directory import (
    ADXP,
    EXT_EMAIL_TYPE,
    EXT_MSS_METADATA,
    SYSTEM_CATEGORY,
    SYSTEM_FINESS,
    SYSTEM_IDENTIFIER_TYPE,
    SYSTEM_IDNAT_PS,
    SYSTEM_IDNAT_STRUCT,
    SYSTEM_PROFESSION,
    SYSTEM_RPPS,
    SYSTEM_SIRENE,
    SYSTEM_TYPE_BAL,
    FhirResource,
)

__all__ = ["FhirParseError", "entries_from_bundle", "entries_from_resource", "mss_contact_points"]

_DEFAULT_TYPE = {"Practitioner": "PER", "PractitionerRole": "PER", "Organization": "ORG"}


class FhirParseError(ValueError):
    """A resource that cannot be read as a BAL holder (message in English, for logs)."""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _codes(concept: Any) -> list[tuple[str, str, str]]:
    return [
        (_str(c.get("system")), _str(c.get("code")), _str(c.get("display")))
        for c in _list(_dict(concept).get("coding"))
        if isinstance(c, dict)
    ]


def _identifier_type(identifier: Mapping[str, Any]) -> str:
    for system, code, _ in _codes(identifier.get("type")):
        if system == SYSTEM_IDENTIFIER_TYPE:
            return code
    return ""


def _identifiers(resource: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(type code, system, value) of each identifier."""
    out = []
    for ident in _list(resource.get("identifier")):
        if isinstance(ident, dict) and _str(ident.get("value")):
            out.append((_identifier_type(ident), _str(ident.get("system")), _str(ident["value"])))
    return out


# -- the ContactPoint ---------------------------------------------------------------------


def _is_mss(cp: Mapping[str, Any]) -> bool:
    if cp.get("system") != "email" or not _str(cp.get("value")):
        return False
    for ext in _list(cp.get("extension")):
        url = _dict(ext).get("url")
        if url == EXT_MSS_METADATA:
            return True
        if url == EXT_EMAIL_TYPE and _dict(ext.get("valueCoding")).get("code") == "MSSANTE":
            return True
    return False


def mss_contact_points(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ContactPoints of ``resource`` that are MSSanté BALs (SPEC §4.1)."""
    return [cp for cp in _list(resource.get("telecom")) if isinstance(cp, dict) and _is_mss(cp)]


def contact_point_fields(cp: Mapping[str, Any], default_type: str) -> dict[str, Any]:
    """The BAL fields of one ContactPoint (address, type, metadata, rank)."""
    fields: dict[str, Any] = {
        "bal_type": default_type,
        "address": _str(cp.get("value")).lower(),
        "description": "",
        "responsible": "",
        "service": "",
        "list_rouge": False,
        "rank": 1,
    }
    rank = cp.get("rank")
    if isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1:
        fields["rank"] = rank
    for ext in _list(cp.get("extension")):
        if _dict(ext).get("url") != EXT_MSS_METADATA:
            continue
        for item in _list(ext.get("extension")):
            sub = _dict(item)
            url = sub.get("url")
            if url == "type":
                for system, code, _ in _codes(sub.get("valueCodeableConcept")):
                    if code in BAL_TYPES and system in (SYSTEM_TYPE_BAL, ""):
                        fields["bal_type"] = code
            elif url in ("description", "responsible", "service"):
                fields[url] = _str(sub.get("valueString"))
            elif url == "listeRouge":
                fields["list_rouge"] = sub.get("valueBoolean") is True
    return fields


# -- holders ------------------------------------------------------------------------------


def _person_fields(resource: Mapping[str, Any]) -> dict[str, str]:
    fields = {"id_nat_ps": "", "id_type_pp": "", "id_pp": ""}
    for type_code, system, value in _identifiers(resource):
        if system == SYSTEM_IDNAT_PS or type_code == "IDNPS":
            fields["id_nat_ps"] = fields["id_nat_ps"] or value
        elif system == SYSTEM_RPPS and type_code in ("RPPS", ""):
            fields["id_type_pp"], fields["id_pp"] = "8", value
        elif type_code == "ADELI":
            fields["id_type_pp"], fields["id_pp"] = "0", value
    # TRE_G08: "8"+RPPS, "0"+ADELI (SPEC §5); the type is read from the prefix, the
    # RPPS/ADELI value itself only from an explicit identifier.
    if not fields["id_type_pp"] and fields["id_nat_ps"][:1] in ("8", "0"):
        fields["id_type_pp"] = fields["id_nat_ps"][:1]
    names = [n for n in _list(resource.get("name")) if isinstance(n, dict)]
    names.sort(key=lambda n: {"usual": 0, "official": 1}.get(_str(n.get("use")), 2))
    if names:
        name = names[0]
        fields["family_name"] = _str(name.get("family"))
        fields["given_name"] = " ".join(_str(g) for g in _list(name.get("given")) if _str(g))
        prefixes = [_str(p) for p in _list(name.get("prefix")) if _str(p)]
        fields["civility"] = prefixes[0] if prefixes else ""
    for qualification in _list(resource.get("qualification")):
        for system, code, display in _codes(_dict(qualification).get("code")):
            if system == SYSTEM_PROFESSION and code:
                fields["profession_code"], fields["profession_label"] = code, display
            elif system == SYSTEM_CATEGORY and code:
                fields["profession_category_code"] = code
                fields["profession_category_label"] = display
    return fields


def _struct_id(resource: Mapping[str, Any]) -> str:
    idents = _identifiers(resource)
    for type_code, system, value in idents:
        if system == SYSTEM_IDNAT_STRUCT or type_code == "IDNST":
            return value
    for type_code, system, value in idents:  # derive idNat_Struct (SPEC §5, R55)
        if system == SYSTEM_FINESS:
            return "1" + value
        if system == SYSTEM_SIRENE and type_code == "SIRET":
            return "3" + value
    return ""


def _address_fields(address: Mapping[str, Any]) -> dict[str, str]:
    fields: dict[str, str] = {}
    keys = {
        "additionalLocator": "address_l2",
        "deliveryAddressLine": "address_l3",
        "houseNumber": "street_number",
        "buildingNumberSuffix": "street_number_suffix",
        "streetNameType": "street_type",
        "streetNameBase": "street_name",
        "precinct": "locality",
    }
    for part in _list(address.get("_line")):
        for ext in _list(_dict(part).get("extension")):
            url = _str(_dict(ext).get("url"))
            if url.startswith(ADXP) and url[len(ADXP) :] in keys:
                fields[keys[url[len(ADXP) :]]] = _str(ext.get("valueString"))
    city, postcode = _str(address.get("city")), _str(address.get("postalCode"))
    # L6 is "<postcode> <CITY>" (SPEC §4.3); some examples already carry it in ``city``.
    head = city.partition(" ")[0]
    fields["city_line"] = city if head.isdigit() or not postcode else f"{postcode} {city}"
    fields["postcode"] = postcode
    fields["departement"] = _str(address.get("district"))
    fields["country"] = _str(address.get("country"))
    return {k: v for k, v in fields.items() if v}


def _org_fields(resource: Mapping[str, Any]) -> dict[str, str]:
    fields = {"id_struct": _struct_id(resource)}
    if fields["id_struct"][:1].isdigit():
        fields["id_type_struct"] = fields["id_struct"][:1]
    fields["org_name"] = _str(resource.get("name"))
    aliases = [_str(a) for a in _list(resource.get("alias")) if _str(a)]
    if aliases:
        fields["org_trade_name"] = aliases[0]
    addresses = [a for a in _list(resource.get("address")) if isinstance(a, dict)]
    if addresses:
        fields.update(_address_fields(addresses[0]))
    return fields


def _resolve(
    ref: Any, expected: str, related: Mapping[str, Mapping[str, Any]]
) -> tuple[str, Mapping[str, Any] | None]:
    """(identifier value from the reference, the referenced resource if known)."""
    ref = _dict(ref)
    value = _str(_dict(ref.get("identifier")).get("value"))
    target = related.get(_str(ref.get("reference")))
    if target is not None and target.get("resourceType") != expected:
        target = None
    return value, target


def _role_fields(
    resource: Mapping[str, Any], related: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    fields: dict[str, str] = {}
    person_id, person = _resolve(resource.get("practitioner"), "Practitioner", related)
    org_id, org = _resolve(resource.get("organization"), "Organization", related)
    if org is not None:
        fields.update(_org_fields(org))
    if person is not None:
        fields.update(_person_fields(person))
    if person_id:
        fields["id_nat_ps"] = person_id
        if not fields.get("id_type_pp") and person_id[:1] in ("8", "0"):
            fields["id_type_pp"] = person_id[:1]
    if org_id:
        fields["id_struct"] = org_id
        fields["id_type_struct"] = org_id[:1] if org_id[:1].isdigit() else ""
    for concept in _list(resource.get("code")):
        for system, code, display in _codes(concept):
            if system == SYSTEM_PROFESSION and code:
                fields["profession_code"], fields["profession_label"] = code, display
    for concept in _list(resource.get("specialty")):
        for _system, code, display in _codes(concept)[:1]:
            fields["skill_code"], fields["skill_label"] = code, display
    return fields


def entries_from_resource(
    resource: Mapping[str, Any], related: Mapping[str, Mapping[str, Any]] | None = None
) -> list[DirectoryEntry]:
    """The BALs of one Practitioner, PractitionerRole or Organization.

    ``related`` maps ``"Type/id"`` to resources a PractitionerRole may reference.
    """
    rtype = resource.get("resourceType")
    if rtype == "Practitioner":
        base: dict[str, Any] = _person_fields(resource)
    elif rtype == "Organization":
        base = _org_fields(resource)
    elif rtype == "PractitionerRole":
        base = _role_fields(resource, related or {})
    else:
        raise FhirParseError(f"not a BAL holder: {str(rtype)[:40]!r}")
    entries = []
    for cp in mss_contact_points(resource):
        fields = contact_point_fields(cp, _DEFAULT_TYPE[str(rtype)])
        entries.append(DirectoryEntry(**{**base, **fields}))
    return entries


def entries_from_bundle(bundle: Mapping[str, Any]) -> list[DirectoryEntry]:
    """The BALs of every holder in a Bundle; references resolved among its entries."""
    resources: list[Mapping[str, Any]] = []
    related: dict[str, Mapping[str, Any]] = {}
    for item in _list(bundle.get("entry")):
        resource = _dict(_dict(item).get("resource"))
        if not resource:
            continue
        resources.append(resource)
        key = f"{_str(resource.get('resourceType'))}/{_str(resource.get('id'))}"
        related[key] = resource
        full_url = _str(_dict(item).get("fullUrl"))
        if full_url:
            related[full_url] = resource
    entries: list[DirectoryEntry] = []
    for holder in resources:
        if holder.get("resourceType") in _DEFAULT_TYPE:
            entries.extend(entries_from_resource(holder, related))
    return entries


def as_resource(value: Any) -> FhirResource:
    """A JSON value that must be a FHIR resource object."""
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise FhirParseError("not a FHIR resource")
    return value
