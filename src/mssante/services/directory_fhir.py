"""The current directory snapshot read as FHIR resources (SPEC §4.1, R47, R49, R51).

Resources are groups of ``directory_entries`` rows of the snapshot in force for kind
``bal`` (see :mod:`mssante.formats.fhir_directory` for which rows a resource holds).
Red-listed rows are never read (R49): a resource whose only BALs are red-listed does not
exist here.

Search semantics follow FHIR R4 §3.1.1.5 as HAPI FHIR (the server behind the ANS gateway)
implements them: parameters are ANDed, comma-separated values ORed; a string parameter
matches a prefix, ignoring case and accents (``:exact`` an exact, case- and
accent-sensitive match; ``:contains`` anywhere). Criteria are evaluated on one row of the
resource (names and structure are the same on every row of a resource, a BAL is one row).

Accent-insensitive string matching runs in two stages because neither SQLite's ``lower()``
nor a plain ``LIKE`` folds accents: SQL keeps the rows whose lower-cased column matches a
loose ``LIKE`` pattern (every letter that may carry an accent becomes ``_``, a possible
ligature ``%``), then Python compares the folded values exactly. Name searches therefore
scan the snapshot's rows; the fast ranked search is :mod:`mssante.services.directory_search`.

Pages are keyset pages: ``cursor`` is the logical id of the last resource of the previous
page, so paging stays correct while the snapshot is large and cheap at any depth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, tuple_
from sqlalchemy.engine import Connection

from mssante.domain.directory import BAL_TYPES, DirectoryEntry
from mssante.domain.directory_text import normalise
from mssante.formats import fhir_directory as fd
from mssante.storage.database import Database
from mssante.storage.schema_directory import directory_current, directory_entries

__all__ = [
    "MAX_COUNT",
    "RESOURCE_TYPES",
    "SEARCH_PARAMETERS",
    "Criterion",
    "DirectoryFhirReader",
    "FhirSearch",
    "SearchPage",
    "fold",
]

t = directory_entries
RESOURCE_TYPES = ("Practitioner", "PractitionerRole", "Organization")
MAX_COUNT = 50  # AS-DOC: 50 results per page
_BATCH = 500

_STRING = ("name", "family", "given", "address-city", "address-postalcode", "mailbox-mss")
_COMMON = ("_id", "identifier", "mailbox-mss", "mailbox-mss-type")
SEARCH_PARAMETERS: dict[str, tuple[str, ...]] = {
    "Practitioner": (*_COMMON, "name", "family", "given"),
    # name/family/given/address-* on PractitionerRole are ours (the practitioner's name,
    # the structure's address): a PER BAL in a structure is found by name in one call.
    "PractitionerRole": (
        *_COMMON,
        *("role", "practitioner", "organization", "name", "family", "given"),
        *("address-city", "address-postalcode"),
    ),
    "Organization": (*_COMMON, "name", "address-city", "address-postalcode"),
}
STRING_PARAMETERS = frozenset(_STRING)

_FIELDS = tuple(f.name for f in dataclasses.fields(DirectoryEntry))
_ACCENTABLE = frozenset("aceinouy")
_LIGATURES = ("oe", "ae", "ss", "th")  # œ æ ß þ fold to two letters


def fold(text: str) -> str:
    """Lower-case ``[a-z0-9]`` words, accents, ligatures and punctuation gone.

    The same normalisation as the directory search (:mod:`mssante.domain.directory_text`):
    "Hélène" = "HELENE" = "helene", "Saint-Étienne" = "saint etienne".
    """
    return normalise(text)


def _loose(folded: str) -> str:
    """A LIKE pattern (escape ``\\``) that every spelling folding to ``folded`` matches."""
    out: list[str] = []
    i = 0
    while i < len(folded):
        pair = folded[i : i + 2]
        ch = folded[i]
        if pair in _LIGATURES:
            out.append("%")
            i += 2
            continue
        if ch == " ":
            out.append("%")
        elif ch in _ACCENTABLE or not ch.isascii():
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class Criterion:
    """One search parameter: values ORed; ``modifier`` "", "exact" or "contains"."""

    name: str
    values: tuple[str, ...]
    modifier: str = ""


@dataclass(frozen=True)
class FhirSearch:
    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    count: int = MAX_COUNT
    cursor: tuple[str, ...] | None = None  # key of the last resource of the previous page


@dataclass
class SearchPage:
    resources: list[fd.FhirResource]
    next_cursor: str | None  # logical id to continue after, None on the last page
    total: int | None = None  # known only when cheap (no accent-folding criterion)


Row = Mapping[Any, Any]  # a result row
RowCheck = Callable[[Row], bool]


@dataclass
class _Plan:
    where: list[ColumnElement[bool]] = field(default_factory=list)
    checks: list[RowCheck] = field(default_factory=list)


class SearchValueError(ValueError):
    """A parameter value the search cannot use (French message, for a 400)."""


# -- what a resource is, in rows ----------------------------------------------------------

_PERSON = and_(t.c.bal_type.in_(fd.PERSON_BAL_TYPES), t.c.id_nat_ps != "")


def _key_columns(rtype: str) -> list[Any]:
    if rtype == "Practitioner":
        return [t.c.id_nat_ps]
    if rtype == "PractitionerRole":
        return [t.c.id_nat_ps, t.c.id_struct]
    return [t.c.id_struct]


def _key_of(rtype: str, row: Row) -> tuple[str, ...]:
    return tuple(row[c.name] for c in _key_columns(rtype))


def _holder_rows(rtype: str) -> ColumnElement[bool]:
    """Rows that make a resource of ``rtype`` exist."""
    if rtype == "Practitioner":
        return _PERSON
    if rtype == "PractitionerRole":
        return and_(_PERSON, t.c.id_struct != "")
    return t.c.id_struct != ""


def _telecom_rows(rtype: str) -> ColumnElement[bool]:
    """Rows rendered in the ``telecom`` of a resource of ``rtype``."""
    if rtype == "Practitioner":
        return and_(_PERSON, t.c.id_struct == "")
    if rtype == "PractitionerRole":
        return and_(_PERSON, t.c.id_struct != "")
    return and_(t.c.id_struct != "", ~_PERSON)


def _key_match(rtype: str, keys: Sequence[tuple[str, ...]]) -> ColumnElement[bool]:
    cols = _key_columns(rtype)
    if not keys:
        return false()
    if len(cols) == 1:
        match: ColumnElement[bool] = cols[0].in_([k[0] for k in keys])
    else:
        match = tuple_(*cols).in_([tuple(k) for k in keys])
    return match


# -- criteria -----------------------------------------------------------------------------


def _token(value: str) -> tuple[str | None, str]:
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def _string_match(column: Any, key: str, value: str, modifier: str) -> tuple[Any, RowCheck]:
    """SQL prefilter and exact row check of a FHIR string parameter on one column."""
    if modifier == "exact":
        return column == value, lambda row: bool(row[key] == value)
    folded = fold(value)
    if not folded:
        raise SearchValueError("Une valeur de recherche vide n'est pas acceptée.")
    pattern = "%" + _loose(folded) + "%"
    if modifier == "contains":
        return func.lower(column).like(pattern, escape="\\"), lambda row: folded in fold(row[key])

    def check(row: Row) -> bool:
        text = fold(row[key])
        # a prefix of the whole value or of one of its words (HAPI indexes each given name)
        return text.startswith(folded) or any(w.startswith(folded) for w in text.split())

    return func.lower(column).like(pattern, escape="\\"), check


def _city(row: Row) -> str:
    return DirectoryEntry(bal_type="", address="", city_line=row["city_line"]).city


def _city_check(modifier: str, value: str, folded: str) -> RowCheck:
    def check(row: Row) -> bool:
        city = _city(row)
        if modifier == "exact":
            return city == value
        if modifier == "contains":
            return folded in fold(city)
        return fold(city).startswith(folded)

    return check


def _criterion(rtype: str, c: Criterion, plan: _Plan) -> None:
    ors: list[Any] = []
    checks: list[RowCheck] = []
    for value in c.values:
        if c.name in ("name", "family", "given"):
            if rtype == "Organization":
                targets = [(t.c.org_name, "org_name"), (t.c.org_trade_name, "org_trade_name")]
            else:
                targets = []
                if c.name in ("name", "family"):
                    targets.append((t.c.family_name, "family_name"))
                if c.name in ("name", "given"):
                    targets.append((t.c.given_name, "given_name"))
            for column, column_key in targets:
                where, check = _string_match(column, column_key, value, c.modifier)
                ors.append(where)
                checks.append(check)
        elif c.name == "address-city":
            folded = fold(value)
            if not folded:
                raise SearchValueError("Une valeur de recherche vide n'est pas acceptée.")
            ors.append(func.lower(t.c.city_line).like("%" + _loose(folded) + "%", escape="\\"))
            checks.append(_city_check(c.modifier, value, folded))
        elif c.name == "address-postalcode":
            esc = _like_escape(value.strip())
            if c.modifier == "exact":
                ors.append(t.c.postcode == value.strip())
            elif c.modifier == "contains":
                ors.append(t.c.postcode.like("%" + esc + "%", escape="\\"))
            else:
                ors.append(t.c.postcode.like(esc + "%", escape="\\"))
        elif c.name == "mailbox-mss":
            # BAL addresses are stored lower-cased (SPEC §3): every mode compares that form.
            v = value.strip().lower()
            if c.modifier == "exact":
                ors.append(t.c.address == v)
            elif c.modifier == "contains":
                ors.append(t.c.address.like("%" + _like_escape(v) + "%", escape="\\"))
            else:
                ors.append(t.c.address.like(_like_escape(v) + "%", escape="\\"))
        elif c.name == "mailbox-mss-type":
            system, code = _token(value)
            if code not in BAL_TYPES:
                raise SearchValueError(f"Type de BAL inconnu : {code[:20]!r} (PER, ORG, APP, CAB).")
            ors.append(t.c.bal_type == code)
        elif c.name == "identifier":
            ors.append(_identifier(rtype, *_token(value)))
        elif c.name == "role":
            system, code = _token(value)
            if system not in (None, "", fd.SYSTEM_PROFESSION):
                ors.append(false())
            else:
                ors.append(t.c.profession_code == code)
        elif c.name in ("_id", "practitioner", "organization"):
            target = {"_id": rtype, "practitioner": "Practitioner"}.get(c.name, "Organization")
            ref = value.strip()
            if ref.startswith(target + "/"):
                ref = ref[len(target) + 1 :]
            key = fd.parse_logical_id(target, ref)
            if key is None:
                ors.append(false())
            elif c.name == "_id":
                ors.append(_key_match(rtype, [key]))
            elif c.name == "practitioner":
                ors.append(t.c.id_nat_ps == key[0])
            else:
                ors.append(t.c.id_struct == key[0])
        else:  # the HTTP layer checks names against SEARCH_PARAMETERS
            raise SearchValueError(f"Paramètre de recherche inconnu : {c.name[:40]!r}.")
    if c.name in ("mailbox-mss", "mailbox-mss-type"):
        plan.where.append(_telecom_rows(rtype))  # only the BALs the resource shows
    plan.where.append(or_(*ors) if ors else false())
    if checks:
        plan.checks.append(lambda row: any(check(row) for check in checks))


def _identifier(rtype: str, system: str | None, value: str) -> ColumnElement[bool]:
    value = value.strip()
    if not value:
        raise SearchValueError("Une valeur d'identifiant vide n'est pas acceptée.")
    if rtype == "Practitioner":
        rpps = and_(t.c.id_type_pp == "8", t.c.id_pp == value)
        if system is None or system == "":
            return or_(t.c.id_nat_ps == value, rpps)
        if system == fd.SYSTEM_IDNAT_PS:
            return t.c.id_nat_ps == value
        if system == fd.SYSTEM_RPPS:
            return rpps
        return false()
    if rtype == "Organization":
        systems = {
            fd.SYSTEM_IDNAT_STRUCT: [value],
            fd.SYSTEM_FINESS: ["1" + value],
            fd.SYSTEM_SIRENE: ["3" + value],
        }
        if system is None or system == "":
            return t.c.id_struct.in_([value, "1" + value, "3" + value])
        candidates = systems.get(system)
        return t.c.id_struct.in_(candidates) if candidates else false()
    return false()  # our PractitionerRoles carry no business identifier


# -- the reader ---------------------------------------------------------------------------


def _entry(row: Row) -> DirectoryEntry:
    return DirectoryEntry(**{name: row[name] for name in _FIELDS})


class DirectoryFhirReader:
    """Read-only FHIR view of the directory copy (public data: no responsible, no red list)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _snapshot(self, conn: Connection) -> int | None:
        row = conn.execute(
            select(directory_current.c.snapshot_id).where(directory_current.c.kind == "bal")
        ).first()
        return None if row is None else int(row[0])

    def read(self, resource_type: str, logical_id: str) -> fd.FhirResource | None:
        """GET [base]/{type}/{id}, or None when there is no such resource."""
        key = fd.parse_logical_id(resource_type, logical_id)
        if key is None:
            return None
        with self.db.read() as conn:
            snapshot = self._snapshot(conn)
            if snapshot is None:
                return None
            found = self._render(conn, snapshot, resource_type, [key])
        return found[0] if found else None

    def search(self, query: FhirSearch) -> SearchPage:
        rtype = query.resource_type
        if rtype not in RESOURCE_TYPES:
            raise SearchValueError(f"Type de ressource non pris en charge : {rtype[:40]!r}.")
        plan = _Plan()
        for criterion in query.criteria:
            _criterion(rtype, criterion, plan)
        count = max(1, min(query.count, MAX_COUNT))
        with self.db.read() as conn:
            snapshot = self._snapshot(conn)
            if snapshot is None:
                return SearchPage([], None, 0)
            base = [
                t.c.snapshot_id == snapshot,
                t.c.list_rouge == false(),
                _holder_rows(rtype),
                *plan.where,
            ]
            keys = self._matching_keys(conn, rtype, base, plan.checks, query.cursor, count + 1)
            more = len(keys) > count
            keys = keys[:count]
            total: int | None = None
            if not plan.checks:
                total = self._count(conn, rtype, base)
            elif query.cursor is None and not more:
                total = len(keys)
            resources = self._render(conn, snapshot, rtype, keys)
        next_cursor = resources[-1]["id"] if more and resources else None
        return SearchPage(resources, next_cursor, total)

    def _matching_keys(
        self,
        conn: Connection,
        rtype: str,
        base: list[ColumnElement[bool]],
        checks: list[RowCheck],
        cursor: tuple[str, ...] | None,
        wanted: int,
    ) -> list[tuple[str, ...]]:
        cols = _key_columns(rtype)
        key_expr = cols[0] if len(cols) == 1 else tuple_(*cols)
        found: list[tuple[str, ...]] = []
        after = cursor
        while len(found) < wanted:
            where = list(base)
            if after is not None:
                bound = after[0] if len(cols) == 1 else tuple_(*after)
                where.append(key_expr > bound)
            limit = wanted - len(found) if not checks else _BATCH
            stmt = select(*cols).where(*where).distinct().order_by(*cols).limit(limit)
            batch = [tuple(r) for r in conn.execute(stmt).all()]
            if not batch:
                break
            if not checks:
                found.extend(batch)
            else:
                rows = conn.execute(select(t).where(*base, _key_match(rtype, batch))).mappings()
                matched = {_key_of(rtype, row) for row in rows if all(c(row) for c in checks)}
                found.extend(k for k in batch if k in matched)
            if len(batch) < limit:
                break
            after = batch[-1]
        return found[:wanted]

    def _count(self, conn: Connection, rtype: str, base: list[ColumnElement[bool]]) -> int:
        keys = select(*_key_columns(rtype)).where(*base).distinct().subquery()
        return int(conn.execute(select(func.count()).select_from(keys)).scalar_one())

    def _render(
        self, conn: Connection, snapshot: int, rtype: str, keys: Sequence[tuple[str, ...]]
    ) -> list[fd.FhirResource]:
        """The resources of ``keys`` (in that order); keys without rows are skipped."""
        visible = [t.c.snapshot_id == snapshot, t.c.list_rouge == false()]
        order = (t.c.rank, t.c.address)
        if rtype == "Organization":
            own = conn.execute(
                select(t)
                .where(*visible, _telecom_rows(rtype), _key_match(rtype, keys))
                .order_by(*order)
            ).mappings()
            groups: dict[tuple[str, ...], list[DirectoryEntry]] = {}
            for row in own:
                groups.setdefault(_key_of(rtype, row), []).append(_entry(row))
            missing = [k for k in keys if k not in groups]
            if missing:  # structures known only through their professionals' BALs
                first = (
                    select(func.min(t.c.id))
                    .where(*visible, _key_match(rtype, missing))
                    .group_by(t.c.id_struct)
                )
                for row in conn.execute(select(t).where(t.c.id.in_(first))).mappings():
                    groups.setdefault(_key_of(rtype, row), []).append(_entry(row))
        else:
            groups = {}
            rows = conn.execute(
                select(t)
                .where(*visible, _holder_rows(rtype), _key_match(rtype, keys))
                .order_by(*order)
            ).mappings()
            for row in rows:
                groups.setdefault(_key_of(rtype, row), []).append(_entry(row))
        render = {
            "Practitioner": fd.practitioner,
            "PractitionerRole": fd.practitioner_role,
            "Organization": fd.organization,
        }[rtype]
        return [render(groups[k], include_responsible=False) for k in keys if k in groups]
