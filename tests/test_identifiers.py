"""Tests of mssante.domain.identifiers (SPEC R31, R53–R59)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssante.domain.errors import InvalidIdentifier
from mssante.domain.identifiers import (
    IDENTIFIER_TYPES,
    SYSTEM_FINESS,
    SYSTEM_IDNAT_PS,
    SYSTEM_IDNAT_STRUCT,
    IdNatPS,
    IdNatStruct,
    check_identifier,
    idnat_ps,
    idnat_ps_adeli,
    is_valid_adeli,
    is_valid_finess,
    is_valid_nir,
    is_valid_rpps,
    is_valid_siren,
    is_valid_siret,
    luhn_check_digit,
    nir_key,
    parse_idnat_ps,
    parse_idnat_struct,
)


def _shared_data() -> Path:
    override = os.environ.get("MSSANTE_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


VECTORS_CSV = _shared_data() / "identifiers" / "identifier_vectors.csv"


def _load_vectors() -> list[dict[str, str]]:
    with VECTORS_CSV.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


VECTORS = _load_vectors()

# Type name in the CSV -> the boolean validator of that type.
VALIDATORS = {
    "RPPS": is_valid_rpps,
    "ADELI": is_valid_adeli,
    "FINESS": is_valid_finess,
    "SIREN": is_valid_siren,
    "SIRET": is_valid_siret,
    "NIR/INS": is_valid_nir,
}


def _independent_luhn_ok(digits: str) -> bool:
    """A second Luhn implementation, written differently from the module's."""
    total = 0
    for i, ch in enumerate(digits[::-1]):
        d = int(ch)
        if i % 2 == 1:
            d = sum(divmod(d * 2, 10))
        total += d
    return total % 10 == 0


# --- The whole vectors CSV ------------------------------------------------------------------


def test_vectors_file_is_complete() -> None:
    assert len(VECTORS) == 99
    assert {r["identifier_type"] for r in VECTORS} <= set(IDENTIFIER_TYPES)


@pytest.mark.parametrize(
    "row",
    VECTORS,
    ids=[f"{i:02d}-{r['identifier_type']}-{r['value']}" for i, r in enumerate(VECTORS)],
)
def test_vector(row: dict[str, str]) -> None:
    expected = row["computed_check"]
    result = check_identifier(row["value"], row["identifier_type"])
    assert result.type == row["identifier_type"]
    assert " " not in result.value and "." not in result.value
    assert result.valid is (expected == "ok"), result.reason
    if expected in ("ok", "bad_key", "bad_format", "bad_length"):
        assert result.outcome == expected, result.reason
    else:
        assert expected == "bad"
        assert result.outcome != "ok"
    assert result.reason
    validator = VALIDATORS.get(row["identifier_type"])
    if validator is not None:
        assert validator(row["value"]) is (expected == "ok")


@pytest.mark.parametrize(
    "row", [r for r in VECTORS if r["identifier_type"] == "IDNPS"], ids=lambda r: r["value"]
)
def test_vector_idnat_ps_parse(row: dict[str, str]) -> None:
    if row["computed_check"] == "ok":
        parsed = parse_idnat_ps(row["value"])
        assert parsed.value == row["value"]
    else:
        with pytest.raises(InvalidIdentifier, match="check digit mismatch"):
            parse_idnat_ps(row["value"])


@pytest.mark.parametrize(
    "row", [r for r in VECTORS if r["identifier_type"] == "IDNST"], ids=lambda r: r["value"]
)
def test_vector_idnat_struct_parse(row: dict[str, str]) -> None:
    if row["computed_check"] == "ok":
        assert parse_idnat_struct(row["value"]).value == row["value"]
    else:
        with pytest.raises(InvalidIdentifier):
            parse_idnat_struct(row["value"])


# --- RPPS / ADELI / idNat_PS (R53, R54) -------------------------------------------------------


def test_rpps_spec_vector() -> None:
    assert is_valid_rpps("10000005479")  # R53
    assert is_valid_rpps("100 000 054 79")
    assert not is_valid_rpps("1000000547")
    assert not is_valid_rpps("1000000547X")


def test_idnat_ps_builders() -> None:
    assert idnat_ps("10000005479") == "810000005479"
    assert idnat_ps_adeli("012800736") == "0012800736"
    with pytest.raises(InvalidIdentifier, match="RPPS must be 11 digits, got 10"):
        idnat_ps("1000000547")
    with pytest.raises(InvalidIdentifier, match="expected 4, got 3"):
        idnat_ps("10003461033")


def test_adeli_key_is_soft() -> None:
    # ANS qualification ADELI fail Luhn: the builders and parsers accept them unless strict.
    assert not is_valid_adeli("299109803")
    assert is_valid_adeli("299109803", check_key=False)
    assert not is_valid_adeli("29910980", check_key=False)
    assert idnat_ps_adeli("299109803") == "0299109803"
    with pytest.raises(InvalidIdentifier, match="soft check"):
        idnat_ps_adeli("299109803", strict_adeli=True)
    assert parse_idnat_ps("0299109803") == IdNatPS("ADELI", "299109803")
    with pytest.raises(InvalidIdentifier, match=r"prefix 0 \(ADELI\)"):
        parse_idnat_ps("0299109803", strict_adeli=True)
    result = check_identifier("0299109803", "idnat_ps")
    assert (result.valid, result.outcome, result.soft) == (False, "bad_key", True)


def test_parse_idnat_ps_kinds() -> None:
    ps = parse_idnat_ps("8 10000005479")
    assert ps == IdNatPS("RPPS", "10000005479")
    assert (ps.prefix, ps.value, ps.system) == ("8", "810000005479", SYSTEM_IDNAT_PS)
    assert parse_idnat_ps("0012800736").kind == "ADELI"
    staff = parse_idnat_ps("3010000016/Ab.c")
    assert staff == IdNatPS("FINESS_STAFF", "010000016/Ab.c")  # internal id kept verbatim
    assert staff.value == "3010000016/Ab.c"
    assert parse_idnat_ps("1ABC/xyz").kind == "CAB_ADELI_STAFF"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "prefix must be one of"),
        ("9123", "prefix must be one of 0,1,3,4,5,6,8, got '9'"),
        ("81000000547", "RPPS must be 11 digits, got 10"),
        ("810003461033", "RPPS Luhn check digit mismatch: expected 4, got 3"),
        ("3010000016", r"must be <structure id>/<internal id>"),
        ("3458174839/x", r"prefix 3 \(FINESS_STAFF\): FINESS Luhn"),
    ],
)
def test_parse_idnat_ps_reasons(value: str, message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message):
        parse_idnat_ps(value)


# --- FINESS, SIREN, SIRET, idNat_Struct (R55–R57) --------------------------------------------


def test_finess_corsica() -> None:
    assert is_valid_finess("2A0000001")  # default: pattern accepted, no key check
    assert is_valid_finess("2b 000 000 2")
    assert not is_valid_finess("2A0000001", corsica="reject")
    assert not is_valid_finess("3A0000001")  # letter outside Corsica
    assert not is_valid_finess("0100000A6")  # XSD: letter only in 2nd position
    assert not is_valid_finess("01000001")
    result = check_identifier("2A0000001", "finess")
    assert result.valid and "key not checked" in result.reason
    assert parse_idnat_struct("12A0000001").kind == "FINESS"
    with pytest.raises(InvalidIdentifier, match="Corsica"):
        parse_idnat_struct("12A0000001", corsica="reject")


def test_siren_siret() -> None:
    assert is_valid_siren("732 829 320")
    assert not is_valid_siren("732829321")
    assert is_valid_siret("73282932000074")
    assert not is_valid_siret("73282932000075")
    assert not is_valid_siret("7328293200007")


def test_siret_la_poste() -> None:
    assert is_valid_siret("35600000009075")  # digit sum 35, multiple of 5
    assert is_valid_siret("35600000000048")  # head office: plain Luhn
    assert not is_valid_siret("35600000049838")
    result = check_identifier("35600000049838", "siret")
    assert "multiple of 5, got 46" in result.reason


def test_parse_idnat_struct_spec_vectors() -> None:
    siret = parse_idnat_struct("318310021300028")  # R55
    assert siret == IdNatStruct("SIRET", "18310021300028")
    assert siret.system == SYSTEM_IDNAT_STRUCT and siret.prefix == "3"
    assert parse_idnat_struct("1630013605") == IdNatStruct("FINESS", "630013605")
    rang = parse_idnat_struct("410005531586003")
    assert rang == IdNatStruct("RPPS_RANG", "10005531586003")
    assert parse_idnat_struct("2732829320") == IdNatStruct("SIREN", "732829320")
    assert parse_idnat_struct("0012800736").kind == "ADELI_CABINET"
    assert parse_idnat_struct("339806996300013").value == "339806996300013"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "prefix must be 0–4, got ''"),
        ("5123456789", "prefix must be 0–4, got '5'"),
        ("163001360", r"prefix 1 \(FINESS\): FINESS must be 9 characters, got 8"),
        ("1754567860", "FINESS Luhn check digit mismatch: expected 5, got 0"),
        ("318310021300029", r"prefix 3 \(SIRET\): SIRET Luhn"),
        ("410003461033003", r"prefix 4 \(RPPS_RANG\): RPPS Luhn"),
        ("410005531586", "RPPS-rang must be 11 RPPS digits"),
    ],
)
def test_parse_idnat_struct_reasons(value: str, message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message):
        parse_idnat_struct(value)


def test_fhir_systems() -> None:  # R59
    assert SYSTEM_IDNAT_PS == "urn:oid:1.2.250.1.71.4.2.1"
    assert SYSTEM_IDNAT_STRUCT == "urn:oid:1.2.250.1.71.4.2.2"
    assert SYSTEM_FINESS == "https://finess.esante.gouv.fr"


# --- NIR / INS (R31, R58) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("295109912611193", True),
        ("253072B07300470", True),
        ("253072A07300443", True),
        ("253072a07300443", True),
        ("146026322000196", True),
        ("295109912611199", False),
        ("2530A2B07300470", False),
    ],
)
def test_nir_spec_vectors(value: str, valid: bool) -> None:
    assert is_valid_nir(value) is valid


def test_nir_key() -> None:
    assert nir_key("2951099126111") == "93"
    assert nir_key("253072B073004") == "70"
    assert nir_key("253072A073004") == "43"
    assert nir_key("1460263220001") == "96"
    with pytest.raises(InvalidIdentifier, match="13 digits"):
        nir_key("25307")
    with pytest.raises(InvalidIdentifier):
        nir_key("2A3072B073004")


def test_nir_key_zero_padded() -> None:
    # 97 - (N mod 97) is in 1..97; a small key must keep its leading zero.
    body = next(f"1850612345{i:03d}" for i in range(1000) if int(f"1850612345{i:03d}") % 97 == 92)
    assert nir_key(body) == "05"
    assert is_valid_nir(body + "05")


def test_nir_reason() -> None:
    result = check_identifier("295109912611199", "ins")
    assert result.reason == "NIR check key mismatch: expected 93, got 99"


# --- Property tests ---------------------------------------------------------------------------

digits = st.text(alphabet="0123456789", min_size=10, max_size=10)


@given(digits)
def test_rpps_luhn_roundtrip(prefix: str) -> None:
    rpps = prefix + luhn_check_digit(prefix)
    assert _independent_luhn_ok(rpps)
    assert is_valid_rpps(rpps)
    assert idnat_ps(rpps) == "8" + rpps
    assert parse_idnat_ps("8" + rpps) == IdNatPS("RPPS", rpps)


@given(digits, st.integers(min_value=0, max_value=10), st.integers(min_value=1, max_value=9))
def test_rpps_single_digit_change_is_detected(prefix: str, pos: int, delta: int) -> None:
    rpps = prefix + luhn_check_digit(prefix)
    changed = rpps[:pos] + str((int(rpps[pos]) + delta) % 10) + rpps[pos + 1 :]
    assert not is_valid_rpps(changed)
    assert check_identifier(changed, "rpps").outcome == "bad_key"


nir_bodies = st.builds(
    lambda head, dept, tail: head + dept + tail,
    st.text(alphabet="0123456789", min_size=5, max_size=5),
    st.one_of(
        st.sampled_from(["2A", "2B"]), st.text(alphabet="0123456789", min_size=2, max_size=2)
    ),
    st.text(alphabet="0123456789", min_size=6, max_size=6),
)


@given(nir_bodies)
def test_nir_computed_key_validates(body: str) -> None:
    number = int(body.replace("2A", "19").replace("2B", "18"))
    key = nir_key(body)
    assert len(key) == 2 and int(key) == 97 - number % 97
    assert is_valid_nir(body + key)
    assert check_identifier(body + key, "nir").valid
    wrong = f"{(int(key) % 97) + 1:02d}"
    assert not is_valid_nir(body + wrong)


# --- check_identifier: aliases and guessing ---------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("rpps", "RPPS"),
        ("Adeli", "ADELI"),
        ("idnat_ps", "IDNPS"),
        ("idnps", "IDNPS"),
        ("idnat_struct", "IDNST"),
        ("IDNST", "IDNST"),
        ("nir", "NIR/INS"),
        ("ins", "NIR/INS"),
        ("NIR/INS", "NIR/INS"),
        ("siret", "SIRET"),
    ],
)
def test_type_aliases(alias: str, canonical: str) -> None:
    assert check_identifier("x", alias).type == canonical


def test_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown identifier type"):
        check_identifier("10000005479", "iban")


def test_given_type_is_not_guessed() -> None:
    result = check_identifier("10000005479", "rpps")
    assert result.candidates == () and not result.ambiguous
    assert result.reason == "RPPS 10000005479 (Luhn key valid)"
    assert check_identifier("1000000547", "rpps").reason == "RPPS must be 11 digits, got 10"


@pytest.mark.parametrize(
    ("value", "type_", "valid"),
    [
        ("10000005479", "RPPS", True),
        ("10003461033", "RPPS", False),
        ("810000005479", "IDNPS", True),
        ("295109912611193", "NIR/INS", True),
        ("2 95 10 99 126 111 99", "NIR/INS", False),
        ("253072B07300470", "NIR/INS", True),
        ("1850615458136", "NIR/INS", False),
        ("73282932000074", "SIRET", True),
        ("318310021300028", "IDNST", True),
        ("410005531586003", "IDNST", True),
        ("1630013605", "IDNST", True),
        ("2A0000001", "FINESS", True),
    ],
)
def test_guess(value: str, type_: str, valid: bool) -> None:
    result = check_identifier(value)
    assert (result.type, result.valid) == (type_, valid), result.reason
    assert result.candidates and result.candidates[0] == type_
    if valid:
        assert "guessed" in result.reason


def test_guess_reason_for_idnat_ps() -> None:
    result = check_identifier("810000005479")
    assert result.reason.startswith("idNat_PS of kind RPPS (8 + 10000005479)")


def test_guess_nine_digits_is_ambiguous() -> None:
    # FINESS, SIREN and ADELI share the shape and the Luhn key: say so, prefer FINESS.
    result = check_identifier("010000016")
    assert result.type == "FINESS" and result.valid and result.ambiguous
    assert result.candidates == ("FINESS", "SIREN", "ADELI")
    assert result.reason.startswith("ambiguous: valid as FINESS, SIREN, ADELI")


def test_guess_nine_digits_bad_key() -> None:
    result = check_identifier("458174839")
    assert result.type == "FINESS" and not result.valid and not result.ambiguous
    assert result.outcome == "bad_key"
    assert "not valid as any of FINESS, SIREN, ADELI" in result.reason


def test_guess_ten_chars_starting_with_zero() -> None:
    ok = check_identifier("0012800736")
    assert ok.type == "IDNPS" and ok.ambiguous  # also an ADELI-cabinet idNat_Struct
    soft = check_identifier("0299109803")
    assert soft.type == "IDNST" and soft.valid
    assert "not IDNPS" in soft.reason and "soft check" in soft.reason


@pytest.mark.parametrize("value", ["", "12345", "ABCDEFGHIJKLMNOP", "912345678901"])
def test_guess_unknown_shape(value: str) -> None:
    result = check_identifier(value)
    assert result.type == "UNKNOWN" and not result.valid
    assert result.outcome == "bad_format"
    assert "unrecognised identifier shape" in result.reason


def test_result_is_frozen() -> None:
    result = check_identifier("10000005479")
    with pytest.raises(AttributeError):
        result.valid = False  # type: ignore[misc]
