"""FHIRPath Patch of the BALs published to the national directory (SPEC §4.2, R48).

Pure: builds and applies FHIR ``Parameters`` resources, no I/O.

Publishing side (an operator): a BAL is a ``telecom`` ContactPoint of its holder resource
(SPEC §4.1), so every change is a ``PATCH`` of that resource:

* create → ``insert`` at ``<Resource>.telecom`` with ``index`` 0 and ``valueContactPoint``;
* change → ``replace`` of the whole ContactPoint selected by
  ``<Resource>.telecom.where(value = '<address>')`` (address and type never change);
* close → ``delete`` of that ContactPoint;
* full state (``mssante annuaire publish --all``) → ``delete`` then ``insert``: FHIR Patch
  deletes "the element (if found)", so the pair is idempotent.

The target is a conditional PATCH (IG-MSS ``spec-technique-flux-alimentation.md``):
``Practitioner?identifier=urn:oid:1.2.250.1.71.4.2.1|<idNat_PS>`` for PER (and CAB bound
to a professional), ``Organization?identifier=https://finess.esante.gouv.fr|<FINESS>`` for
ORG/APP of a FINESS structure, ``urn:oid:1.2.250.1.71.4.2.2|<idNat_Struct>`` otherwise.

Receiving side (the national directory, :mod:`mssante.testing.national_directory`):
:func:`apply_patch` applies the forms above plus a ``replace`` of one metadata
sub-extension value (``….extension('<metadata url>').extension('listeRouge').value``) or
of ``.rank``; any other path is a :class:`PatchError`. A red-listed BAL is published with
``listeRouge`` true: the receiver keeps it and never shows it (R49).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mssante.domain.directory import BAL_TYPES, DirectoryEntry
from mssante.domain.identifiers import SYSTEM_FINESS, SYSTEM_IDNAT_PS, SYSTEM_IDNAT_STRUCT
from mssante.formats.fhir_directory import EXT_MSS_METADATA, contact_point

__all__ = [
    "PatchError",
    "PatchTarget",
    "apply_patch",
    "build_patch",
    "contact_point",
    "contact_point_fields",
    "parse_target",
    "target_for",
]

# SPEC §4.1: the ContactPoint of a BAL is rendered by the directory's FHIR renderer, so
# what we publish is exactly what the read API serves.
METADATA_URL = EXT_MSS_METADATA
FHIR_JSON = "application/fhir+json"

HOLDER_TYPES = ("Practitioner", "PractitionerRole", "Organization")
OPERATIONS = ("insert", "replace", "delete", "full")


class PatchError(ValueError):
    """A patch this module does not build or cannot apply (the receiver answers 400).

    The message is French: the receiver puts it in its OperationOutcome."""


# -- the ContactPoint of one BAL (SPEC §4.1, R47) ----------------------------------------


def contact_point_fields(cp: dict[str, Any]) -> dict[str, Any]:
    """The :class:`DirectoryEntry` fields a BAL ContactPoint carries (inverse of ``contact_point``).

    Accepts the ``type`` as ``valueCodeableConcept`` (IG-AS) or ``valueCode`` (the IG-MSS
    examples use both). Raises :class:`PatchError` when it is not an MSSanté BAL.
    """
    if not isinstance(cp, dict) or cp.get("system") != "email":
        raise PatchError("une BAL est un ContactPoint de system=email")
    address = cp.get("value")
    if not isinstance(address, str) or "@" not in address:
        raise PatchError("le ContactPoint n'a pas d'adresse dans value")
    fields: dict[str, Any] = {
        "address": address.strip().lower(),
        "list_rouge": False,
        "description": "",
        "service": "",
        "responsible": "",
        "rank": 1,
    }
    rank = cp.get("rank", 1)
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise PatchError("ContactPoint.rank doit être un entier ≥ 1")
    fields["rank"] = rank
    metadata = _metadata(cp)
    if metadata is None:
        raise PatchError(f"le ContactPoint {address} n'a pas l'extension {METADATA_URL}")
    bal_type = ""
    for ext in metadata.get("extension", []):
        url = ext.get("url")
        if url == "type":
            bal_type = _type_code(ext)
        elif url == "listeRouge":
            if not isinstance(ext.get("valueBoolean"), bool):
                raise PatchError("listeRouge est un valueBoolean")
            fields["list_rouge"] = ext["valueBoolean"]
        elif url in ("description", "service", "responsible"):
            if not isinstance(ext.get("valueString"), str):
                raise PatchError(f"{url} est un valueString")
            fields[url] = ext["valueString"]
    if bal_type not in BAL_TYPES:
        raise PatchError(f"le type de BAL doit être l'un de {', '.join(BAL_TYPES)}")
    fields["bal_type"] = bal_type
    return fields


def _metadata(cp: dict[str, Any]) -> dict[str, Any] | None:
    for ext in cp.get("extension", []) or []:
        if isinstance(ext, dict) and ext.get("url") == METADATA_URL:
            return ext
    return None


def _type_code(ext: dict[str, Any]) -> str:
    if isinstance(ext.get("valueCode"), str):
        return str(ext["valueCode"])
    concept = ext.get("valueCodeableConcept") or {}
    for coding in concept.get("coding", []) or []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return ""


# -- the target of a conditional PATCH ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatchTarget:
    """``PATCH [base]/<resource_type>?identifier=<system>|<value>`` (SPEC §4.2)."""

    resource_type: str
    system: str
    value: str

    @property
    def identifier(self) -> str:
        return f"{self.system}|{self.value}"

    def url(self, base: str) -> str:
        query = quote(self.identifier, safe=":/")
        return f"{base.rstrip('/')}/{self.resource_type}?identifier={query}"


def target_for(bal_type: str, id_nat_ps: str | None, id_nat_struct: str | None) -> PatchTarget:
    """The holder of a BAL (SPEC §3): Practitioner for PER (and CAB bound to a person),
    Organization (FINESS when the idNat_Struct is one, else the idNat_Struct) for the others.
    """
    if bal_type == "PER" or (bal_type == "CAB" and id_nat_ps):
        if not id_nat_ps:
            raise PatchError("une BAL PER est publiée sur son Practitioner (idNat_PS)")
        return PatchTarget("Practitioner", SYSTEM_IDNAT_PS, id_nat_ps)
    if not id_nat_struct:
        raise PatchError(f"une BAL {bal_type} est publiée sur son Organization (idNat_Struct)")
    if id_nat_struct.startswith("1") and len(id_nat_struct) == 10:
        return PatchTarget("Organization", SYSTEM_FINESS, id_nat_struct[1:])
    return PatchTarget("Organization", SYSTEM_IDNAT_STRUCT, id_nat_struct)


def parse_target(resource_type: str, identifier: str) -> PatchTarget:
    """The receiving side: ``identifier=<system>|<value>`` of a conditional PATCH."""
    if resource_type not in HOLDER_TYPES:
        raise PatchError(f"une BAL est portée par {', '.join(HOLDER_TYPES)}, pas {resource_type}")
    system, bar, value = identifier.partition("|")
    if not bar or not system or not value.strip():
        raise PatchError("identifier doit valoir <système>|<valeur>")
    return PatchTarget(resource_type, system, value.strip())


# -- building patches ---------------------------------------------------------------------


def _fhirpath_string(value: str) -> str:
    """A FHIRPath string literal (``'`` is legal in an address, RFC 5321 atext)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def telecom_path(resource_type: str, address: str) -> str:
    return f"{resource_type}.telecom.where(value = {_fhirpath_string(address)})"


def _operation(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"name": "operation", "part": list(parts)}


def insert_operation(resource_type: str, cp: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return _operation(
        {"name": "type", "valueCode": "insert"},
        {"name": "path", "valueString": f"{resource_type}.telecom"},
        {"name": "index", "valueInteger": index},
        {"name": "value", "valueContactPoint": cp},
    )


def replace_operation(resource_type: str, cp: dict[str, Any]) -> dict[str, Any]:
    return _operation(
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": telecom_path(resource_type, cp["value"])},
        {"name": "value", "valueContactPoint": cp},
    )


def delete_operation(resource_type: str, address: str) -> dict[str, Any]:
    return _operation(
        {"name": "type", "valueCode": "delete"},
        {"name": "path", "valueString": telecom_path(resource_type, address)},
    )


def build_patch(operation: str, resource_type: str, entry: DirectoryEntry) -> dict[str, Any]:
    """The ``Parameters`` of one publication: insert, replace, delete or full (delete+insert)."""
    cp = contact_point(entry)
    if operation == "insert":
        ops = [insert_operation(resource_type, cp)]
    elif operation == "replace":
        ops = [replace_operation(resource_type, cp)]
    elif operation == "delete":
        ops = [delete_operation(resource_type, entry.address)]
    elif operation == "full":
        ops = [delete_operation(resource_type, entry.address), insert_operation(resource_type, cp)]
    else:
        raise PatchError(f"opération de publication inconnue {operation!r}")
    return {"resourceType": "Parameters", "parameter": ops}


# -- applying patches (receiving side) ----------------------------------------------------

_STR = r"'((?:[^'\\]|\\.)*)'"
_WHERE = rf"telecom\.where\(\s*value\s*=\s*{_STR}\s*\)"
_PATH_INSERT = re.compile(r"(?:(?P<type>[A-Za-z]+)\.)?telecom")
_PATH_CP = re.compile(rf"(?:(?P<type>[A-Za-z]+)\.)?{_WHERE}")
_PATH_RANK = re.compile(rf"(?:(?P<type>[A-Za-z]+)\.)?{_WHERE}\.rank")
_PATH_META = re.compile(
    rf"(?:(?P<type>[A-Za-z]+)\.)?{_WHERE}\.extension\(\s*{_STR}\s*\)"
    rf"\.extension\(\s*{_STR}\s*\)(?:\.value)?"
)
_META_VALUE = {
    "listeRouge": "valueBoolean",
    "description": "valueString",
    "service": "valueString",
    "responsible": "valueString",
}


def _unescape(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal)


@dataclass(frozen=True, slots=True)
class Operation:
    type: str  # insert | replace | delete
    path: str
    index: int | None
    value_name: str | None  # valueContactPoint, valueBoolean, valueString, valueInteger
    value: Any


def parse_patch(params: Any) -> list[Operation]:
    """The operations of a FHIR Patch ``Parameters`` (FHIR R4 fhirpatch.html), in order."""
    if not isinstance(params, dict) or params.get("resourceType") != "Parameters":
        raise PatchError("le corps doit être une ressource FHIR Parameters")
    parameters = params.get("parameter")
    if not isinstance(parameters, list) or not parameters:
        raise PatchError("Parameters.parameter doit contenir au moins une opération")
    out: list[Operation] = []
    for param in parameters:
        if not isinstance(param, dict) or param.get("name") != "operation":
            raise PatchError("chaque paramètre doit être une « operation »")
        parts = {p.get("name"): p for p in param.get("part", []) if isinstance(p, dict)}
        op_type = parts.get("type", {}).get("valueCode")
        path = parts.get("path", {}).get("valueString")
        if op_type not in ("insert", "replace", "delete"):
            raise PatchError(
                f"type d'opération {op_type!r} non pris en charge (insert, replace, delete)"
            )
        if not isinstance(path, str) or not path:
            raise PatchError("une opération a un chemin (path, valueString)")
        index = parts.get("index", {}).get("valueInteger")
        value_name, value = None, None
        for key, val in parts.get("value", {}).items():
            if key.startswith("value"):
                value_name, value = key, val
        if op_type == "insert" and not isinstance(index, int):
            raise PatchError("insert a un index (valueInteger)")
        if op_type != "delete" and value_name is None:
            raise PatchError(f"{op_type} a une valeur (value)")
        out.append(Operation(op_type, path.strip(), index, value_name, value))
    return out


def apply_patch(resource: dict[str, Any], params: Any) -> dict[str, Any]:
    """A copy of ``resource`` with the operations applied in order (SPEC §4.2).

    Only ``telecom`` paths are writable, and the address and type of a BAL never change
    (IG-MSS: "l'API renvoie une erreur"). Raises :class:`PatchError` on anything else.
    """
    result = copy.deepcopy(resource)
    rtype = str(result.get("resourceType", ""))
    for op in parse_patch(params):
        telecom = result.setdefault("telecom", [])
        if op.type == "insert":
            _insert(rtype, telecom, op)
        elif op.type == "delete":
            address = _selected(rtype, op.path, _PATH_CP)
            if address is None:
                raise PatchError(f"chemin de delete non pris en charge {op.path!r}")
            result["telecom"] = [cp for cp in telecom if _value(cp) != address]
        else:
            _replace(rtype, telecom, op)
        if not result["telecom"]:
            del result["telecom"]
    return result


def _selected(rtype: str, path: str, pattern: re.Pattern[str]) -> str | None:
    match = pattern.fullmatch(path)
    if match is None:
        return None
    if match.group("type") not in (None, rtype):
        raise PatchError(f"le chemin {path!r} ne s'applique pas à un {rtype}")
    return _unescape(match.group(2)).strip().lower()


def _value(cp: Any) -> str:
    return str(cp.get("value", "")).strip().lower() if isinstance(cp, dict) else ""


def _insert(rtype: str, telecom: list[Any], op: Operation) -> None:
    match = _PATH_INSERT.fullmatch(op.path)
    if match is None or match.group("type") not in (None, rtype):
        raise PatchError(f"chemin d'insert non pris en charge {op.path!r} (<Resource>.telecom)")
    if op.value_name != "valueContactPoint":
        raise PatchError("insert dans telecom a un valueContactPoint")
    fields = contact_point_fields(op.value)
    if any(_value(cp) == fields["address"] for cp in telecom):
        raise PatchError(f"la BAL {fields['address']} est déjà publiée sur ce porteur")
    assert op.index is not None
    if not 0 <= op.index <= len(telecom):
        raise PatchError(f"index d'insert {op.index} hors limites (0..{len(telecom)})")
    telecom.insert(op.index, op.value)


def _find(telecom: list[Any], address: str) -> int:
    for i, cp in enumerate(telecom):
        if _value(cp) == address:
            return i
    raise PatchError(f"pas de BAL {address} sur ce porteur")


def _replace(rtype: str, telecom: list[Any], op: Operation) -> None:
    address = _selected(rtype, op.path, _PATH_CP)
    if address is not None:  # the whole ContactPoint
        i = _find(telecom, address)
        if op.value_name != "valueContactPoint":
            raise PatchError("remplacer un ContactPoint demande un valueContactPoint")
        new, old = contact_point_fields(op.value), contact_point_fields(telecom[i])
        if new["address"] != address or new["bal_type"] != old["bal_type"]:
            raise PatchError("l'adresse et le type d'une BAL ne sont pas modifiables")
        telecom[i] = op.value
        return
    address = _selected(rtype, op.path, _PATH_RANK)
    if address is not None:
        rank = op.value
        if op.value_name != "valueInteger" or isinstance(rank, bool) or rank < 1:
            raise PatchError("rank est un valueInteger ≥ 1")
        telecom[_find(telecom, address)]["rank"] = rank
        return
    match = _PATH_META.fullmatch(op.path)
    if match is None or match.group("type") not in (None, rtype):
        raise PatchError(f"chemin de replace non pris en charge {op.path!r}")
    address = _unescape(match.group(2)).strip().lower()
    url, name = _unescape(match.group(3)), _unescape(match.group(4))
    if url != METADATA_URL:
        raise PatchError(f"seule l'extension {METADATA_URL} est modifiable")
    expected = _META_VALUE.get(name)
    if expected is None:
        raise PatchError(f"la métadonnée {name!r} n'est pas modifiable (le type est immuable)")
    if op.value_name != expected or not isinstance(
        op.value, bool if expected == "valueBoolean" else str
    ):
        raise PatchError(f"{name} est un {expected}")
    cp = telecom[_find(telecom, address)]
    metadata = _metadata(cp)
    if metadata is None:
        metadata = {"url": METADATA_URL, "extension": []}
        cp.setdefault("extension", []).append(metadata)
    subs = metadata.setdefault("extension", [])
    for ext in subs:
        if ext.get("url") == name:
            ext.clear()
            ext.update({"url": name, expected: op.value})
            return
    # Lenient: an absent optional metadata is added (the IG-MSS examples replace
    # description/listeRouge without saying whether they existed).
    subs.append({"url": name, expected: op.value})
