"""Folders and messages as IMAP sees them (RFC 3501/9051, CONDSTORE/QRESYNC RFC 7162).

Every call takes the authenticated `Principal` and checks, in the same transaction, that it
may still use the mailbox: a member removed from an ORG BAL loses access at the next
command of an open session (issue 4 §4). Names: the principal's own mailbox is the personal
namespace (`INBOX`, `Sent`, …); every other mailbox it may use (ORG/CAB memberships, other
PER BALs of the same idNat_PS) appears under `Partages/<address>/` (RFC 2342 shared
namespace). On ORG and CAB mailboxes `\\Seen` is kept per user (issue 4 §4); other flags
are shared. Every flag change, append and expunge bumps the folder's HIGHESTMODSEQ.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update

from mssante.domain.errors import AlreadyExists, NotAMember, NotFound, RuleViolation
from mssante.domain.mailboxes import MailboxStatus, MailboxType
from mssante.services.changes import ChangeBus
from mssante.services.mailboxes import Principal
from mssante.services.ports import BlobStore
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema import (
    expunged,
    folders,
    mailbox_members,
    mailboxes,
    messages,
    subscriptions,
    user_seen,
    users,
)
from mssante.storage.upsert import record_blob

SHARED_PREFIX = "Partages"
DELIMITER = "/"
SEEN = "\\Seen"
DELETED = "\\Deleted"
PER_USER_SEEN = (MailboxType.ORG.value, MailboxType.CAB.value)


@dataclass(frozen=True)
class Folder:
    id: int
    mailbox_id: int
    mailbox_address: str
    mailbox_type: str
    name: str  # name inside the mailbox ("INBOX", "Sent", "Projets/2026")
    imap_name: str  # as the principal sees it
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int

    @property
    def per_user_seen(self) -> bool:
        return self.mailbox_type in PER_USER_SEEN


@dataclass(frozen=True)
class MessageMeta:
    id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    size: int
    internal_date: datetime
    blob_digest: str


@dataclass(frozen=True)
class FolderStatus:
    messages: int
    unseen: int
    deleted: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int


def _flags(text: str) -> frozenset[str]:
    return frozenset(f for f in text.split(" ") if f)


def _text(flags: Iterable[str]) -> str:
    return " ".join(sorted(set(flags)))


class MailStore:
    def __init__(self, db: Database, blob_store: BlobStore, bus: ChangeBus) -> None:
        self.db = db
        self.blobs = blob_store
        self.bus = bus

    # -- which mailboxes a principal may use --------------------------------------------

    def _mailboxes(
        self, conn: Connection, principal: Principal
    ) -> list[tuple[int, str, str, bool]]:
        """(mailbox id, address, type, personal?) for every active mailbox it may use."""
        member_ids = select(mailbox_members.c.mailbox_id).join(
            users, users.c.id == mailbox_members.c.user_id
        )
        if principal.id_nat_ps:
            member_ids = member_ids.where(
                or_(users.c.id == principal.user_id, users.c.id_nat_ps == principal.id_nat_ps)
            )
        else:
            member_ids = member_ids.where(users.c.id == principal.user_id)
        conditions = [
            mailboxes.c.owner_user_id == principal.user_id,
            mailboxes.c.id.in_(member_ids),
        ]
        if principal.id_nat_ps:
            conditions.append(
                and_(
                    mailboxes.c.type == MailboxType.PER.value,
                    mailboxes.c.id_nat_ps == principal.id_nat_ps,
                )
            )
        rows = conn.execute(
            select(mailboxes.c.id, mailboxes.c.address, mailboxes.c.type, mailboxes.c.owner_user_id)
            .where(or_(*conditions), mailboxes.c.status != MailboxStatus.CLOSED.value)
            .order_by(mailboxes.c.address)
        )
        return [(r.id, r.address, r.type, r.owner_user_id == principal.user_id) for r in rows]

    def folders_for(self, principal: Principal) -> list[Folder]:
        with self.db.read() as conn:
            return self._folders(conn, principal)

    def _folders(self, conn: Connection, principal: Principal) -> list[Folder]:
        boxes = {m[0]: m for m in self._mailboxes(conn, principal)}
        if not boxes:
            return []
        out = []
        for row in conn.execute(
            select(folders).where(folders.c.mailbox_id.in_(boxes)).order_by(folders.c.id)
        ):
            _, address, type_, personal = boxes[row.mailbox_id]
            imap_name = row.name if personal else DELIMITER.join((SHARED_PREFIX, address, row.name))
            out.append(
                Folder(
                    id=row.id, mailbox_id=row.mailbox_id, mailbox_address=address,
                    mailbox_type=type_, name=row.name, imap_name=imap_name,
                    special_use=row.special_use if personal else None,
                    uidvalidity=int(row.uidvalidity), uidnext=int(row.uidnext),
                    highestmodseq=int(row.highestmodseq),
                )
            )  # fmt: skip
        return out

    def resolve(
        self, principal: Principal, imap_name: str, conn: Connection | None = None
    ) -> Folder:
        """The folder behind an IMAP name, checked against the principal's rights now."""
        wanted = "INBOX" if imap_name.upper() == "INBOX" else imap_name
        if conn is None:
            with self.db.read() as c:
                return self.resolve(principal, imap_name, c)
        for folder in self._folders(conn, principal):
            if folder.imap_name == wanted:
                return folder
        raise NotFound(f"no folder {imap_name}")

    def check(self, principal: Principal, folder: Folder) -> Folder:
        """Re-check access to a selected folder and return its fresh counters."""
        with self.db.read() as conn:
            for current in self._folders(conn, principal):
                if current.id == folder.id:
                    return current
        raise NotAMember("access to this mailbox was withdrawn")

    # -- reading -------------------------------------------------------------------------

    def messages(self, principal: Principal, folder: Folder) -> list[MessageMeta]:
        """Every message of the folder in UID order, with the principal's view of \\Seen."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(messages).where(messages.c.folder_id == folder.id).order_by(messages.c.uid)
            ).all()
            seen: set[int] = set()
            if folder.per_user_seen:
                seen = {
                    r.message_id
                    for r in conn.execute(
                        select(user_seen.c.message_id)
                        .join(messages, messages.c.id == user_seen.c.message_id)
                        .where(
                            messages.c.folder_id == folder.id,
                            user_seen.c.user_id == principal.user_id,
                        )
                    )
                }
        out = []
        for r in rows:
            flags = _flags(r.flags)
            if folder.per_user_seen:
                flags = (flags - {SEEN}) | ({SEEN} if r.id in seen else set())
            out.append(
                MessageMeta(
                    id=r.id, uid=int(r.uid), modseq=int(r.modseq), flags=flags,
                    size=int(r.size), internal_date=as_utc(r.internal_date) or utcnow(),
                    blob_digest=r.blob_digest,
                )
            )  # fmt: skip
        return out

    def read(self, meta: MessageMeta) -> bytes:
        return self.blobs.get(meta.blob_digest)

    def status(self, principal: Principal, folder: Folder) -> FolderStatus:
        metas = self.messages(principal, folder)
        fresh = self.check(principal, folder)
        return FolderStatus(
            messages=len(metas),
            unseen=sum(1 for m in metas if SEEN not in m.flags),
            deleted=sum(1 for m in metas if DELETED in m.flags),
            size=sum(m.size for m in metas),
            uidnext=fresh.uidnext,
            uidvalidity=fresh.uidvalidity,
            highestmodseq=fresh.highestmodseq,
        )

    def vanished_since(self, folder: Folder, modseq: int) -> list[int]:
        """UIDs expunged after `modseq` (RFC 7162 §3.2.5.1, QRESYNC VANISHED (EARLIER))."""
        with self.db.read() as conn:
            return [
                int(r.uid)
                for r in conn.execute(
                    select(expunged.c.uid)
                    .where(expunged.c.folder_id == folder.id, expunged.c.modseq > modseq)
                    .order_by(expunged.c.uid)
                )
            ]

    # -- changing ------------------------------------------------------------------------

    def _bump(self, conn: Connection, folder_id: int) -> int:
        row = conn.execute(
            update(folders)
            .where(folders.c.id == folder_id)
            .values(highestmodseq=folders.c.highestmodseq + 1)
            .returning(folders.c.highestmodseq)
        ).one()
        self.bus.touched(conn, folder_id)
        return int(row.highestmodseq)

    def store_flags(
        self,
        principal: Principal,
        folder: Folder,
        uids: Sequence[int],
        mode: str,
        flags: Iterable[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[tuple[int, frozenset[str], int]], list[int]]:
        """STORE (RFC 3501 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).

        Returns (changed: [(uid, new flags, modseq)], failed uids for UNCHANGEDSINCE)."""
        wanted = frozenset(flags)
        changed: list[tuple[int, frozenset[str], int]] = []
        failed: list[int] = []
        current = {m.uid: m for m in self.messages(principal, folder)}
        with self.db.write() as conn:
            self._require(conn, principal, folder)
            for uid in uids:
                meta = current.get(uid)
                if meta is None:
                    continue
                if unchanged_since is not None and meta.modseq > unchanged_since:
                    failed.append(uid)
                    continue
                new = {"add": meta.flags | wanted, "remove": meta.flags - wanted}.get(mode, wanted)
                if new == meta.flags:
                    continue
                modseq = self._bump(conn, folder.id)
                shared = set(new)
                if folder.per_user_seen:
                    shared.discard(SEEN)
                    conn.execute(
                        delete(user_seen).where(
                            user_seen.c.message_id == meta.id,
                            user_seen.c.user_id == principal.user_id,
                        )
                    )
                    if SEEN in new:
                        conn.execute(
                            insert(user_seen).values(
                                message_id=meta.id, user_id=principal.user_id, modseq=modseq
                            )
                        )
                conn.execute(
                    update(messages)
                    .where(messages.c.id == meta.id)
                    .values(flags=_text(shared), modseq=modseq)
                )
                changed.append((uid, frozenset(new), modseq))
        return changed, failed

    def append(
        self,
        principal: Principal,
        folder: Folder,
        data: bytes,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> int:
        ref = self.blobs.put(data)
        with self.db.write() as conn:
            self._require(conn, principal, folder)
            record_blob(conn, ref.digest, ref.size, ref.key_id)
            # Stored in UTC: SQLite keeps no zone, and the instant is what IMAP needs.
            when = internal_date.astimezone(UTC) if internal_date else utcnow()
            return self._insert(
                conn, principal, folder, ref.digest, ref.size, frozenset(flags), when,
                message_id=None,
            )  # fmt: skip

    def _insert(
        self, conn: Connection, principal: Principal, folder: Folder, digest: str, size: int,
        flags: frozenset[str], internal_date: datetime, message_id: str | None,
    ) -> int:  # fmt: skip
        row = conn.execute(
            update(folders)
            .where(folders.c.id == folder.id)
            .values(uidnext=folders.c.uidnext + 1, highestmodseq=folders.c.highestmodseq + 1)
            .returning(folders.c.uidnext, folders.c.highestmodseq)
        ).one()
        uid, modseq = int(row.uidnext) - 1, int(row.highestmodseq)
        shared = flags - {SEEN} if folder.per_user_seen else flags
        new_id = conn.execute(
            insert(messages).values(
                folder_id=folder.id,
                uid=uid,
                modseq=modseq,
                envelope_id=None,
                blob_digest=digest,
                size=size,
                message_id=message_id,
                internal_date=internal_date,
                flags=_text(shared),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        if folder.per_user_seen and SEEN in flags:
            conn.execute(
                insert(user_seen).values(
                    message_id=new_id, user_id=principal.user_id, modseq=modseq
                )
            )
        self.bus.touched(conn, folder.id)
        return uid

    def copy(
        self, principal: Principal, source: Folder, uids: Sequence[int], target: Folder
    ) -> list[tuple[int, int]]:
        """COPY (RFC 3501 §6.4.7); returns (source uid, new uid) pairs for COPYUID."""
        metas = {m.uid: m for m in self.messages(principal, source)}
        pairs = []
        with self.db.write() as conn:
            self._require(conn, principal, source)
            self._require(conn, principal, target)
            for uid in uids:
                meta = metas.get(uid)
                if meta is None:
                    continue
                new_uid = self._insert(
                    conn, principal, target, meta.blob_digest, meta.size, meta.flags,
                    meta.internal_date, message_id=None,
                )  # fmt: skip
                pairs.append((uid, new_uid))
        return pairs

    def expunge(self, principal: Principal, folder: Folder, uids: Sequence[int] | None = None,
                *, only_deleted: bool = True) -> list[int]:  # fmt: skip
        """Remove messages flagged \\Deleted (limited to `uids` for UID EXPUNGE, RFC 4315)."""
        metas = self.messages(principal, folder)
        allowed = set(uids) if uids is not None else None
        doomed = [
            m for m in metas
            if (not only_deleted or DELETED in m.flags) and (allowed is None or m.uid in allowed)
        ]  # fmt: skip
        if not doomed:
            return []
        with self.db.write() as conn:
            self._require(conn, principal, folder)
            modseq = self._bump(conn, folder.id)
            ids = [m.id for m in doomed]
            conn.execute(delete(user_seen).where(user_seen.c.message_id.in_(ids)))
            conn.execute(delete(messages).where(messages.c.id.in_(ids)))
            conn.execute(
                insert(expunged),
                [{"folder_id": folder.id, "uid": m.uid, "modseq": modseq} for m in doomed],
            )
        return [m.uid for m in doomed]

    def move(
        self, principal: Principal, source: Folder, uids: Sequence[int], target: Folder
    ) -> list[tuple[int, int]]:
        """MOVE (RFC 6851): copy then expunge the originals, whatever their flags."""
        pairs = self.copy(principal, source, uids, target)
        self.expunge(principal, source, [p[0] for p in pairs], only_deleted=False)
        return pairs

    def _require(self, conn: Connection, principal: Principal, folder: Folder) -> None:
        if all(m[0] != folder.mailbox_id for m in self._mailboxes(conn, principal)):
            raise NotAMember("access to this mailbox was withdrawn")

    # -- folder management ----------------------------------------------------------------

    def _own_mailbox(
        self, conn: Connection, principal: Principal, imap_name: str
    ) -> tuple[int, str]:
        """(mailbox id, name inside it) for a name to create, rename or delete."""
        if imap_name.startswith(SHARED_PREFIX + DELIMITER):
            rest = imap_name[len(SHARED_PREFIX) + 1 :]
            for mid, address, _type, _personal in self._mailboxes(conn, principal):
                if rest.startswith(address + DELIMITER):
                    return mid, rest[len(address) + 1 :]
            raise NotFound(f"no shared mailbox for {imap_name}")
        own = [m for m in self._mailboxes(conn, principal) if m[3]]
        if not own:
            raise NotFound("no personal mailbox")
        return own[0][0], imap_name

    def create_folder(
        self, principal: Principal, imap_name: str, special_use: str | None = None
    ) -> None:
        if not imap_name or imap_name.upper() == "INBOX" or imap_name.endswith(DELIMITER):
            raise RuleViolation("invalid folder name")
        with self.db.write() as conn:
            mailbox_id, name = self._own_mailbox(conn, principal, imap_name.rstrip(DELIMITER))
            exists = conn.execute(
                select(folders.c.id).where(
                    folders.c.mailbox_id == mailbox_id, folders.c.name == name
                )
            ).first()
            if exists:
                raise AlreadyExists(f"{imap_name} already exists")
            conn.execute(
                insert(folders).values(
                    mailbox_id=mailbox_id, name=name, special_use=special_use,
                    uidvalidity=secrets.randbelow(2**31 - 1) + 1, uidnext=1, highestmodseq=1,
                )
            )  # fmt: skip

    def delete_folder(self, principal: Principal, imap_name: str) -> None:
        with self.db.write() as conn:
            folder = self.resolve(principal, imap_name, conn)
            if folder.name == "INBOX" or folder.special_use:
                raise RuleViolation("INBOX and special-use folders cannot be deleted")
            ids = select(messages.c.id).where(messages.c.folder_id == folder.id)
            conn.execute(delete(user_seen).where(user_seen.c.message_id.in_(ids)))
            conn.execute(delete(messages).where(messages.c.folder_id == folder.id))
            conn.execute(delete(expunged).where(expunged.c.folder_id == folder.id))
            conn.execute(delete(folders).where(folders.c.id == folder.id))
            self.bus.touched(conn, folder.id)

    def rename_folder(self, principal: Principal, old: str, new: str) -> None:
        with self.db.write() as conn:
            folder = self.resolve(principal, old, conn)
            mailbox_id, name = self._own_mailbox(conn, principal, new)
            if mailbox_id != folder.mailbox_id:
                raise RuleViolation("a folder cannot move to another mailbox")
            if folder.name == "INBOX":
                raise RuleViolation("renaming INBOX is not supported")
            taken = conn.execute(
                select(folders.c.id).where(
                    folders.c.mailbox_id == mailbox_id, folders.c.name == name
                )
            ).first()
            if taken:
                raise AlreadyExists(f"{new} already exists")
            prefix = folder.name + DELIMITER
            children = conn.execute(
                select(folders.c.id, folders.c.name).where(
                    folders.c.mailbox_id == mailbox_id, folders.c.name.startswith(prefix)
                )
            ).all()
            conn.execute(update(folders).where(folders.c.id == folder.id).values(name=name))
            for child in children:
                conn.execute(
                    update(folders)
                    .where(folders.c.id == child.id)
                    .values(name=name + DELIMITER + child.name[len(prefix) :])
                )

    def subscriptions(self, principal: Principal) -> set[str]:
        """LSUB / LIST (SUBSCRIBED): the names the principal subscribed to (RFC 3501 §6.3.6).

        New mailboxes start with their special-use folders subscribed (`create_mailbox`)."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(subscriptions.c.name).where(subscriptions.c.user_id == principal.user_id)
            )
            return {r.name for r in rows}

    def subscribe(self, principal: Principal, name: str, on: bool) -> None:
        with self.db.write() as conn:
            conn.execute(
                delete(subscriptions).where(
                    subscriptions.c.user_id == principal.user_id, subscriptions.c.name == name
                )
            )
            if on:
                conn.execute(insert(subscriptions).values(user_id=principal.user_id, name=name))

    def mailbox_usage(self, mailbox_id: int) -> int:
        """Octets stored in a mailbox (QUOTA, RFC 9208 STORAGE)."""
        with self.db.read() as conn:
            return int(
                conn.execute(
                    select(func.coalesce(func.sum(messages.c.size), 0))
                    .join(folders, folders.c.id == messages.c.folder_id)
                    .where(folders.c.mailbox_id == bindparam("m"))
                    , {"m": mailbox_id}
                ).scalar_one()
            )  # fmt: skip
