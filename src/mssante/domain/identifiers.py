"""French health identifiers: parse, validate, format (SPEC §5, R31, R53–R59).

Pure functions, no I/O. Every checker first strips spaces and dots and upper-cases the value
(separators appear in published examples, see data/identifiers/identifier_rules.md).

Outcomes use the vocabulary of ``identifier_vectors.csv``: ``ok``, ``bad_length``,
``bad_format``, ``bad_key``. The ADELI Luhn key is a *soft* rule: observed on real values
only, and ANS test systems issue ADELI numbers that fail it. ``is_valid_adeli`` and
``check_identifier`` apply it (and say when it is the only failure); the parsers and builders,
which must accept what the ANS issues, apply it only with ``strict_adeli=True``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal, get_args

from mssante.domain.errors import InvalidIdentifier

# FHIR identifier systems (R59; IG-AS / IG-MSS).
SYSTEM_IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
SYSTEM_IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"
SYSTEM_FINESS = "https://finess.esante.gouv.fr"
SYSTEM_RPPS_RANG = "https://rpps.esante.gouv.fr"  # RPPS-rang structures (SPEC §4)
IDENTIFIER_TYPE_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
# INS OIDs (SPEC §5, unconfirmed; DRIMbox XDM example uses the test OID).
OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
OID_INS_TEST = "1.2.250.1.213.1.4.10"
SYSTEM_INS_NIR = f"urn:oid:{OID_INS_NIR}"
SYSTEM_INS_NIA = f"urn:oid:{OID_INS_NIA}"
SYSTEM_INS_TEST = f"urn:oid:{OID_INS_TEST}"

Outcome = Literal["ok", "bad_length", "bad_format", "bad_key"]
CorsicaMode = Literal["accept", "reject"]
# idNat_PS kinds in prefix order 8,0,1,3,4,5,6 (TRE_G08, EEDS PSIdNat.fsh): the *_STAFF kinds
# are "<structure id>/<internal id>" for staff without RPPS/ADELI.
PSKind = Literal[
    "RPPS", "ADELI", "CAB_ADELI_STAFF", "FINESS_STAFF", "SIREN_STAFF", "SIRET_STAFF",
    "CAB_RPPS_STAFF",
]  # fmt: skip
# idNat_Struct kinds in prefix order 0–4 (R55; TRE_G07, EEDS StructIdNat.fsh).
StructKind = Literal["ADELI_CABINET", "FINESS", "SIREN", "SIRET", "RPPS_RANG"]

LA_POSTE_SIREN = "356000000"
LA_POSTE_HEAD_OFFICE = "35600000000048"

_SEPARATORS = re.compile(r"[\s.]+")
_FINESS_XSD = re.compile(r"[0-9][0-9A-Z][0-9]{7}")  # ANS FINESS XSD, type typeNumeroFiness
_NIR_BODY = re.compile(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6}")  # R31: only 6–7 may be 2A/2B


def normalize(value: str) -> str:
    """Strip spaces and dots, upper-case (identifier_rules.md notes).

    Text after a ``/`` (the internal id of a staff idNat_PS) is only trimmed.
    """
    head, sep, internal = value.partition("/")
    return _SEPARATORS.sub("", head).upper() + sep + internal.strip()


# --- Luhn (python-stdnum stdnum.luhn) --------------------------------------------------------


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10


def luhn_check_digit(payload: str) -> str:
    """The Luhn digit to append to ``payload`` (digits only)."""
    if not payload.isdigit():
        raise InvalidIdentifier(f"Luhn payload must be digits, got {payload!r}")
    return str((10 - _luhn_sum(payload + "0")) % 10)


def _luhn_ok(digits: str) -> bool:
    return _luhn_sum(digits) == 0


# --- Verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verdict:
    outcome: Outcome
    reason: str
    soft: bool = False  # the only failure is a soft (observed-only) rule


def _ok(reason: str) -> _Verdict:
    return _Verdict("ok", reason)


def _shape(name: str, v: str, length: int, what: str = "digits") -> _Verdict | None:
    if len(v) != length:
        return _Verdict("bad_length", f"{name} must be {length} {what}, got {len(v)}")
    if what == "digits" and not v.isdigit():
        return _Verdict("bad_format", f"{name} must contain only digits, got {v!r}")
    return None


def _luhn_verdict(name: str, v: str, *, soft: bool = False) -> _Verdict:
    if _luhn_ok(v):
        return _ok(f"{name} {v} (Luhn key valid)")
    expected = luhn_check_digit(v[:-1])
    note = " (soft check: observed on real values only)" if soft else ""
    msg = f"{name} Luhn check digit mismatch: expected {expected}, got {v[-1]}{note}"
    return _Verdict("bad_key", msg, soft)


def _rpps(v: str) -> _Verdict:
    # R53: 11 digits, Luhn over all 11 (observed on every real/test RPPS; no ANS text).
    return _shape("RPPS", v, 11) or _luhn_verdict("RPPS", v)


def _adeli(v: str) -> _Verdict:
    # identifier_rules.md: 9 digits; Luhn observed only (soft), test systems issue failures.
    return _shape("ADELI", v, 9) or _luhn_verdict("ADELI", v, soft=True)


def _siren(v: str) -> _Verdict:
    # R57, python-stdnum stdnum.fr.siren: 9 digits, Luhn.
    return _shape("SIREN", v, 9) or _luhn_verdict("SIREN", v)


def _siret(v: str) -> _Verdict:
    # R57, python-stdnum stdnum.fr.siret: 14 digits, Luhn, SIREN part Luhn; La Poste exception.
    bad = _shape("SIRET", v, 14)
    if bad:
        return bad
    if v.startswith(LA_POSTE_SIREN) and v != LA_POSTE_HEAD_OFFICE:
        total = sum(map(int, v))
        if total % 5:
            msg = f"La Poste SIRET digit sum must be a multiple of 5, got {total}"
            return _Verdict("bad_key", msg)
        return _ok(f"SIRET {v} (La Poste establishment: digit sum {total} is a multiple of 5)")
    verdict = _luhn_verdict("SIRET", v)
    if verdict.outcome == "ok" and not _luhn_ok(v[:9]):
        return _Verdict("bad_key", f"SIRET's SIREN part {v[:9]} fails the Luhn check")
    return verdict


def _finess(v: str, corsica: CorsicaMode = "accept") -> _Verdict:
    # R56; shape from the ANS FINESS XSD (typeNumeroFiness); Luhn over all-numeric values.
    bad = _shape("FINESS", v, 9, "characters")
    if bad:
        return bad
    if not _FINESS_XSD.fullmatch(v):
        return _Verdict("bad_format", f"FINESS must match [0-9][0-9A-Z][0-9]{{7}}, got {v!r}")
    if v.isdigit():
        return _luhn_verdict("FINESS", v)
    # A letter in 2nd position is a département code: only Corsica 2A/2B exists.
    if v[:2] not in ("2A", "2B"):
        return _Verdict("bad_format", f"FINESS letter is only allowed in 2A/2B, got {v[:2]!r}")
    if corsica == "reject":
        return _Verdict("bad_format", f"Corsica FINESS {v} rejected (corsica='reject')")
    # No published key rule for 2A/2B FINESS (identifier_rules.md): accept without key check.
    return _ok(f"FINESS {v} (Corsica {v[:2]}; no published key rule, key not checked)")


def _nir(v: str) -> _Verdict:
    # R31/R58, python-stdnum stdnum.fr.nir: 13-char body + 2-digit key, 2A/2B at 6–7 only.
    bad = _shape("NIR", v, 15, "characters")
    if bad:
        return bad
    if not (_NIR_BODY.fullmatch(v[:13]) and v[13:].isdigit()):
        msg = f"NIR must be 15 digits (positions 6–7 may be 2A/2B), got {v!r}"
        return _Verdict("bad_format", msg)
    expected = nir_key(v[:13])
    if v[13:] != expected:
        return _Verdict("bad_key", f"NIR check key mismatch: expected {expected}, got {v[13:]}")
    return _ok(f"NIR {v} (key {expected} valid)")


# --- Public validators -----------------------------------------------------------------------


def is_valid_rpps(value: str) -> bool:
    """R53: 11 digits with a valid Luhn key."""
    return _rpps(normalize(value)).outcome == "ok"


def is_valid_adeli(value: str, *, check_key: bool = True) -> bool:
    """9 digits; the Luhn key (observed only, soft) is checked unless ``check_key=False``."""
    v = normalize(value)
    return _shape("ADELI", v, 9) is None and (not check_key or _luhn_ok(v))


def is_valid_finess(value: str, *, corsica: CorsicaMode = "accept") -> bool:
    """R56: XSD shape, Luhn over numeric values; Corsica 2A/2B accepted unchecked by default."""
    return _finess(normalize(value), corsica).outcome == "ok"


def is_valid_siren(value: str) -> bool:
    """R57: 9 digits, Luhn."""
    return _siren(normalize(value)).outcome == "ok"


def is_valid_siret(value: str) -> bool:
    """R57: 14 digits, Luhn, with the La Poste exception."""
    return _siret(normalize(value)).outcome == "ok"


def is_valid_nir(value: str) -> bool:
    """R31/R58: 15 chars and a valid key (INS matricule)."""
    return _nir(normalize(value)).outcome == "ok"


def nir_key(first13: str) -> str:
    """R58: ``97 − (N mod 97)`` with 2A→19, 2B→18, zero-padded to 2 digits."""
    body = normalize(first13)
    if not _NIR_BODY.fullmatch(body):
        raise InvalidIdentifier(
            f"NIR body must be 13 digits (positions 6–7 may be 2A/2B), got {body!r}"
        )
    number = int(body.replace("2A", "19", 1).replace("2B", "18", 1))
    return f"{97 - number % 97:02d}"


def _raise_unless_ok(verdict: _Verdict) -> None:
    if verdict.outcome != "ok":
        raise InvalidIdentifier(verdict.reason)


# --- idNat_PS (R54; TRE_G08, EEDS PSIdNat.fsh) -----------------------------------------------

_PS_KINDS: dict[str, PSKind] = dict(zip("8013456", get_args(PSKind), strict=True))
_PS_PREFIX = {kind: prefix for prefix, kind in _PS_KINDS.items()}
_STAFF_CHECKS: dict[str, Callable[[str], _Verdict]] = {"3": _finess, "4": _siren, "5": _siret}


@dataclass(frozen=True, slots=True)
class IdNatPS:
    """A national PS identifier: ``kind`` and the id after the 1-char prefix."""

    kind: PSKind
    local_id: str
    system: ClassVar[str] = SYSTEM_IDNAT_PS

    @property
    def prefix(self) -> str:
        return _PS_PREFIX[self.kind]

    @property
    def value(self) -> str:
        return self.prefix + self.local_id


def idnat_ps(rpps: str) -> str:
    """R54: ``"8" + RPPS`` (12 chars); raises InvalidIdentifier if the RPPS is invalid."""
    v = normalize(rpps)
    _raise_unless_ok(_rpps(v))
    return "8" + v


def idnat_ps_adeli(adeli: str, *, strict_adeli: bool = False) -> str:
    """R54: ``"0" + ADELI`` (10 chars); the ADELI Luhn key is checked only if strict."""
    v = normalize(adeli)
    verdict = _adeli(v)
    if not (verdict.soft and not strict_adeli):
        _raise_unless_ok(verdict)
    return "0" + v


def _ps_verdict(v: str) -> _Verdict:
    head, rest = v[:1], v[1:]
    kind = _PS_KINDS.get(head)
    if kind is None:
        return _Verdict("bad_format", f"idNat_PS prefix must be one of 0,1,3,4,5,6,8, got {head!r}")
    if kind == "RPPS":
        inner = _rpps(rest)
    elif kind == "ADELI":
        inner = _adeli(rest)
    else:
        struct, sep, internal = rest.partition("/")
        if not (sep and struct and internal):
            msg = f"idNat_PS prefix {head} ({kind}) must be <structure id>/<internal id>"
            return _Verdict("bad_format", f"{msg}, got {v!r}")
        check = _STAFF_CHECKS.get(head)  # cabinet ids: no published shape, not checked
        inner = check(struct) if check else _ok(struct)
    if inner.outcome != "ok":
        msg = f"idNat_PS prefix {head} ({kind}): {inner.reason}"
        return _Verdict(inner.outcome, msg, inner.soft)
    return _ok(f"idNat_PS of kind {kind} ({head} + {rest})")


def parse_idnat_ps(value: str, *, strict_adeli: bool = False) -> IdNatPS:
    """R54: the prefix gives the kind; the embedded id is checked (ADELI key only if strict)."""
    v = normalize(value)
    verdict = _ps_verdict(v)
    if verdict.outcome != "ok" and not (verdict.soft and not strict_adeli):
        raise InvalidIdentifier(verdict.reason)
    return IdNatPS(_PS_KINDS[v[0]], v[1:])


# --- idNat_Struct (R55; TRE_G07, EEDS StructIdNat.fsh) ---------------------------------------

_STRUCT_KINDS: dict[str, StructKind] = dict(zip("01234", get_args(StructKind), strict=True))
_STRUCT_PREFIX = {kind: prefix for prefix, kind in _STRUCT_KINDS.items()}


@dataclass(frozen=True, slots=True)
class IdNatStruct:
    """A national structure identifier: ``kind`` and the id after the 1-char prefix."""

    kind: StructKind
    local_id: str
    system: ClassVar[str] = SYSTEM_IDNAT_STRUCT

    @property
    def prefix(self) -> str:
        return _STRUCT_PREFIX[self.kind]

    @property
    def value(self) -> str:
        return self.prefix + self.local_id


def _rpps_rang(v: str) -> _Verdict:
    # R55: RPPS (11) + rang digits; IG Organization/548812 and PSC extraction show 3-digit rangs.
    if len(v) < 12:
        return _Verdict("bad_length", f"RPPS-rang must be 11 RPPS digits + rang, got {len(v)}")
    if not v.isdigit():
        return _Verdict("bad_format", f"RPPS-rang must contain only digits, got {v!r}")
    verdict = _rpps(v[:11])
    return verdict if verdict.outcome != "ok" else _ok(f"RPPS {v[:11]} rang {v[11:]}")


def _adeli_cabinet(v: str) -> _Verdict:
    # R55: "0 + Identifiant cabinet ADELI"; ADELI shape assumed, no key rule known.
    return _shape("ADELI cabinet id", v, 9) or _ok(f"ADELI cabinet {v} (key not checked)")


_STRUCT_CHECKS: dict[str, Callable[[str], _Verdict]] = dict(
    zip("01234", (_adeli_cabinet, _finess, _siren, _siret, _rpps_rang), strict=True)
)


def _struct_verdict(v: str, corsica: CorsicaMode = "accept") -> _Verdict:
    kind = _STRUCT_KINDS.get(v[:1])
    if kind is None:
        return _Verdict("bad_format", f"idNat_Struct prefix must be 0–4, got {v[:1]!r}")
    check = partial(_finess, corsica=corsica) if kind == "FINESS" else _STRUCT_CHECKS[v[0]]
    inner = check(v[1:])
    if inner.outcome != "ok":
        return _Verdict(inner.outcome, f"idNat_Struct prefix {v[0]} ({kind}): {inner.reason}")
    return _ok(f"idNat_Struct of kind {kind} ({v[0]} + {v[1:]})")


def parse_idnat_struct(value: str, *, corsica: CorsicaMode = "accept") -> IdNatStruct:
    """R55: the prefix gives the kind; the embedded id (FINESS, SIRET, RPPS…) is checked."""
    v = normalize(value)
    _raise_unless_ok(_struct_verdict(v, corsica))
    return IdNatStruct(_STRUCT_KINDS[v[0]], v[1:])


# --- CLI entry point: check_identifier --------------------------------------------------------

_CHECKERS: dict[str, Callable[[str], _Verdict]] = {
    "RPPS": _rpps,
    "ADELI": _adeli,
    "IDNPS": _ps_verdict,
    "FINESS": _finess,
    "SIREN": _siren,
    "SIRET": _siret,
    "IDNST": _struct_verdict,
    "NIR/INS": _nir,
}
_ALIASES = (
    dict.fromkeys(("IDNAT_PS", "IDNATPS", "IDNAT-PS"), "IDNPS")
    | dict.fromkeys(("IDNAT_STRUCT", "IDNATSTRUCT", "IDNAT-STRUCT"), "IDNST")
    | dict.fromkeys(("NIR", "INS", "INS-NIR", "NIR_INS"), "NIR/INS")
)
IDENTIFIER_TYPES: tuple[str, ...] = tuple(_CHECKERS)


@dataclass(frozen=True, slots=True)
class IdentifierCheck:
    """Result of ``check_identifier`` (CLI ``mssante identifier check``)."""

    type: str  # one of IDENTIFIER_TYPES, or "UNKNOWN" when the shape matches nothing
    value: str  # normalised
    valid: bool
    reason: str
    outcome: Outcome = "ok"
    soft: bool = False  # the only failure is the soft ADELI Luhn rule
    candidates: tuple[str, ...] = ()  # types considered when guessed, preferred first
    ambiguous: bool = False  # guessed, and valid under several types


def canonical_type(name: str) -> str:
    """Map a type name or alias (case-insensitive) to one of IDENTIFIER_TYPES."""
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    if key not in _CHECKERS:
        raise ValueError(f"unknown identifier type {name!r}; expected one of {IDENTIFIER_TYPES}")
    return key


def _guess_candidates(v: str) -> tuple[str, ...]:
    """Types whose shape fits ``v``, most likely first."""
    n, head = len(v), v[:1]
    if "/" in v:
        return ("IDNPS",)
    if n == 9:
        return ("FINESS",) if not v.isdigit() else ("FINESS", "SIREN", "ADELI")
    if n == 10:
        return {"0": ("IDNPS", "IDNST"), "1": ("IDNST",), "2": ("IDNST",)}.get(head, ())
    if n == 11:
        return ("RPPS",)
    if n == 12:
        return ("IDNPS",) if head == "8" else ("IDNST",) if head == "4" else ()
    if n == 13 and head != "4" and _NIR_BODY.fullmatch(v):
        return ("NIR/INS",)  # a NIR body without its key: report the missing key
    if n == 14:
        return ("SIRET",)
    if n == 15:
        if head in "34":
            return ("IDNST",)
        return ("NIR/INS",) if head in "1278" or v[5:7] in ("2A", "2B") else ()
    if n > 12 and head == "4":
        return ("IDNST",)
    return ()


def check_identifier(value: str, type: str | None = None) -> IdentifierCheck:
    """Check ``value`` as ``type`` (name or alias), or guess the type from its shape."""
    v = normalize(value)
    if type is not None:
        t = canonical_type(type)
        verdict = _CHECKERS[t](v)
        return IdentifierCheck(
            t, v, verdict.outcome == "ok", verdict.reason, verdict.outcome, verdict.soft
        )
    candidates = _guess_candidates(v)
    if not candidates:
        reason = f"unrecognised identifier shape ({len(v)} characters)"
        return IdentifierCheck("UNKNOWN", v, False, reason, "bad_format")
    verdicts = {t: _CHECKERS[t](v) for t in candidates}
    valid = [t for t in candidates if verdicts[t].outcome == "ok"]
    if valid:
        chosen, verdict = valid[0], verdicts[valid[0]]
        reason = verdict.reason + " (type guessed from shape)"
        rejected = [f"not {t}: {verdicts[t].reason}" for t in candidates if t not in valid]
        reason = "; ".join([reason, *rejected])
        if len(valid) > 1:
            reason = f"ambiguous: valid as {', '.join(valid)}; reported as {chosen}: " + reason
        return IdentifierCheck(chosen, v, True, reason, "ok", False, candidates, len(valid) > 1)
    chosen, verdict = candidates[0], verdicts[candidates[0]]
    reason = verdict.reason
    if len(candidates) > 1:
        reason = f"not valid as any of {', '.join(candidates)}; as {chosen}: {reason}"
    return IdentifierCheck(chosen, v, False, reason, verdict.outcome, verdict.soft, candidates)
