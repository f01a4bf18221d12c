"""Mailboxes (BAL) and their rules, SPEC §3 / R46 (IG-MSS `AsBalMssLogicalModels`).

Pure rules, no I/O: the services load and save, this module decides.
- type ∈ {PER, ORG, APP, CAB} (TRE_R257), immutable; the address is unique and immutable;
- PER is bound to an idNat_PS (`identifiantPP`); ORG and APP to an idNat_Struct with a
  responsible person; CAB to an idNat_Struct (a practice) and, optionally, a professional;
- life cycle: active → suspended → active, active|suspended → closed, closed is final.
  A closed BAL keeps its traces and messages and refuses mail (5.2.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from mssante.domain.errors import (
    ImmutableField,
    InvalidAddress,
    InvalidLifecycleTransition,
    MailboxClosed,
    MailboxSuspended,
    RuleViolation,
)
from mssante.domain.identifiers import parse_idnat_ps, parse_idnat_struct


class MailboxType(StrEnum):
    """TRE_R257 mailbox types."""

    PER = "PER"  # personal: one professional
    ORG = "ORG"  # organisational: shared by the team of a structure
    APP = "APP"  # applicative: software (DUI, LPS) without a human
    CAB = "CAB"  # practice (cabinet)


class MailboxStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


_TRANSITIONS: dict[MailboxStatus, frozenset[MailboxStatus]] = {
    MailboxStatus.ACTIVE: frozenset({MailboxStatus.SUSPENDED, MailboxStatus.CLOSED}),
    MailboxStatus.SUSPENDED: frozenset({MailboxStatus.ACTIVE, MailboxStatus.CLOSED}),
    MailboxStatus.CLOSED: frozenset(),
}

# RFC 5321 §4.1.2 dot-atom local part, restricted to the ASCII the trust space uses.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATEXT}(\.{_ATEXT})*", re.ASCII)
_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.ASCII)


def split_address(address: str) -> tuple[str, str]:
    """Validate an address and return (local part, lower-case domain).

    Local parts keep their case (RFC 5321 §2.4) but mailboxes are looked up
    case-insensitively, as every MSSanté operator does.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"{address!r} is not an email address")
    if len(local) > 64:  # RFC 5321 §4.5.3.1.1
        raise InvalidAddress("local part longer than 64 octets")
    if not _LOCAL.fullmatch(local):
        raise InvalidAddress(f"invalid local part {local!r}")
    if not domain.isascii():  # before lower(): "\u212a".lower() is "k"
        raise InvalidAddress(f"invalid domain {domain!r}")
    domain = domain.lower().rstrip(".")
    if not _DOMAIN.fullmatch(domain):
        raise InvalidAddress(f"invalid domain {domain!r}")
    return local, domain


def normalise_address(address: str) -> str:
    local, domain = split_address(address)
    return f"{local.lower()}@{domain}"


@dataclass(frozen=True)
class MailboxSpec:
    """What is needed to create a mailbox; `validate` applies R46."""

    address: str
    type: MailboxType
    id_nat_ps: str | None = None
    id_nat_struct: str | None = None
    responsible: str | None = None
    description: str | None = None
    service: str | None = None
    list_rouge: bool = False
    rank: int = 1
    hosted_domains: tuple[str, ...] = field(default=())

    def validate(self) -> MailboxSpec:
        """Return the normalised spec, or raise the first rule it breaks."""
        address = normalise_address(self.address)
        domain = address.rpartition("@")[2]
        if self.hosted_domains and domain not in self.hosted_domains:
            raise RuleViolation(
                f"domain {domain} is not hosted here ({', '.join(self.hosted_domains)})"
            )
        if self.rank < 1:
            raise RuleViolation("rank must be an integer ≥ 1")
        id_ps = parse_idnat_ps(self.id_nat_ps).value if self.id_nat_ps else None
        id_struct = parse_idnat_struct(self.id_nat_struct).value if self.id_nat_struct else None
        if self.type is MailboxType.PER:
            if not id_ps:
                raise RuleViolation("a PER mailbox is bound to a professional (idNat_PS)")
        elif self.type in (MailboxType.ORG, MailboxType.APP):
            if not id_struct:
                raise RuleViolation(
                    f"an {self.type} mailbox is bound to a structure (idNat_Struct)"
                )
            if not (self.responsible and self.responsible.strip()):
                raise RuleViolation(f"an {self.type} mailbox needs a responsible person")
        elif self.type is MailboxType.CAB and not id_struct:
            raise RuleViolation("a CAB mailbox is bound to a practice (idNat_Struct)")
        # IG-MSS metadata: description for ORG/APP/CAB, service and responsible for ORG/APP.
        if self.type is MailboxType.PER and self.description:
            raise RuleViolation("a PER mailbox has no description (ORG, APP, CAB only)")
        if self.type in (MailboxType.PER, MailboxType.CAB) and (self.service or self.responsible):
            raise RuleViolation(
                f"a {self.type} mailbox has no service or responsible person (ORG, APP only)"
            )
        return MailboxSpec(
            address=address,
            type=self.type,
            id_nat_ps=id_ps,
            id_nat_struct=id_struct,
            responsible=self.responsible.strip() if self.responsible else None,
            description=self.description,
            service=self.service,
            list_rouge=self.list_rouge,
            rank=self.rank,
            hosted_domains=self.hosted_domains,
        )


def check_transition(current: MailboxStatus, target: MailboxStatus) -> None:
    if target == current:
        raise InvalidLifecycleTransition(f"the mailbox is already {current}")
    if target not in _TRANSITIONS[current]:
        raise InvalidLifecycleTransition(f"a {current} mailbox cannot become {target}")


def check_accepts_mail(address: str, status: MailboxStatus) -> None:
    """A closed BAL refuses mail for good (5.2.1), a suspended one for now (4.2.1)."""
    if status is MailboxStatus.CLOSED:
        raise MailboxClosed(f"mailbox {address} is closed")
    if status is MailboxStatus.SUSPENDED:
        raise MailboxSuspended(f"mailbox {address} is suspended")


IMMUTABLE_FIELDS = frozenset({"address", "type"})


def check_update(changes: dict[str, object]) -> None:
    """Address and type never change (R46)."""
    bad = sorted(IMMUTABLE_FIELDS.intersection(changes))
    if bad:
        raise ImmutableField(f"{', '.join(bad)} of a mailbox cannot be changed (R46)")


DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)
