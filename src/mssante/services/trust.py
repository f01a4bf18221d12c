"""The white list in force (R1–R4), kept in the database so every process sees one list.

`load` replaces the list in one transaction, only when the new one parsed, passed its
checksum and is not empty: a failed load never empties or alters the list in force (R3).
Readers cache the list and re-read it when the generation number in the database changes,
so a reload takes effect without restarting any server.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select

from mssante.domain.errors import TrustListRejected
from mssante.domain.trust import DNInput, TrustedDomain, TrustList, normalise_domain
from mssante.formats.trust_list import load_trust_list
from mssante.services import traces
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema import trust_list_domains, trust_list_meta


@dataclass(frozen=True)
class TrustListStatus:
    generation: int
    domain_count: int
    distinct_domains: int
    generated_at: datetime | None
    sha256: str
    source: str | None
    loaded_at: datetime | None
    warnings: tuple[str, ...] = ()


class TrustListService:
    def __init__(self, db: Database, local_domains: tuple[str, ...], *, ttl: float = 2.0) -> None:
        self.db = db
        self.local_domains = frozenset(local_domains)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: TrustList | None = None
        self._generation = -1
        self._checked_at = 0.0

    def load(
        self, data: bytes, checksum: str | None = None, *, source: str | None = None
    ) -> TrustListStatus:
        """Validate and install a new list; raise TrustListRejected and keep the old one."""
        try:
            new = load_trust_list(data, checksum)
        except TrustListRejected as exc:
            with self.db.write() as conn:
                traces.record(
                    conn, "trust_list.load", "refused", detail=f"{source or '-'}: {exc.message}"
                )
            raise
        if len(new) == 0:  # defensive: the parser already refuses an empty list
            raise TrustListRejected("the white list is empty")
        now = utcnow()
        with self.db.write() as conn:
            generation = (
                int(
                    conn.execute(
                        select(func.coalesce(func.max(trust_list_meta.c.generation), 0))
                    ).scalar_one()
                )
                + 1
            )
            conn.execute(delete(trust_list_domains))
            conn.execute(
                insert(trust_list_domains),
                [
                    {
                        "name": e.name,
                        "description": (e.description or "")[:1000],
                        "operator_dn": e.operator_dn,
                        "updated_at": e.updated_at,
                    }
                    for e in new
                ],
            )
            conn.execute(
                insert(trust_list_meta).values(
                    generation=generation,
                    generated_at=new.generated_at,
                    sha256=new.sha256,
                    domain_count=len(new),
                    source=source,
                    loaded_at=now,
                )
            )
            traces.record(
                conn,
                "trust_list.load",
                detail=f"generation {generation}, {len(new)} entries, sha256 {new.sha256[:16]}",
            )
        with self._lock:
            self._checked_at = 0.0
        return TrustListStatus(
            generation=generation,
            domain_count=len(new),
            distinct_domains=len(new.domain_names()),
            generated_at=new.generated_at,
            sha256=new.sha256,
            source=source,
            loaded_at=now,
            warnings=tuple(new.warnings),
        )

    def status(self) -> TrustListStatus | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(trust_list_meta).order_by(trust_list_meta.c.generation.desc()).limit(1)
            ).first()
            if row is None:
                return None
            distinct = conn.execute(
                select(func.count(func.distinct(trust_list_domains.c.name)))
            ).scalar_one()
        return TrustListStatus(
            generation=row.generation,
            domain_count=row.domain_count,
            distinct_domains=int(distinct),
            generated_at=as_utc(row.generated_at),
            sha256=row.sha256,
            source=row.source,
            loaded_at=as_utc(row.loaded_at),
        )

    def current(self) -> TrustList | None:
        """The list in force, re-read at most every `ttl` seconds when it changed."""
        with self._lock:
            if time.monotonic() - self._checked_at < self.ttl:
                return self._cached
        with self.db.read() as conn:
            row = conn.execute(
                select(trust_list_meta).order_by(trust_list_meta.c.generation.desc()).limit(1)
            ).first()
            if row is None:
                trust = None
                generation = 0
            elif row.generation == self._generation:
                trust, generation = self._cached, row.generation
            else:
                entries = tuple(
                    TrustedDomain(
                        name=r.name,
                        operator_dn=r.operator_dn,
                        description=r.description or "",
                        updated_at=as_utc(r.updated_at),
                    )
                    for r in conn.execute(select(trust_list_domains))
                )
                trust = TrustList(
                    generated_at=as_utc(row.generated_at) or utcnow(),
                    entries=entries,
                    sha256=row.sha256,
                )
                generation = row.generation
        with self._lock:
            self._cached, self._generation = trust, generation
            self._checked_at = time.monotonic()
        return trust

    # -- decisions --------------------------------------------------------------------

    def is_local(self, domain: str) -> bool:
        return normalise_domain(domain) in self.local_domains

    def in_trust_space(self, domain: str) -> bool:
        """Local, or listed in the white list (R4)."""
        name = normalise_domain(domain)
        if name in self.local_domains:
            return True
        trust = self.current()
        return trust is not None and trust.contains(name)

    def sender_authorised(self, sender_domain: str, peer_dn: DNInput) -> bool:
        trust = self.current()
        return trust is not None and trust.sender_authorised(sender_domain, peer_dn)

    def is_operator(self, peer_dn: DNInput) -> bool:
        trust = self.current()
        return trust is not None and trust.is_operator(peer_dn)
