"""FHIR search parameters from a query string or a ``_search`` form body (FHIR R4 §3.1.1).

Unknown parameters and unsupported modifiers are refused (HAPI FHIR, behind the ANS
gateway, answers 400 too), so that a client never takes an ignored filter for an empty
result. Values are percent-decoded once; ``,`` separates ORed values (a literal comma is
``\\,``, FHIR R4 §3.1.1.5.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from mssante.formats import fhir_directory as fd
from mssante.services.directory_fhir import (
    MAX_COUNT,
    SEARCH_PARAMETERS,
    STRING_PARAMETERS,
    Criterion,
    FhirSearch,
)

__all__ = ["FhirParamError", "ParsedQuery", "parse_search", "query_pairs"]

MAX_QUERY_BYTES = 8 * 1024
MAX_PARAMETERS = 40
_CONTROL = frozenset(("_count", "_cursor", "_elements", "_format", "_pretty"))
_FORMATS = frozenset(("json", "application/json", "application/fhir+json"))
_ELEMENTS = frozenset(
    (
        "identifier",
        "active",
        "name",
        "telecom",
        "address",
        "qualification",
        "practitioner",
        "organization",
        "code",
        "specialty",
        "alias",
        "language",
    )
)


class FhirParamError(ValueError):
    """A request the search cannot run: answered 400 with this French diagnostic."""


@dataclass(frozen=True)
class ParsedQuery:
    search: FhirSearch
    elements: tuple[str, ...] | None  # _elements, None when absent
    pairs: list[tuple[str, str]]  # the search parameters, for the Bundle links


def query_pairs(raw: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` as pairs (``+`` is a space, as in HTML forms)."""
    if len(raw.encode("utf-8", "replace")) > MAX_QUERY_BYTES:
        raise FhirParamError("La requête de recherche est trop longue.")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise FhirParamError("Les paramètres de recherche sont mal encodés.") from None
    if len(pairs) > MAX_PARAMETERS:
        raise FhirParamError("Trop de paramètres de recherche.")
    return pairs


def _split_values(value: str) -> tuple[str, ...]:
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in ",\\|$":
            current.append(value[i + 1])
            i += 2
            continue
        if value[i] == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(value[i])
        i += 1
    parts.append("".join(current))
    return tuple(p for p in parts if p.strip())


def parse_search(resource_type: str, pairs: list[tuple[str, str]]) -> ParsedQuery:
    allowed = SEARCH_PARAMETERS[resource_type]
    criteria: list[Criterion] = []
    kept: list[tuple[str, str]] = []
    count = MAX_COUNT
    cursor: tuple[str, ...] | None = None
    elements: tuple[str, ...] | None = None
    for raw_name, value in pairs:
        name, _, modifier = raw_name.partition(":")
        if name in _CONTROL:
            if modifier:
                raise FhirParamError(f"Le paramètre {name} n'accepte pas de modificateur.")
            if name == "_count":
                if not value.isdigit() or int(value) < 1:
                    raise FhirParamError("_count doit être un entier strictement positif.")
                count = min(int(value[:6]), MAX_COUNT)  # at most 50 per page (AS-DOC)
            elif name == "_cursor":
                cursor = fd.parse_logical_id(resource_type, value)
                if cursor is None:
                    raise FhirParamError("Le curseur de pagination est invalide.")
            elif name == "_format" and value not in _FORMATS:
                raise FhirParamError("Seul le format JSON (application/fhir+json) est servi.")
            elif name == "_elements":
                asked = tuple(e.strip() for e in value.split(",") if e.strip())
                unknown = [e for e in asked if e not in _ELEMENTS]
                if unknown:
                    raise FhirParamError(f"Élément inconnu dans _elements : {unknown[0][:40]!r}.")
                elements = asked
            if name != "_cursor":
                kept.append((raw_name, value))
            continue
        if name not in allowed:
            raise FhirParamError(
                f"Paramètre de recherche inconnu pour {resource_type} : {name[:40]!r}. "
                f"Paramètres acceptés : {', '.join(allowed)}."
            )
        if modifier and (name not in STRING_PARAMETERS or modifier not in ("exact", "contains")):
            raise FhirParamError(f"Modificateur non pris en charge : {raw_name[:60]!r}.")
        values = _split_values(value)
        if not values:
            raise FhirParamError(f"Le paramètre {name} n'a pas de valeur.")
        criteria.append(Criterion(name, values, modifier))
        kept.append((raw_name, value))
    search = FhirSearch(resource_type, tuple(criteria), count, cursor)
    return ParsedQuery(search, elements, kept)


def link_query(pairs: list[tuple[str, str]], cursor: str | None = None) -> str:
    """The query string of a Bundle link (``_cursor`` set to continue after a page)."""
    items = list(pairs)
    if cursor is not None:
        items.append(("_cursor", cursor))
    return urlencode(items, safe=":|,/@")
