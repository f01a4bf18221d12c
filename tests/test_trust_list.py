"""White list parser and trust-space rules (SPEC §1.2, R1–R5, R11; WL snapshot 2025-03-13)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mssante.domain.errors import TrustListRejected
from mssante.domain.trust import (
    Contact,
    TrustedDomain,
    TrustList,
    dn_equal,
    dn_from_x509_name,
    is_mssante_domain,
    is_valid_domain_name,
    normalise_domain,
    parse_dn,
)
from mssante.formats.trust_list import (
    load_trust_list,
    parse_checksum,
    parse_trust_list,
    sha256_hex,
    verify_checksum,
)

SHARED_DATA = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA",
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
    )
)
WL_DIR = SHARED_DATA / "trust-list"
MIPIH_DN = "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"
ENOVACOM_DN = "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR"
NS = "https://listeblanche.mssante.fr/schema"


@pytest.fixture(scope="module")
def wl_bytes() -> bytes:
    path = WL_DIR / "listeblanchemssante.xml"
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set MSSANTE_SHARED_DATA)")
    return path.read_bytes()


@pytest.fixture(scope="module")
def wl_checksum() -> str:
    return (WL_DIR / "checksum").read_text(encoding="ascii")


@pytest.fixture(scope="module")
def snapshot(wl_bytes: bytes, wl_checksum: str) -> TrustList:
    return load_trust_list(wl_bytes, wl_checksum)


def doc(*domains: str, root: str = "ListeBlancheMSSante", ns: str = NS, prolog: str = "") -> bytes:
    body = "".join(f"<Domaine>{d}</Domaine>" for d in domains)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<{root} xmlns="{ns}">'
        f"<DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>"
        f"<ListeDomaines>{body}</ListeDomaines></{root}>"
    ).encode()


def entry(name: str = "a.mssante.fr", dn: str = MIPIH_DN, extra: str = "") -> str:
    return (
        f"<Nom>{name}</Nom><Description>d</Description>"
        f"<DNCertificatOperateur>{dn}</DNCertificatOperateur>"
        "<ResponsableContact>08 10 61 50 50, a@b.fr</ResponsableContact>"
        f"<DateMAJ>2025-01-01T00:00:00Z</DateMAJ>{extra}"
    )


def mipih_name(cn: str = "medimail-asip.mipih.fr") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Haute-Garonne (31)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "GIP MIPIH"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "318310021300028"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


# --- R1: the real snapshot -------------------------------------------------------------


def test_snapshot_counts(snapshot: TrustList) -> None:
    assert len(snapshot) == 619  # Domaine entries (R1)
    assert len(snapshot.domain_names()) == 516  # a domain has one entry per relay DN
    assert snapshot.generated_at == datetime(2025, 3, 13, 14, 54, 10, tzinfo=UTC)
    # SPEC §1.2 says "29 distinct DNs": measured, 29 is the number of distinct OUs
    # (organisations); the file holds 35 distinct DN strings (several relays per operator).
    assert len(snapshot.operator_dns()) == 35
    assert len({parse_dn(dn)[1] for dn in snapshot.operator_dns()}) == 29
    assert all(is_mssante_domain(name) for name in snapshot.domain_names())
    assert all(name == name.lower() for name in snapshot.domain_names())
    assert snapshot.contains("uc-cmp.mssante.fr")  # published as UC-CMP.mssante.fr


def test_snapshot_sha256_matches_checksum(
    wl_bytes: bytes, wl_checksum: str, snapshot: TrustList
) -> None:
    assert sha256_hex(wl_bytes) == hashlib.sha256(wl_bytes).hexdigest() == wl_checksum.strip()
    assert snapshot.sha256 == wl_checksum.strip()
    verify_checksum(wl_bytes, wl_checksum)


def test_snapshot_missing_root_end_tag_is_tolerated_and_reported(
    wl_bytes: bytes, snapshot: TrustList
) -> None:
    assert b"</ListeBlancheMSSante>" not in wl_bytes  # quirk of the published file
    assert any("closing </ListeBlancheMSSante>" in w for w in snapshot.warnings)
    fixed = parse_trust_list(wl_bytes + b"</ListeBlancheMSSante>\n")
    assert fixed.entries == snapshot.entries
    assert not any("closing" in w for w in fixed.warnings)


def test_snapshot_entry_fields(snapshot: TrustList) -> None:
    entry_ = snapshot.get("ADSEA29.mssante.fr.")
    assert entry_ is not None
    assert entry_.name == "adsea29.mssante.fr"
    assert entry_.description == "BREST LA SAUVEGARDE"
    assert entry_.operator_dn == MIPIH_DN
    assert entry_.responsible == Contact(
        "08 10  61 50 50, medimail.diffusion@mipih.fr",
        email="medimail.diffusion@mipih.fr",
        phone="08 10 61 50 50",
    )
    assert entry_.support is not None and entry_.support.email == "medimail.technique@mipih.fr"
    assert entry_.updated_at == datetime(2025, 3, 13, 14, 54, 10, tzinfo=UTC)
    assert snapshot.get("absent.mssante.fr") is None
    assert "adsea29.mssante.fr" in snapshot and "absent.mssante.fr" not in snapshot


# --- R2: checksum ----------------------------------------------------------------------


def test_one_byte_changed_is_rejected(wl_bytes: bytes, wl_checksum: str) -> None:
    mutated = bytearray(wl_bytes)
    mutated[1000] ^= 0x01
    with pytest.raises(TrustListRejected, match="checksum mismatch") as info:
        load_trust_list(bytes(mutated), wl_checksum)
    assert wl_checksum.strip() in info.value.message
    assert hashlib.sha256(bytes(mutated)).hexdigest() in info.value.message


@pytest.mark.parametrize(
    "text_for",
    [
        lambda h: h,
        lambda h: h.upper() + "\n",
        lambda h: f"  {h}  listeblanchemssante.xml\n",
        lambda h: f"SHA256 (listeblanchemssante.xml) = {h}",
    ],
)
def test_checksum_file_formats(text_for: Callable[[str], str]) -> None:
    data = doc(entry())
    verify_checksum(data, text_for(sha256_hex(data)))
    assert load_trust_list(data, text_for(sha256_hex(data))).contains("a.mssante.fr")


@pytest.mark.parametrize("bad", ["", "   ", "not a digest", "abc123", "z" * 64])
def test_checksum_file_without_digest_is_rejected(bad: str) -> None:
    with pytest.raises(TrustListRejected, match="no SHA-256"):
        parse_checksum(bad)


def test_no_checksum_given_skips_the_check() -> None:
    assert len(load_trust_list(doc(entry()), None)) == 1


# --- safety ----------------------------------------------------------------------------

XXE = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">'
    b"<DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration><ListeDomaines><Domaine>"
    b"<Nom>&x;</Nom></Domaine></ListeDomaines></ListeBlancheMSSante>"
)
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']><ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">&lol9;'
    b"</ListeBlancheMSSante>"
)
PLAIN_DTD = b'<?xml version="1.0"?><!DOCTYPE ListeBlancheMSSante>' + doc(entry())[38:]
EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE ListeBlancheMSSante SYSTEM "http://127.0.0.1:9/x.dtd">'
    + doc(entry())[38:]
)
PARAM_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p"> %p;]>'
    + doc(entry())[38:]
)


@pytest.mark.parametrize(
    "payload", [XXE, LAUGHS, PLAIN_DTD, EXTERNAL_DTD, PARAM_ENTITY], ids=lambda p: str(len(p))
)
def test_dtd_entities_and_external_references_are_refused(payload: bytes) -> None:
    assert payload.startswith(b'<?xml version="1.0"?><!DOCTYPE')
    with pytest.raises(TrustListRejected, match="forbidden"):
        parse_trust_list(payload)


def test_undeclared_entity_is_not_well_formed() -> None:
    with pytest.raises(TrustListRejected, match="not well-formed"):
        parse_trust_list(doc(entry(name="&x;")))


def test_size_and_count_limits() -> None:
    data = doc(entry("a.mssante.fr"), entry("b.mssante.fr"), entry("c.mssante.fr"))
    with pytest.raises(TrustListRejected, match="above the limit of 100 bytes"):
        load_trust_list(data, None, max_bytes=100)
    with pytest.raises(TrustListRejected, match="3 Domaine entries, above the limit of 2"):
        parse_trust_list(data, max_domains=2)
    assert len(parse_trust_list(data, max_domains=3)) == 3


# --- structural rejections (R1, R3) -----------------------------------------------------


def test_truncated_files_are_refused(wl_bytes: bytes) -> None:
    for cut in (len(wl_bytes) // 2, wl_bytes.rindex(b"</Domaine>") + len(b"</Domaine>"), 10):
        with pytest.raises(TrustListRejected, match="not well-formed XML"):
            parse_trust_list(wl_bytes[:cut])
    with pytest.raises(TrustListRejected, match="not well-formed XML"):
        parse_trust_list(b"")


def test_empty_list_is_refused() -> None:
    with pytest.raises(TrustListRejected, match="empty list"):
        parse_trust_list(doc())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (doc(entry(), root="Liste"), "wrong root element"),
        (doc(entry(), ns="https://example.org/schema"), "namespace 'https://example.org/schema'"),
        (doc(entry()).replace(f' xmlns="{NS}"'.encode(), b""), "namespace '\\(none\\)'"),
        (
            doc(entry()).replace(b"<DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>", b""),
            "no DateDeGeneration",
        ),
        (doc(entry()).replace(b"2025-03-13T14:54:10Z", b"13/03/2025"), "invalid DateDeGeneration"),
        (doc(entry()).replace(b"2025-03-13T14:54:10Z", b"2025-03-13T14:54:10"), "no UTC offset"),
        (
            doc(entry())
            .replace(b"<ListeDomaines>", b"<Autre>")
            .replace(b"</ListeDomaines>", b"</Autre>"),
            "no ListeDomaines",
        ),
        (doc("<Description>x</Description>"), "Domaine #1 has no Nom"),
        (doc(entry(), entry(name="")), "Domaine #2 has no Nom"),
        (doc(entry(name="bad_name.mssante.fr")), "invalid domain name 'bad_name.mssante.fr'"),
        (doc(entry(name="-x.mssante.fr")), "invalid domain name"),
        (doc(entry(name="a..mssante.fr")), "invalid domain name"),
        (doc(entry(name="localhost")), "invalid domain name"),
        (doc(entry(dn="")), r"Domaine #1 \(a.mssante.fr\) has no DNCertificatOperateur"),
        (doc(entry(dn="not a dn")), "invalid DNCertificatOperateur 'not a dn'"),
        (doc(entry(extra="<Nom>b.mssante.fr</Nom>")), "has 2 Nom elements"),
    ],
)
def test_invalid_lists_are_rejected_with_a_precise_reason(data: bytes, reason: str) -> None:
    with pytest.raises(TrustListRejected, match=reason):
        parse_trust_list(data)


def test_repeated_domains() -> None:
    other = "CN=smtp-2.example.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"
    tl = parse_trust_list(doc(entry(), entry(dn=other), entry(name="A.mssante.fr.")))
    assert len(tl) == 3 and tl.domain_names() == frozenset({"a.mssante.fr"})
    assert [e.operator_dn for e in tl.entries_for("a.mssante.fr")] == [MIPIH_DN, other, MIPIH_DN]
    assert tl.warnings == ("Domaine #3 (a.mssante.fr) repeats Domaine #1 with the same DN",)
    assert tl.sender_authorised("a.mssante.fr", other)
    assert tl.sender_authorised("a.mssante.fr", MIPIH_DN)


def test_domain_outside_mssante_fr_is_loaded_with_a_warning() -> None:
    tl = parse_trust_list(doc(entry(name="example.fr")))
    assert tl.contains("example.fr")
    assert tl.warnings == ("Domaine #1 (example.fr) is not under mssante.fr (R11)",)


def test_bad_datemaj_is_only_warned() -> None:
    tl = parse_trust_list(doc(entry().replace("2025-01-01T00:00:00Z", "hier")))
    assert tl.entries[0].updated_at is None
    assert "unreadable DateMAJ 'hier'" in tl.warnings[0]


# --- DNs (R5) ----------------------------------------------------------------------------


def test_parse_dn_of_a_white_list_dn() -> None:
    assert parse_dn(MIPIH_DN) == (
        ("CN", "medimail-asip.mipih.fr"),
        ("OU", "318310021300028"),
        ("O", "gip mipih"),
        ("ST", "haute-garonne (31)"),
        ("C", "fr"),
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            MIPIH_DN,
            "cn=MEDIMAIL-ASIP.MIPIH.FR, ou=318310021300028, o=Gip  Mipih, "
            "st=HAUTE-GARONNE (31), c=fr",
        ),
        (
            MIPIH_DN,
            "CN = medimail-asip.mipih.fr , OU = 318310021300028 ; "
            "O=GIP MIPIH,S=Haute-Garonne (31),C=FR",
        ),
        (
            MIPIH_DN,
            "C=FR,ST=Haute-Garonne (31),O=GIP MIPIH,OU=318310021300028,CN=medimail-asip.mipih.fr",
        ),
        (
            MIPIH_DN,
            "2.5.4.3=medimail-asip.mipih.fr,OID.2.5.4.11=318310021300028,O=GIP MIPIH,"
            "stateOrProvinceName=Haute-Garonne (31),countryName=FR",
        ),
        (
            MIPIH_DN,
            'CN=medimail-asip.mipih.fr,OU=318310021300028,O="GIP MIPIH",ST=Haute-Garonne (31),C=FR',
        ),
        (
            MIPIH_DN,
            r"CN=medimail\2Dasip.mipih.fr,OU=318310021300028,O=GIP\20MIPIH,"
            "ST=Haute-Garonne (31),C=FR",
        ),
        (
            ENOVACOM_DN,
            r"CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rh\C3\B4ne (13),C=FR",
        ),
        (
            ENOVACOM_DN,
            "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rho\u0302ne (13),C=FR",
        ),
        (r"CN=a\,b,O=X\, Inc.", r"CN=a\2Cb,O=X\2C Inc."),
        (r"CN=a\,b,O=X\, Inc.", 'CN="a,b",O="X, Inc."'),
        ("CN=x,E=ops@example.fr", "CN=x,emailAddress=OPS@example.fr"),
        ("CN=x+OU=1,O=y", "OU=1+CN=x,O=y"),
        ("CN=abc,O=y", "CN=#0C03616263,O=y"),
    ],
)
def test_dn_equal(a: str, b: str) -> None:
    assert dn_equal(a, b) and dn_equal(b, a)


@pytest.mark.parametrize(
    "other",
    [
        MIPIH_DN.replace("medimail-asip", "medimail-asip2"),
        MIPIH_DN.replace("OU=318310021300028,", ""),
        MIPIH_DN + ",L=Toulouse",
        "CN=medimail-asip.mipih.fr,O=GIP MIPIH,OU=318310021300028,ST=Haute-Garonne (31),C=FR",
        r"CN=medimail-asip.mipih.fr\,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR",
        "",
        "garbage",
    ],
)
def test_dn_not_equal(other: str) -> None:
    assert not dn_equal(MIPIH_DN, other)


def test_escaped_comma_is_part_of_the_value() -> None:
    assert parse_dn(r"CN=Doe\, John,O=X") == (("CN", "doe, john"), ("O", "x"))


@pytest.mark.parametrize("bad", ["CN", "CN=x,", "CN=x\\", "1CN=x", 'CN="x', "CN=#abc", "CN=x,=y"])
def test_malformed_dn_raises_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_dn(bad)


def test_empty_dns_never_match() -> None:
    assert parse_dn("") == ()
    assert not dn_equal("", "")


def test_dn_from_x509_name_matches_the_white_list_form() -> None:
    name = mipih_name()
    assert name.rfc4514_string() == MIPIH_DN
    assert dn_from_x509_name(name) == parse_dn(MIPIH_DN)
    assert dn_equal(name, MIPIH_DN) and dn_equal(MIPIH_DN, name)
    assert dn_equal(name, parse_dn(MIPIH_DN))


_VALUES = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda v: v.strip() != ""
)


@settings(max_examples=200, deadline=None)
@given(cn=_VALUES, org=_VALUES)
def test_rfc4514_round_trip_through_cryptography(cn: str, org: str) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    assert dn_from_x509_name(name) == parse_dn(name.rfc4514_string())
    assert dn_equal(name, name.rfc4514_string())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parse_dn_only_raises_value_error(text: str) -> None:
    try:
        parse_dn(text)
    except ValueError:
        pass


# --- R5: authorisation of the sending operator ---------------------------------------------


def test_sender_authorised_with_a_real_entry(snapshot: TrustList) -> None:
    peer = mipih_name()
    assert snapshot.sender_authorised("adsea29.mssante.fr", peer)
    assert snapshot.sender_authorised("ADSEA29.MSSANTE.FR.", peer)
    assert snapshot.sender_authorised("adsea29.mssante.fr", MIPIH_DN)
    assert snapshot.is_operator(peer)


def test_sender_with_a_wrong_dn_is_refused(snapshot: TrustList) -> None:
    wrong = mipih_name(cn="attacker.mipih.fr")
    assert not snapshot.sender_authorised("adsea29.mssante.fr", wrong)
    assert not snapshot.is_operator(wrong)
    # a genuine operator DN, but not the one listed for this domain
    assert snapshot.is_operator(ENOVACOM_DN)
    assert not snapshot.sender_authorised("adsea29.mssante.fr", ENOVACOM_DN)
    # a listed DN for an unlisted domain
    assert not snapshot.sender_authorised("absent.mssante.fr", mipih_name())
    assert not snapshot.sender_authorised("adsea29.mssante.fr", "not a dn")
    assert not snapshot.is_operator("")


def test_trusted_domain_rejects_an_invalid_dn() -> None:
    with pytest.raises(ValueError):
        TrustedDomain(name="a.mssante.fr", operator_dn="")
    assert TrustedDomain(name="A.MSSANTE.FR.", operator_dn=MIPIH_DN).name == "a.mssante.fr"


# --- domain names (R4, R11) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x.mssante.fr", True),
        ("X.MSSante.FR.", True),
        ("a.b.mssante.fr", True),
        ("mssante.fr", False),
        ("evilmssante.fr", False),
        ("x.mssante.fr.evil.com", False),
        ("x.notmssante.fr", False),
        ("bad_label.mssante.fr", False),
        ("", False),
    ],
)
def test_is_mssante_domain(name: str, expected: bool) -> None:
    assert is_mssante_domain(name) is expected


def test_domain_name_helpers() -> None:
    assert normalise_domain(" Ex.MSSANTE.fr. ") == "ex.mssante.fr"
    assert is_valid_domain_name("xn--bcher-kva.mssante.fr")
    assert not is_valid_domain_name("bücher.mssante.fr")
    assert not is_valid_domain_name("a" * 64 + ".fr")
    assert not is_valid_domain_name("a.fr..")


def test_contact_extraction() -> None:
    c = Contact.from_text("M. DUNAUD Pascal, tél : 04 73 75 20 61, email :  pdunaud@chu.fr")
    assert (c.phone, c.email) == ("04 73 75 20 61", "pdunaud@chu.fr")
    assert Contact.from_text("support.team@enovacom.com").phone is None
