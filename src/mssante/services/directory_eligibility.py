"""Eligibility of PER BALs against the directory in force (issue 5 item 6, R60).

``listing`` is used by ``MailboxService.create_mailbox`` (no new PER BAL for a professional
absent from the directory once a RASS/PSC extraction is loaded); ``suspend_unlisted`` runs
after each import (services/directory.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from mssante.services import traces
from mssante.storage.database import Database
from mssante.storage.schema import mailboxes
from mssante.storage.schema_directory import (
    directory_current,
    directory_entries,
    directory_professionals,
)

if TYPE_CHECKING:
    from mssante.services.mailboxes import MailboxService

log = logging.getLogger("mssante.directory")


def current_snapshots(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(directory_current.c.kind, directory_current.c.snapshot_id))
    return {r.kind: int(r.snapshot_id) for r in rows}


def listing(conn: Connection, id_nat_ps: str) -> bool | None:
    """Whether ``id_nat_ps`` is listed in the directory in force (RASS/PSC or BAL rows).

    None when no ``professionals`` snapshot is in force: nothing can be said (R60 applies
    only once the operator loaded the RASS or Pro Santé Connect extraction).
    """
    current = current_snapshots(conn)
    pros = current.get("professionals")
    if pros is None:
        return None
    p = directory_professionals.c
    if conn.execute(
        select(p.id).where(p.snapshot_id == pros, p.id_nat_ps == id_nat_ps).limit(1)
    ).first():
        return True
    bal = current.get("bal")
    e = directory_entries.c
    return bal is not None and (
        conn.execute(
            select(e.id).where(e.snapshot_id == bal, e.id_nat_ps == id_nat_ps).limit(1)
        ).first()
        is not None
    )


def suspend_unlisted(
    db: Database, mailbox_service: MailboxService | None = None, *, actor: str = "annuaire"
) -> list[str]:
    """Suspend every active PER BAL whose professional is no longer listed (R60).

    Never deletes: the BAL keeps its mail and can be reactivated. Idempotent: run after
    each switch of the ``professionals`` snapshot. ``mailbox_service`` is the operator's
    (its hooks, e.g. the publication of the BAL's new status, run on suspension).
    """
    from mssante.domain.mailboxes import MailboxStatus
    from mssante.services.mailboxes import MailboxService

    m = mailboxes.c
    with db.read() as conn:
        current = current_snapshots(conn)
        pros = current.get("professionals")
        if pros is None:
            return []
        p = directory_professionals.c
        listed = select(p.id).where(p.snapshot_id == pros, p.id_nat_ps == m.id_nat_ps)
        query = select(m.address, m.id_nat_ps).where(
            m.type == "PER", m.status == "active", m.id_nat_ps.is_not(None), ~listed.exists()
        )
        bal = current.get("bal")
        if bal is not None:
            e = directory_entries.c
            in_bal = select(e.id).where(e.snapshot_id == bal, e.id_nat_ps == m.id_nat_ps)
            query = query.where(~in_bal.exists())
        unlisted = conn.execute(query.order_by(m.address)).all()
    service = mailbox_service or MailboxService(db, ())
    suspended = []
    for address, id_nat_ps in unlisted:
        with db.write() as conn:  # the trace first: a crash before set_status retries
            traces.record(
                conn,
                "directory.unlisted",
                mailbox=address,
                actor=actor,
                detail=f"{id_nat_ps} absent from directory snapshot {pros}: suspended (R60)",
            )
        service.set_status(address, MailboxStatus.SUSPENDED, actor=actor)
        log.warning("directory: %s suspended, %s no longer listed (R60)", address, id_nat_ps)
        suspended.append(address)
    return suspended
