"""Use cases for structures, professionals, mailboxes and their principals.

Each public method is one transaction that writes its change and its trace event together.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from mssante.domain.errors import AlreadyExists, NotAMember, NotFound, RuleViolation
from mssante.domain.identifiers import parse_idnat_ps, parse_idnat_struct
from mssante.domain.mailboxes import (
    DEFAULT_FOLDERS,
    MailboxSpec,
    MailboxStatus,
    MailboxType,
    check_transition,
    check_update,
    normalise_address,
)
from mssante.services import traces
from mssante.services.directory_eligibility import listing
from mssante.services.passwords import hash_password, verify_password
from mssante.storage.database import Database, utcnow
from mssante.storage.schema import (
    folders,
    mailbox_members,
    mailboxes,
    professionals,
    structures,
    subscriptions,
    users,
)

_STATUS_ACTION = {
    MailboxStatus.ACTIVE: "mailbox.reactivate",
    MailboxStatus.SUSPENDED: "mailbox.suspend",
    MailboxStatus.CLOSED: "mailbox.close",
}

_USER_KIND = {
    MailboxType.PER: "professional",
    MailboxType.ORG: "staff",
    MailboxType.CAB: "staff",
    MailboxType.APP: "application",
}


def _check_eligible(conn: Connection, id_nat_ps: str) -> None:
    """R60: a new PER BAL needs an RPPS identity listed in the directory in force."""
    if id_nat_ps.startswith("0"):
        raise RuleViolation(
            f"R60: no new PER mailbox for the ADELI identity {id_nat_ps} (ADELI was "
            "decommissioned in 2024; an RPPS is required)"
        )
    if listing(conn, id_nat_ps) is False:  # None: no RASS/PSC extraction loaded
        raise RuleViolation(
            f"R60: professionnel absent de l'annuaire ({id_nat_ps} is not listed in the "
            "directory in force)"
        )


@dataclass(frozen=True)
class Mailbox:
    id: int
    address: str
    type: MailboxType
    status: MailboxStatus
    list_rouge: bool
    rank: int
    id_nat_ps: str | None
    id_nat_struct: str | None
    responsible: str | None
    description: str | None
    service: str | None
    owner_user_id: int | None

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]]) -> Mailbox:
        m = row._mapping
        return cls(
            id=int(m["id"]),
            address=str(m["address"]),
            type=MailboxType(m["type"]),
            status=MailboxStatus(m["status"]),
            list_rouge=bool(m["list_rouge"]),
            rank=int(m["rank"]),
            id_nat_ps=m["id_nat_ps"],
            id_nat_struct=m["id_nat_struct"],
            responsible=m["responsible"],
            description=m["description"],
            service=m["service"],
            owner_user_id=m["owner_user_id"],
        )


@dataclass(frozen=True)
class Principal:
    """Someone (or some software) authenticated on a listener."""

    user_id: int
    login: str
    kind: str
    id_nat_ps: str | None


class MailboxService:
    def __init__(self, db: Database, hosted_domains: tuple[str, ...]) -> None:
        self.db = db
        self.hosted_domains = hosted_domains
        # Publication to the national directory (R48): called in the transaction of each
        # BAL create/change/close with "insert", "replace" or "delete"; set by runtime.py.
        self.directory_hook: Callable[[Connection, Mailbox, str], None] | None = None

    # -- structures and professionals -------------------------------------------------

    def create_structure(self, id_nat_struct: str, name: str, *, actor: str = "cli") -> str:
        value = parse_idnat_struct(id_nat_struct).value
        if not name.strip():
            raise RuleViolation("a structure needs a name")
        with self.db.write() as conn:
            if conn.execute(
                select(structures.c.id).where(structures.c.id_nat_struct == value)
            ).first():
                raise AlreadyExists(f"structure {value} already exists")
            conn.execute(
                insert(structures).values(
                    id_nat_struct=value, name=name.strip(), created_at=utcnow()
                )
            )
            traces.record(conn, "structure.create", actor=actor, detail=value)
        return value

    def create_professional(
        self,
        id_nat_ps: str,
        family_name: str,
        given_name: str,
        profession: str = "",
        *,
        actor: str = "cli",
    ) -> str:
        value = parse_idnat_ps(id_nat_ps).value
        if not family_name.strip() or not given_name.strip():
            raise RuleViolation("a professional needs a family name and a given name")
        with self.db.write() as conn:
            if conn.execute(
                select(professionals.c.id).where(professionals.c.id_nat_ps == value)
            ).first():
                raise AlreadyExists(f"professional {value} already exists")
            conn.execute(
                insert(professionals).values(
                    id_nat_ps=value,
                    family_name=family_name.strip(),
                    given_name=given_name.strip(),
                    profession=profession.strip(),
                    created_at=utcnow(),
                )
            )
            traces.record(conn, "professional.create", actor=actor, detail=value)
        return value

    def list_structures(self) -> list[tuple[str, str]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(structures.c.id_nat_struct, structures.c.name).order_by(
                    structures.c.id_nat_struct
                )
            )
            return [(r.id_nat_struct, r.name) for r in rows]

    def list_professionals(self) -> list[tuple[str, str, str, str]]:
        with self.db.read() as conn:
            rows = conn.execute(select(professionals).order_by(professionals.c.family_name))
            return [(r.id_nat_ps, r.family_name, r.given_name, r.profession) for r in rows]

    # -- mailboxes --------------------------------------------------------------------

    def create_mailbox(
        self, spec: MailboxSpec, *, password: str | None = None, actor: str = "cli"
    ) -> Mailbox:
        spec = MailboxSpec(**{**spec.__dict__, "hosted_domains": self.hosted_domains}).validate()
        now = utcnow()
        with self.db.write() as conn:
            if conn.execute(
                select(mailboxes.c.id).where(mailboxes.c.address == spec.address)
            ).first():
                raise AlreadyExists(f"mailbox {spec.address} already exists")
            if (
                spec.id_nat_ps
                and not conn.execute(
                    select(professionals.c.id).where(professionals.c.id_nat_ps == spec.id_nat_ps)
                ).first()
            ):
                raise NotFound(f"professional {spec.id_nat_ps} is not registered")
            if spec.type is MailboxType.PER and spec.id_nat_ps:
                _check_eligible(conn, spec.id_nat_ps)
            if (
                spec.id_nat_struct
                and not conn.execute(
                    select(structures.c.id).where(structures.c.id_nat_struct == spec.id_nat_struct)
                ).first()
            ):
                raise NotFound(f"structure {spec.id_nat_struct} is not registered")
            if conn.execute(select(users.c.id).where(users.c.login == spec.address)).first():
                raise AlreadyExists(f"login {spec.address} already exists")
            user_id = conn.execute(
                insert(users).values(
                    login=spec.address,
                    kind=_USER_KIND[spec.type],
                    id_nat_ps=spec.id_nat_ps if spec.type is MailboxType.PER else None,
                    display_name=spec.address,
                    password_hash=hash_password(password) if password else None,
                    status="active",
                    created_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            mailbox_id = conn.execute(
                insert(mailboxes).values(
                    address=spec.address,
                    domain=spec.address.rpartition("@")[2],
                    type=spec.type.value,
                    status=MailboxStatus.ACTIVE.value,
                    list_rouge=spec.list_rouge,
                    rank=spec.rank,
                    id_nat_ps=spec.id_nat_ps,
                    id_nat_struct=spec.id_nat_struct,
                    owner_user_id=user_id,
                    responsible=spec.responsible,
                    description=spec.description,
                    service=spec.service,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            for name, special in DEFAULT_FOLDERS:
                if special:  # subscribed from the start, as mail clients expect
                    conn.execute(insert(subscriptions).values(user_id=user_id, name=name))
                conn.execute(
                    insert(folders).values(
                        mailbox_id=mailbox_id,
                        name=name,
                        special_use=special,
                        uidvalidity=secrets.randbelow(2**31 - 1) + 1,
                        uidnext=1,
                        highestmodseq=1,
                    )
                )
            traces.record(
                conn, "mailbox.create", mailbox=spec.address, actor=actor, detail=spec.type.value
            )
            row = conn.execute(select(mailboxes).where(mailboxes.c.id == mailbox_id)).one()
            if self.directory_hook is not None:
                self.directory_hook(conn, Mailbox.from_row(row), "insert")
        return Mailbox.from_row(row)

    def get(self, address: str) -> Mailbox:
        with self.db.read() as conn:
            return self.get_in(conn, address)

    @staticmethod
    def get_in(conn: Connection, address: str) -> Mailbox:
        row = conn.execute(
            select(mailboxes).where(mailboxes.c.address == normalise_address(address))
        ).first()
        if row is None:
            raise NotFound(f"no mailbox {address}")
        return Mailbox.from_row(row)

    def find(self, address: str) -> Mailbox | None:
        try:
            return self.get(address)
        except NotFound:
            return None

    def list_mailboxes(self, *, domain: str | None = None) -> list[Mailbox]:
        query = select(mailboxes).order_by(mailboxes.c.address)
        if domain:
            query = query.where(mailboxes.c.domain == domain.lower())
        with self.db.read() as conn:
            return [Mailbox.from_row(r) for r in conn.execute(query)]

    def set_status(self, address: str, target: MailboxStatus, *, actor: str = "cli") -> Mailbox:
        with self.db.write() as conn:
            box = self.get_in(conn, address)
            check_transition(box.status, target)
            conn.execute(
                update(mailboxes)
                .where(mailboxes.c.id == box.id)
                .values(status=target.value, updated_at=utcnow())
            )
            traces.record(
                conn,
                _STATUS_ACTION[target],
                mailbox=box.address,
                actor=actor,
                detail=f"{box.status} -> {target}",
            )
            after = self.get_in(conn, address)
            if self.directory_hook is not None and target is MailboxStatus.CLOSED:
                self.directory_hook(conn, after, "delete")  # suspension: see R48 module
            return after

    def update(self, address: str, changes: dict[str, object], *, actor: str = "cli") -> Mailbox:
        check_update(changes)
        allowed = {"list_rouge", "rank", "responsible", "description", "service"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise RuleViolation(f"unknown mailbox fields: {', '.join(unknown)}")
        with self.db.write() as conn:
            box = self.get_in(conn, address)
            # The mailbox after the change must still pass the creation rules (R46): an
            # ORG/APP keeps a responsible person, the rank stays ≥ 1.
            replace(
                MailboxSpec(
                    address=box.address,
                    type=box.type,
                    id_nat_ps=box.id_nat_ps,
                    id_nat_struct=box.id_nat_struct,
                    responsible=box.responsible,
                    description=box.description,
                    service=box.service,
                    list_rouge=box.list_rouge,
                    rank=box.rank,
                ),
                **changes,  # type: ignore[arg-type]  # the keys are checked above
            ).validate()
            conn.execute(
                update(mailboxes)
                .where(mailboxes.c.id == box.id)
                .values(**changes, updated_at=utcnow())
            )
            traces.record(
                conn, "mailbox.update", mailbox=box.address, actor=actor, detail=",".join(changes)
            )
            after = self.get_in(conn, address)
            if self.directory_hook is not None and after.status is not MailboxStatus.CLOSED:
                self.directory_hook(conn, after, "replace")
            return after

    def set_password(self, login: str, password: str, *, actor: str = "cli") -> None:
        with self.db.write() as conn:
            result = conn.execute(
                update(users)
                .where(users.c.login == login.lower())
                .values(password_hash=hash_password(password))
            )
            if result.rowcount == 0:
                raise NotFound(f"no login {login}")
            traces.record(conn, "user.password", actor=actor, detail=login.lower())

    def add_member(self, address: str, login: str, *, actor: str = "cli") -> None:
        with self.db.write() as conn:
            box = self.get_in(conn, address)
            if box.type is not MailboxType.ORG and box.type is not MailboxType.CAB:
                raise RuleViolation("only ORG and CAB mailboxes have members")
            user = conn.execute(select(users.c.id).where(users.c.login == login.lower())).first()
            if user is None:
                raise NotFound(f"no login {login}")
            if conn.execute(
                select(mailbox_members.c.user_id).where(
                    mailbox_members.c.mailbox_id == box.id, mailbox_members.c.user_id == user.id
                )
            ).first():
                raise AlreadyExists(f"{login} is already a member of {box.address}")
            conn.execute(
                insert(mailbox_members).values(
                    mailbox_id=box.id, user_id=user.id, added_at=utcnow()
                )
            )
            traces.record(
                conn, "mailbox.member.add", mailbox=box.address, actor=actor, detail=login
            )

    def remove_member(self, address: str, login: str, *, actor: str = "cli") -> None:
        """Withdraw a member: open IMAP sessions lose access at their next command."""
        with self.db.write() as conn:
            box = self.get_in(conn, address)
            user = conn.execute(select(users.c.id).where(users.c.login == login.lower())).first()
            if user is None:
                raise NotFound(f"no login {login}")
            result = conn.execute(
                delete(mailbox_members).where(
                    mailbox_members.c.mailbox_id == box.id, mailbox_members.c.user_id == user.id
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"{login} is not a member of {box.address}")
            traces.record(
                conn, "mailbox.member.remove", mailbox=box.address, actor=actor, detail=login
            )

    def members(self, address: str) -> list[str]:
        with self.db.read() as conn:
            box = self.get_in(conn, address)
            rows = conn.execute(
                select(users.c.login)
                .join(mailbox_members, mailbox_members.c.user_id == users.c.id)
                .where(mailbox_members.c.mailbox_id == box.id)
                .order_by(users.c.login)
            )
            return [r.login for r in rows]

    def count(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(mailboxes)).scalar_one())

    def mailboxes_for_id_nat_ps(self, id_nat_ps: str) -> list[Mailbox]:
        """The BALs a professional known by idNat_PS acts on (R15), whatever their status.

        The PER BALs bound to that idNat_PS, and the ORG (and CAB) BALs of which an active
        user with that idNat_PS is a member.
        """
        member_of = (
            select(mailbox_members.c.mailbox_id)
            .join(users, users.c.id == mailbox_members.c.user_id)
            .where(users.c.id_nat_ps == id_nat_ps, users.c.status == "active")
        )
        own = (mailboxes.c.type == MailboxType.PER.value) & (mailboxes.c.id_nat_ps == id_nat_ps)
        shared = mailboxes.c.type.in_(
            [MailboxType.ORG.value, MailboxType.CAB.value]
        ) & mailboxes.c.id.in_(member_of)
        query = select(mailboxes).where(own | shared).order_by(mailboxes.c.address)
        with self.db.read() as conn:
            return [Mailbox.from_row(r) for r in conn.execute(query)]

    # -- principals -------------------------------------------------------------------

    def authenticate(self, login: str, password: str) -> Principal | None:
        """Password check; None on any failure (the reason is never told to the peer).

        Neither throttled nor traced, and it refuses users with a second factor: listeners
        use `AuthService.login_password` (services/auth.py) instead.
        """
        with self.db.read() as conn:
            row = conn.execute(select(users).where(users.c.login == login.strip().lower())).first()
        ok = verify_password(row.password_hash if row else None, password)
        if not ok or row is None or row.status != "active" or row.totp_secret:
            return None
        return Principal(user_id=row.id, login=row.login, kind=row.kind, id_nat_ps=row.id_nat_ps)

    def check_can_send_as(self, principal: Principal, address: str) -> Mailbox:
        """The principal owns the BAL, or is a member of it (ORG/CAB); else NotAMember.

        A professional known by idNat_PS (a PSC token, R15) acts on the PER BALs bound to
        that idNat_PS and on the ORG BALs of which a user with that idNat_PS is a member.
        """
        with self.db.read() as conn:
            try:
                box = self.get_in(conn, address)
            except NotFound:
                raise NotAMember(f"{principal.login} may not send as {address}") from None
            if box.owner_user_id == principal.user_id:
                return box
            if principal.id_nat_ps and box.type is MailboxType.PER:
                if box.id_nat_ps == principal.id_nat_ps:
                    return box
            member = select(mailbox_members.c.user_id).where(mailbox_members.c.mailbox_id == box.id)
            if principal.id_nat_ps:
                member = member.join(users, users.c.id == mailbox_members.c.user_id).where(
                    (mailbox_members.c.user_id == principal.user_id)
                    | (users.c.id_nat_ps == principal.id_nat_ps)
                )
            else:
                member = member.where(mailbox_members.c.user_id == principal.user_id)
            if conn.execute(member).first():
                return box
        raise NotAMember(f"{principal.login} may not send as {address}")

    def principal_for_id_nat_ps(self, id_nat_ps: str) -> Principal | None:
        """The professional behind a PSC token (R15), or None when unknown here."""
        with self.db.read() as conn:
            row = conn.execute(
                select(users)
                .where(
                    users.c.id_nat_ps == id_nat_ps,
                    users.c.kind == "professional",
                    users.c.status == "active",
                )
                .order_by(users.c.id)
                .limit(1)
            ).first()
        if row is None:
            return None
        return Principal(user_id=row.id, login=row.login, kind=row.kind, id_nat_ps=row.id_nat_ps)
