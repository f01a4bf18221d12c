"""The six ESSMS flows of DESIGN.md ("The actors, end to end"), as data.

Each use case names its senders and recipients (BAL type of TRE_R257, or ``MES`` for the
patient's Mon espace santé mailbox, and a structure category), the document types it
carries (JDV_J07 typeCodes, one principal), the channels it is sent through, and the
subject template of R41. The demo and the HTTP API read them from here; the data lives in
``mssante/data/use_cases.json``. Pure: no I/O except reading the packaged JSON.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

from mssante.domain.documents import document_subject, value_sets

BAL_TYPES = ("PER", "ORG", "APP", "CAB", "MES")


@dataclass(frozen=True)
class Party:
    """A sender or recipient kind: BAL type, structure category, optional role, and the
    suggested XDS facility type (JDV_J02) and practice setting (JDV_J04) of a sender."""

    bal_type: str
    structure: str
    label: str
    role: str | None = None
    facility_type: str | None = None
    practice_setting: str | None = None


@dataclass(frozen=True)
class DocumentUse:
    type_code: str
    principal: bool


@dataclass(frozen=True)
class UseCase:
    id: str
    label: str
    senders: tuple[Party, ...]
    recipients: tuple[Party, ...]
    documents: tuple[DocumentUse, ...]
    channels: tuple[str, ...]
    subject_template: str
    note: str | None = None

    @property
    def type_codes(self) -> list[str]:
        return [d.type_code for d in self.documents]

    @property
    def principal_type_code(self) -> str:
        return next(d.type_code for d in self.documents if d.principal)

    def subject(self, family: str, given: str, birth_date: date, libelle: str | None = None) -> str:
        """R41 subject; the label defaults to the JDV_J07 display of the principal type."""
        if libelle is None:
            code = value_sets().lookup("J07", self.principal_type_code)
            libelle = code.display if code else self.principal_type_code
        return document_subject(libelle, family, given, birth_date)


def _party(entry: dict[str, Any]) -> Party:
    if entry["bal_type"] not in BAL_TYPES:
        raise ValueError(f"use_cases.json: unknown BAL type {entry['bal_type']!r}")
    return Party(
        entry["bal_type"],
        entry["structure"],
        entry["label"],
        entry.get("role"),
        entry.get("facility_type"),
        entry.get("practice_setting"),
    )


@functools.cache
def _load() -> dict[str, UseCase]:
    text = resources.files("mssante.data").joinpath("use_cases.json").read_text("utf-8")
    document = json.loads(text)
    template = document["header"]["subject_template"]
    cases: dict[str, UseCase] = {}
    for entry in document["use_cases"]:
        documents = tuple(
            DocumentUse(d["type_code"], bool(d["principal"])) for d in entry["documents"]
        )
        if sum(d.principal for d in documents) != 1:
            raise ValueError(f"use case {entry['id']!r} needs exactly one principal document")
        if entry["id"] in cases:
            raise ValueError(f"use case {entry['id']!r} listed twice")
        cases[entry["id"]] = UseCase(
            id=entry["id"],
            label=entry["label"],
            senders=tuple(_party(p) for p in entry["senders"]),
            recipients=tuple(_party(p) for p in entry["recipients"]),
            documents=documents,
            channels=tuple(entry["channels"]),
            subject_template=template,
            note=entry.get("note"),
        )
    return cases


def all_use_cases() -> list[UseCase]:
    """The six flows, in the order of DESIGN.md."""
    return list(_load().values())


def use_case(use_case_id: str) -> UseCase:
    """One flow by id; KeyError when unknown."""
    try:
        return _load()[use_case_id]
    except KeyError:
        raise KeyError(f"unknown use case {use_case_id!r}") from None


def channels() -> dict[str, str]:
    """The channel names used by the use cases, with their French description."""
    text = resources.files("mssante.data").joinpath("use_cases.json").read_text("utf-8")
    return dict(json.loads(text)["header"]["channels"])
