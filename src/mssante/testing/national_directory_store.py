"""The write side of the demo national directory: a FHIR Patch applied to its BAL rows.

The national directory keeps its BALs as ``directory_entries`` rows of its current ``bal``
snapshot (the same tables as an operator's copy), so the FHIR read API
(:mod:`mssante.http.fhir`) and the search (:mod:`mssante.services.directory_search`) read
them unchanged. A conditional PATCH (SPEC §4.2) is applied in one transaction:

1. the holder is resolved from ``identifier`` (``Practitioner``: idNat_PS or RPPS;
   ``Organization``: FINESS, SIREN/SIRET or idNat_Struct) among the holders of the RASS
   stand-in (``registry``: persons and structures known without any BAL, as the real
   directory knows them from RPPS and FINESS) and the holders of the stored rows; several
   holders → 412, none → 404, unless ``create_missing`` and every operation is an insert
   (the holder is then created from the identifier alone: a demo without a registry);
2. the patch is applied to the holder's ``telecom`` (:func:`fhir_patch.apply_patch`);
3. the difference is written in place: new BALs (holder fields from the holder, BAL fields
   from the ContactPoint), changed metadata, deleted BALs; then the search index of those
   addresses is rebuilt (``index_entries``).

Red-listed BALs are stored like the others: the read side never shows them (R49).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from mssante.domain.directory import DirectoryEntry
from mssante.domain.identifiers import SYSTEM_FINESS, SYSTEM_IDNAT_PS, SYSTEM_IDNAT_STRUCT
from mssante.formats import fhir_directory
from mssante.formats.directory_files import ENTRY_FIELDS, row_hash
from mssante.formats.fhir_patch import (
    PatchError,
    PatchTarget,
    apply_patch,
    contact_point_fields,
    parse_patch,
)
from mssante.services.directory_search import entry_from_row, index_entries
from mssante.storage.database import utcnow
from mssante.storage.schema_directory import (
    directory_current,
    directory_entries,
    directory_snapshots,
)

SYSTEM_RPPS = "https://rpps.esante.gouv.fr"
SYSTEM_SIRENE = "https://sirene.fr"
PERSON_FIELDS = (
    "id_type_pp",
    "id_pp",
    "id_nat_ps",
    "civility",
    "family_name",
    "given_name",
    "profession_category_code",
    "profession_category_label",
    "profession_code",
    "profession_label",
    "skill_code",
    "skill_label",
)
ORG_FIELDS = (
    "id_type_struct",
    "id_struct",
    "org_name",
    "org_trade_name",
    "address_l2",
    "address_l3",
    "street_number",
    "street_number_suffix",
    "street_type",
    "street_name",
    "locality",
    "city_line",
    "postcode",
    "departement",
    "country",
)
_ALLOWED_TYPES = {"Practitioner": ("PER", "CAB"), "Organization": ("ORG", "APP", "CAB")}
_ENTRY_COLUMNS = tuple(f.name for f in fields(DirectoryEntry))


class HolderNotFound(Exception):
    """404: no resource has this identifier."""


class SeveralHolders(Exception):
    """412: the conditional PATCH is ambiguous."""


@dataclass(frozen=True)
class PatchOutcome:
    resource: dict[str, Any]
    changed: tuple[str, ...]  # addresses inserted, replaced or deleted


def current_snapshot(conn: Connection) -> int:
    """The ``bal`` snapshot in force, created empty if there is none."""
    row = conn.execute(
        select(directory_current.c.snapshot_id).where(directory_current.c.kind == "bal")
    ).first()
    if row is not None:
        return int(row.snapshot_id)
    now = utcnow()
    snapshot_id = conn.execute(
        insert(directory_snapshots).values(
            kind="bal",
            format="fhir",
            source="publication FHIR PATCH",
            state="current",
            started_at=now,
            finished_at=now,
            rows=0,
            rejected=0,
            added=0,
            changed=0,
            removed=0,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    conn.execute(
        insert(directory_current).values(kind="bal", snapshot_id=snapshot_id, switched_at=now)
    )
    return int(snapshot_id)


def holder_key(target: PatchTarget) -> str:
    """The idNat_PS (Practitioner) or idNat_Struct (Organization) an identifier names."""
    system, value = target.system, target.value
    if target.resource_type == "Practitioner":
        if system == SYSTEM_IDNAT_PS:
            return value
        if system == SYSTEM_RPPS:
            return "8" + value
    elif target.resource_type == "Organization":
        if system == SYSTEM_IDNAT_STRUCT:
            return value
        if system in (SYSTEM_FINESS, "http://finess.sante.gouv.fr"):
            return "1" + value
        if system == SYSTEM_SIRENE:
            return ("2" if len(value) == 9 else "3") + value
    else:
        raise HolderNotFound(f"aucune ressource {target.resource_type} par identifiant ici")
    raise PatchError(
        f"système d'identifiant {system!r} non pris en charge ({target.resource_type})"
    )


def _is_person(entry: DirectoryEntry) -> bool:
    return fhir_directory.is_person_entry(entry)


def _holder_template(rtype: str, key: str, source: DirectoryEntry | None) -> DirectoryEntry:
    keep = PERSON_FIELDS if rtype == "Practitioner" else ORG_FIELDS
    if source is None:
        if rtype == "Practitioner":
            source = DirectoryEntry("PER", "", id_nat_ps=key, id_type_pp=key[:1], id_pp=key[1:])
        else:
            source = DirectoryEntry("ORG", "", id_struct=key, id_type_struct=key[:1])
    blank = DirectoryEntry(source.bal_type, "")
    return replace(blank, **{name: getattr(source, name) for name in keep})


def _row_values(snapshot_id: int, entry: DirectoryEntry) -> dict[str, Any]:
    values = {name: getattr(entry, name) for name in _ENTRY_COLUMNS}
    values["snapshot_id"] = snapshot_id
    values["row_hash"] = row_hash(tuple(str(getattr(entry, f)) for f in ENTRY_FIELDS))
    return values


class NationalStore:
    """Apply conditional FHIR Patches to the BAL rows of the current snapshot."""

    def __init__(self, registry: Sequence[DirectoryEntry] = (), *, create_missing: bool = False):
        self.registry = tuple(registry)
        self.create_missing = create_missing

    def _registry_matches(self, rtype: str, key: str) -> list[DirectoryEntry]:
        if rtype == "Practitioner":
            return [e for e in self.registry if e.id_nat_ps == key and e.bal_type in ("PER", "CAB")]
        return [e for e in self.registry if e.id_struct == key and not _is_person(e)]

    def _rows(self, conn: Connection, snapshot_id: int, rtype: str, key: str) -> list[Any]:
        e = directory_entries
        column = e.c.id_nat_ps if rtype == "Practitioner" else e.c.id_struct
        return list(
            conn.execute(
                select(e).where(e.c.snapshot_id == snapshot_id, column == key).order_by(e.c.id)
            )
        )

    def apply(
        self, conn: Connection, target: PatchTarget, params: Any
    ) -> PatchOutcome:  # raises PatchError, HolderNotFound, SeveralHolders
        operations = parse_patch(params)
        rtype = target.resource_type
        key = holder_key(target)
        snapshot_id = current_snapshot(conn)
        rows = self._rows(conn, snapshot_id, rtype, key)
        entries = [entry_from_row(r) for r in rows]
        known = self._registry_matches(rtype, key)
        if len(known) > 1:
            raise SeveralHolders(
                f"{len(known)} ressources {rtype} ont l'identifiant {target.identifier}"
            )
        if rtype == "Practitioner":
            source = known[0] if known else next((x for x in entries if _is_person(x)), None)
            own = [(r, x) for r, x in zip(rows, entries, strict=True) if _is_person(x)]
            own = [(r, x) for r, x in own if not x.id_struct]
        else:
            source = known[0] if known else next((x for x in entries if x.id_struct), None)
            own = [(r, x) for r, x in zip(rows, entries, strict=True) if not _is_person(x)]
        if source is None:
            inserts_only = all(op.type == "insert" for op in operations)
            if not (self.create_missing and inserts_only):
                raise HolderNotFound(
                    f"aucune ressource {rtype} n'a l'identifiant {target.identifier}"
                )
        template = _holder_template(rtype, key, source)
        before = {
            "resourceType": rtype,
            "telecom": [fhir_directory.contact_point(x) for _, x in own],
        }
        after = apply_patch(before, params)
        new_cps = {f["address"]: f for f in map(contact_point_fields, after.get("telecom", []))}
        old = {x.address: (r, x) for r, x in own}
        changed: list[str] = []
        for address, (row, _) in old.items():
            if address not in new_cps:
                conn.execute(delete(directory_entries).where(directory_entries.c.id == row.id))
                changed.append(address)
        for address, cp in new_cps.items():
            if cp["bal_type"] not in _ALLOWED_TYPES[rtype]:
                raise PatchError(f"une BAL {cp['bal_type']} n'est pas portée par un {rtype}")
            if address in old:  # replaced metadata; the holder fields stay
                row, current = old[address]
                updated = replace(current, **cp)
                if updated != current:
                    conn.execute(
                        update(directory_entries)
                        .where(directory_entries.c.id == row.id)
                        .values(**_row_values(snapshot_id, updated))
                    )
                    changed.append(address)
                continue
            entry = replace(template, **cp)
            taken = conn.execute(
                select(directory_entries.c.id).where(
                    directory_entries.c.snapshot_id == snapshot_id,
                    directory_entries.c.address == address,
                )
            ).first()
            if taken is not None:
                raise PatchError(f"la BAL {address} est déjà publiée par un autre porteur")
            conn.execute(insert(directory_entries).values(**_row_values(snapshot_id, entry)))
            changed.append(address)
        if changed:
            index_entries(conn, snapshot_id, changed)
        final = [entry_from_row(r) for r in self._rows(conn, snapshot_id, rtype, key)]
        return PatchOutcome(self._render(rtype, key, template, final), tuple(changed))

    @staticmethod
    def _render(
        rtype: str, key: str, template: DirectoryEntry, rows: list[DirectoryEntry]
    ) -> dict[str, Any]:
        """The holder after the patch (the 200 answer, SPEC §4.2)."""
        if rtype == "Practitioner":
            own = [x for x in rows if _is_person(x)]
            if any(not x.id_struct for x in own):
                return fhir_directory.practitioner(own)
            resource = fhir_directory.practitioner([*own, replace(template, address="-")])
        else:
            if any(not _is_person(x) for x in rows):
                return fhir_directory.organization(rows)
            resource = fhir_directory.organization([replace(template, address="-"), *rows])
        resource.pop("telecom", None)  # the holder holds no BAL (any more)
        return resource
