"""FETCH rendering (mssante.imap.message): ENVELOPE, BODYSTRUCTURE, BODY, BODY[section].

The GOLDEN values were produced by Dovecot 2.3.19 (``dovecot-imapd``, on a maildir holding
these exact messages) and are matched byte for byte, except where noted: ``non_ascii``
(Dovecot sends the refolded subject as a literal, we send the same text quoted), and the
accepted differences ``no_boundary`` (Dovecot: a multipart with one empty part, hiding the
text) and ``bad_content_type`` (Dovecot: ``("garbage" "" …)``; we follow RFC 2045 §5.2).
"""

from __future__ import annotations

import base64
import io
import zipfile
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssante.imap.message import (
    ParsedMessage,
    SectionSpec,
    UnknownTransferEncoding,
    binary_section,
    body,
    bodystructure,
    envelope,
    header_bytes,
    imap_astring,
    imap_literal,
    imap_string,
    internaldate_string,
    parse_section,
    partial,
    rfc822_size,
    section,
    text_bytes,
)
from mssante.imap.message_mime import MAX_DEPTH, MAX_PARTS, MimePart


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def _xdm_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in (
            ("INDEX.HTM", b"<html><body>XDM</body></html>\n"),
            ("README.TXT", b"MSSante XDM\n"),
            ("IHE_XDM/SUBSET01/METADATA.XML", b"<SubmitObjectsRequest/>\n"),
            ("IHE_XDM/SUBSET01/DOC0001.XML", b"<ClinicalDocument/>\n"),
        ):
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 2, 9, 30, 0)), data)
    return buf.getvalue()


def _b64(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
XDM = _xdm_zip()

MESSAGES = {
    "simple": crlf("""From: "Dr Alice Martin" <alice.martin@hopital.mssante.fr>
To: bob@pharmacie.mssante.fr
Subject: Compte rendu
Date: Tue, 2 Jan 2024 09:30:00 +0100
Message-ID: <cr-1@hopital.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Bonjour,
Veuillez trouver le compte rendu ci-joint.
"""),
    "alternative": crlf("""From: alice@hopital.mssante.fr
To: bob@pharmacie.mssante.fr, "Carol C." <carol@cabinet.mssante.fr>
Cc: dan@labo.mssante.fr
Subject: Alternative
Date: Wed, 3 Jan 2024 10:00:00 +0000
Message-ID: <alt-1@hopital.mssante.fr>
In-Reply-To: <cr-1@hopital.mssante.fr>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_alt_42"

This is a multi-part message in MIME format.
--=_alt_42
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

R=E9sultats normaux.
--=_alt_42
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: base64

PHA+UsOpc3VsdGF0cyA8Yj5ub3JtYXV4PC9iPi48L3A+
--=_alt_42--
"""),
    "mixed_pdf": crlf(
        """From: alice@hopital.mssante.fr
To: bob@pharmacie.mssante.fr
Subject: Ordonnance
Date: Thu, 4 Jan 2024 11:00:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

Voir la piece jointe.
--b1
Content-Type: application/pdf; name="ordonnance.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="ordonnance.pdf"
Content-Description: Ordonnance du 4 janvier

"""
        + _b64(PDF)
        + """
--b1--
"""
    ),
    "forward": crlf("""From: bob@pharmacie.mssante.fr
To: alice@hopital.mssante.fr
Subject: Fwd: Compte rendu
Date: Fri, 5 Jan 2024 08:00:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fw"

--fw
Content-Type: text/plain

Message transfere.
--fw
Content-Type: message/rfc822
Content-Disposition: inline

From: "Dr Alice Martin" <alice.martin@hopital.mssante.fr>
To: bob@pharmacie.mssante.fr
Subject: Compte rendu
Date: Tue, 2 Jan 2024 09:30:00 +0100
Message-ID: <cr-1@hopital.mssante.fr>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="in"

--in
Content-Type: text/plain; charset=utf-8

Texte.
--in
Content-Type: text/html; charset=utf-8

<p>Texte.</p>
--in--

--fw--
"""),
    "xdm": crlf(
        """From: lab@labo.mssante.fr
To: dr.durand@cabinet.mssante.fr
Subject: Resultats XDM
Date: Mon, 8 Jan 2024 07:45:00 +0100
Message-ID: <xdm-1@labo.mssante.fr>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="----=_xdm"

------=_xdm
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

Resultats en piece jointe (IHE XDM).
------=_xdm
Content-Type: application/zip; name="IHE_XDM.ZIP"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="IHE_XDM.ZIP"

"""
        + _b64(XDM)
        + """
------=_xdm--
"""
    ),
    "non_ascii": crlf("""From: =?UTF-8?Q?H=C3=A9l=C3=A8ne_Dupr=C3=A9?= <helene@hopital.mssante.fr>
To: Éloïse Bérard <eloise@cabinet.mssante.fr>
Subject: =?UTF-8?B?UsOpc3VsdGF0cyBkJ2FuYWx5c2U=?=
 =?UTF-8?Q?_urgents?=
Date: Tue, 9 Jan 2024 12:00:00 +0100
Message-ID: <na-1@hopital.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

R=C3=A9sultats d'analyse: taux d'h=C3=A9moglobine normal.
Subject line mentions caf=C3=A9.
"""),
    "raw_utf8_subject": crlf("""From: bob@x.fr
Subject: Été: séance de kinésithérapie
Content-Type: text/plain; charset=utf-8

corps
"""),
    "groups": crlf("""From: alice@hopital.mssante.fr
To: Equipe soins: carol@cabinet.mssante.fr, "Dan D." <dan@labo.mssante.fr>;, eve@x.fr
Cc: undisclosed-recipients:;
Bcc: "Secretariat" <secretariat@hopital.mssante.fr>
Reply-To: "Accueil" <accueil@hopital.mssante.fr>
Sender: robot@hopital.mssante.fr
Subject: Groupes

x
"""),
    "missing_headers": crlf("""X-Custom: only

body without the usual headers
"""),
    "no_header": crlf("""
just a body after an empty header
"""),
    "no_boundary": crlf("""From: a@b.fr
Content-Type: multipart/mixed

--x
Content-Type: text/plain

hello
--x--
"""),
    "boundary_never_seen": crlf("""From: a@b.fr
Content-Type: multipart/mixed; boundary=zz

hello
"""),
    "truncated": crlf("""From: a@b.fr
Content-Type: multipart/mixed; boundary=zz

--zz
Content-Type: text/plain

first
--zz
Content-Type: application/pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK""").rstrip(b"\r\n"),
    "bad_content_type": crlf("""From: a@b.fr
Content-Type: garbage
Content-Transfer-Encoding: (nothing)

x
"""),
    "params": crlf("""From: a@b.fr
Content-Type: Text/PLAIN; CharSet="ISO-8859-1"; Format=flowed (comment)
Content-Language: fr, en
Content-Location: http://example.org/doc
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-ID: <part-1@x>
Content-Disposition: INLINE; filename*=utf-8''r%C3%A9sultat.txt

x
"""),
}


def _deep(levels: int) -> bytes:
    head = "From: a@b.fr\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    parts = [head]
    for i in range(levels):
        parts.append(f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n")
    parts.append(f"--b{levels}\nContent-Type: text/plain\n\ncore\n--b{levels}--\n")
    for i in reversed(range(levels)):
        parts.append(f"--b{i}--\n")
    return crlf("".join(parts))


MESSAGES["deep"] = _deep(100)

GOLDEN: dict[str, tuple[bytes, bytes, bytes]] = {
    "simple": (
        (
            b'("Tue, 2 Jan 2024 09:30:00 +0100" "Compte rendu" (("Dr Alice Martin" NIL "alice.m'
            b'artin" "hopital.mssante.fr")) (("Dr Alice Martin" NIL "alice.martin" "hopital.mss'
            b'ante.fr")) (("Dr Alice Martin" NIL "alice.martin" "hopital.mssante.fr")) ((NIL NI'
            b'L "bob" "pharmacie.mssante.fr")) NIL NIL NIL "<cr-1@hopital.mssante.fr>")'
        ),
        b'("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 54 2 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 54 2)',
    ),
    "alternative": (
        (
            b'("Wed, 3 Jan 2024 10:00:00 +0000" "Alternative" ((NIL NIL "alice" "hopital.mssant'
            b'e.fr")) ((NIL NIL "alice" "hopital.mssante.fr")) ((NIL NIL "alice" "hopital.mssan'
            b'te.fr")) ((NIL NIL "bob" "pharmacie.mssante.fr")("Carol C." NIL "carol" "cabinet.'
            b'mssante.fr")) ((NIL NIL "dan" "labo.mssante.fr")) NIL "<cr-1@hopital.mssante.fr>"'
            b' "<alt-1@hopital.mssante.fr>")'
        ),
        (
            b'(("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" 20 0 NIL NIL'
            b' NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "base64" 44 0 NIL NIL NIL NIL'
            b') "alternative" ("boundary" "=_alt_42") NIL NIL NIL)'
        ),
        (
            b'(("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" 20 0)("text"'
            b' "html" ("charset" "utf-8") NIL NIL "base64" 44 0) "alternative")'
        ),
    ),
    "mixed_pdf": (
        (
            b'("Thu, 4 Jan 2024 11:00:00 +0100" "Ordonnance" ((NIL NIL "alice" "hopital.mssante'
            b'.fr")) ((NIL NIL "alice" "hopital.mssante.fr")) ((NIL NIL "alice" "hopital.mssant'
            b'e.fr")) ((NIL NIL "bob" "pharmacie.mssante.fr")) NIL NIL NIL NIL)'
        ),
        (
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 0 NIL NIL NIL NIL)("app'
            b'lication" "pdf" ("name" "ordonnance.pdf") NIL "Ordonnance du 4 janvier" "base64" '
            b'60 NIL ("attachment" ("filename" "ordonnance.pdf")) NIL NIL) "mixed" ("boundary" '
            b'"b1") NIL NIL NIL)'
        ),
        (
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 0)("application" "pdf" '
            b'("name" "ordonnance.pdf") NIL "Ordonnance du 4 janvier" "base64" 60) "mixed")'
        ),
    ),
    "forward": (
        (
            b'("Fri, 5 Jan 2024 08:00:00 +0100" "Fwd: Compte rendu" ((NIL NIL "bob" "pharmacie.'
            b'mssante.fr")) ((NIL NIL "bob" "pharmacie.mssante.fr")) ((NIL NIL "bob" "pharmacie'
            b'.mssante.fr")) ((NIL NIL "alice" "hopital.mssante.fr")) NIL NIL NIL NIL)'
        ),
        (
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 18 0 NIL NIL NIL NIL)("mes'
            b'sage" "rfc822" NIL NIL NIL "7bit" 390 ("Tue, 2 Jan 2024 09:30:00 +0100" "Compte r'
            b'endu" (("Dr Alice Martin" NIL "alice.martin" "hopital.mssante.fr")) (("Dr Alice M'
            b'artin" NIL "alice.martin" "hopital.mssante.fr")) (("Dr Alice Martin" NIL "alice.m'
            b'artin" "hopital.mssante.fr")) ((NIL NIL "bob" "pharmacie.mssante.fr")) NIL NIL NI'
            b'L "<cr-1@hopital.mssante.fr>") (("text" "plain" ("charset" "utf-8") NIL NIL "7bit'
            b'" 6 0 NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "7bit" 13 0 NIL '
            b'NIL NIL NIL) "alternative" ("boundary" "in") NIL NIL NIL) 17 NIL ("inline" NIL) N'
            b'IL NIL) "mixed" ("boundary" "fw") NIL NIL NIL)'
        ),
        (
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 18 0)("message" "rfc822" N'
            b'IL NIL NIL "7bit" 390 ("Tue, 2 Jan 2024 09:30:00 +0100" "Compte rendu" (("Dr Alic'
            b'e Martin" NIL "alice.martin" "hopital.mssante.fr")) (("Dr Alice Martin" NIL "alic'
            b'e.martin" "hopital.mssante.fr")) (("Dr Alice Martin" NIL "alice.martin" "hopital.'
            b'mssante.fr")) ((NIL NIL "bob" "pharmacie.mssante.fr")) NIL NIL NIL "<cr-1@hopital'
            b'.mssante.fr>") (("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 6 0)("text" "h'
            b'tml" ("charset" "utf-8") NIL NIL "7bit" 13 0) "alternative") 17) "mixed")'
        ),
    ),
    "xdm": (
        (
            b'("Mon, 8 Jan 2024 07:45:00 +0100" "Resultats XDM" ((NIL NIL "lab" "labo.mssante.f'
            b'r")) ((NIL NIL "lab" "labo.mssante.fr")) ((NIL NIL "lab" "labo.mssante.fr")) ((NI'
            b'L NIL "dr.durand" "cabinet.mssante.fr")) NIL NIL NIL "<xdm-1@labo.mssante.fr>")'
        ),
        (
            b'(("text" "plain" ("charset" "UTF-8") NIL NIL "7bit" 36 0 NIL NIL NIL NIL)("applic'
            b'ation" "zip" ("name" "IHE_XDM.ZIP") NIL NIL "base64" 770 NIL ("attachment" ("file'
            b'name" "IHE_XDM.ZIP")) NIL NIL) "mixed" ("boundary" "----=_xdm") NIL NIL NIL)'
        ),
        (
            b'(("text" "plain" ("charset" "UTF-8") NIL NIL "7bit" 36 0)("application" "zip" ("n'
            b'ame" "IHE_XDM.ZIP") NIL NIL "base64" 770) "mixed")'
        ),
    ),
    "non_ascii": (
        (
            b'("Tue, 9 Jan 2024 12:00:00 +0100" "=?UTF-8?B?UsOpc3VsdGF0cyBkJ2FuYWx5c2U=?= =?UTF'
            b'-8?Q?_urgents?=" (("=?UTF-8?Q?H=C3=A9l=C3=A8ne_Dupr=C3=A9?=" NIL "helene" "hopita'
            b'l.mssante.fr")) (("=?UTF-8?Q?H=C3=A9l=C3=A8ne_Dupr=C3=A9?=" NIL "helene" "hopital'
            b'.mssante.fr")) (("=?UTF-8?Q?H=C3=A9l=C3=A8ne_Dupr=C3=A9?=" NIL "helene" "hopital.'
            b'mssante.fr")) (({16}\r\n\xc3\x89lo\xc3\xafse B\xc3\xa9rard NIL "eloise" "cabinet.'
            b'mssante.fr")) NIL NIL NIL "<na-1@hopital.mssante.fr>")'
        ),
        (b'("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 93 2 NIL NIL NIL NIL)'),
        b'("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 93 2)',
    ),
    "raw_utf8_subject": (
        (
            b"(NIL {34}\r\n\xc3\x89t\xc3\xa9: s\xc3\xa9ance de kin\xc3\xa9sith\xc3\xa9rapie ((N"
            b'IL NIL "bob" "x.fr")) ((NIL NIL "bob" "x.fr")) ((NIL NIL "bob" "x.fr")) NIL NIL N'
            b"IL NIL NIL)"
        ),
        b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 7 1)',
    ),
    "groups": (
        (
            b'(NIL "Groupes" ((NIL NIL "alice" "hopital.mssante.fr")) ((NIL NIL "robot" "hopita'
            b'l.mssante.fr")) (("Accueil" NIL "accueil" "hopital.mssante.fr")) ((NIL NIL "Equip'
            b'e soins" NIL)(NIL NIL "carol" "cabinet.mssante.fr")("Dan D." NIL "dan" "labo.mssa'
            b'nte.fr")(NIL NIL NIL NIL)(NIL NIL "eve" "x.fr")) ((NIL NIL "undisclosed-recipient'
            b's" NIL)(NIL NIL NIL NIL)) (("Secretariat" NIL "secretariat" "hopital.mssante.fr")'
            b") NIL NIL)"
        ),
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1)',
    ),
    "missing_headers": (
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 32 1 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 32 1)',
    ),
    "no_header": (
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 35 1 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 35 1)',
    ),
    "no_boundary": (
        (
            b'(NIL NIL ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) NIL'
            b" NIL NIL NIL NIL)"
        ),
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 47 5 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 47 5)',
    ),
    "boundary_never_seen": (
        (
            b'(NIL NIL ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) NIL'
            b" NIL NIL NIL NIL)"
        ),
        (
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixe'
            b'd" ("boundary" "zz") NIL NIL NIL)'
        ),
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")',
    ),
    "truncated": (
        (
            b'(NIL NIL ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) NIL'
            b" NIL NIL NIL NIL)"
        ),
        (
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)("appl'
            b'ication" "pdf" NIL NIL NIL "base64" 12 NIL NIL NIL NIL) "mixed" ("boundary" "zz")'
            b" NIL NIL NIL)"
        ),
        (
            b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0)("application" "pdf" N'
            b'IL NIL NIL "base64" 12) "mixed")'
        ),
    ),
    "bad_content_type": (
        (
            b'(NIL NIL ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) NIL'
            b" NIL NIL NIL NIL)"
        ),
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1)',
    ),
    "params": (
        (
            b'(NIL NIL ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) ((NIL NIL "a" "b.fr")) NIL'
            b" NIL NIL NIL NIL)"
        ),
        (
            b'("Text" "PLAIN" ("CharSet" "ISO-8859-1" "Format" "flowed") "<part-1@x>" NIL "7bit'
            b'" 3 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("INLINE" ("filename*" "utf-8\'\'r%C3%A9sultat.t'
            b'xt")) ("fr" "en") "http://example.org/doc")'
        ),
        (
            b'("Text" "PLAIN" ("CharSet" "ISO-8859-1" "Format" "flowed") "<part-1@x>" NIL "7bit'
            b'" 3 1)'
        ),
    ),
}

# --- an IMAP response-data reader, strict enough to check our output ---------------------------

Value = bytes | int | None | list["Value"]


def read_imap(data: bytes) -> Value:
    """Parse one IMAP value: lists, quoted strings, literals, NIL and numbers.

    Raises AssertionError on anything a client could not read: unbalanced parentheses, a
    quoted string with CR/LF/8-bit/NUL or a bad escape, a literal shorter than announced or
    holding a NUL, trailing data.
    """
    pos = 0

    def value() -> Value:
        nonlocal pos
        c = data[pos : pos + 1]
        if c == b"(":
            pos += 1
            items: list[Value] = []
            while data[pos : pos + 1] != b")":
                assert pos < len(data), "unbalanced parentheses"
                if items:
                    assert data[pos : pos + 1] == b" " or data[pos - 1 : pos] == b")", data[pos:]
                    if data[pos : pos + 1] == b" ":
                        pos += 1
                items.append(value())
            pos += 1
            return items
        if c == b'"':
            pos += 1
            out = bytearray()
            while data[pos : pos + 1] != b'"':
                assert pos < len(data), "unterminated quoted string"
                byte = data[pos]
                if byte == 0x5C:
                    pos += 1
                    assert data[pos : pos + 1] in (b"\\", b'"'), "bad escape"
                    byte = data[pos]
                assert 0 < byte < 0x80 and byte not in (0x0D, 0x0A), f"bad octet {byte}"
                out.append(byte)
                pos += 1
            pos += 1
            return bytes(out)
        if c == b"{":
            close = data.index(b"}\r\n", pos)
            size = int(data[pos + 1 : close])
            pos = close + 3
            assert pos + size <= len(data), "literal shorter than announced"
            text = data[pos : pos + size]
            assert b"\x00" not in text
            pos += size
            return text
        end = pos
        while end < len(data) and data[end : end + 1] not in b" ()":
            end += 1
        atom = data[pos:end]
        pos = end
        if atom == b"NIL":
            return None
        assert atom.isdigit(), f"unexpected atom {atom!r}"
        return int(atom)

    result = value()
    assert pos == len(data), f"trailing data {data[pos:]!r}"
    return result


def _nstring(v: Value) -> None:
    assert v is None or isinstance(v, bytes), v


def check_envelope(env: Value) -> None:
    assert isinstance(env, list) and len(env) == 10, env
    for item in env[:2] + env[8:]:
        _nstring(item)
    for addresses in env[2:8]:
        if addresses is None:
            continue
        assert isinstance(addresses, list) and addresses
        for addr in addresses:
            assert isinstance(addr, list) and len(addr) == 4
            for item in addr:
                _nstring(item)


def check_body(node: Value, extensible: bool) -> None:
    """RFC 3501 §9 ``body`` grammar (shape and types)."""
    assert isinstance(node, list) and node, node
    if isinstance(node[0], list):
        i = 0
        while isinstance(node[i], list):
            check_body(node[i], extensible)
            i += 1
        assert isinstance(node[i], bytes)  # subtype
        rest = node[i + 1 :]
        assert len(rest) == (4 if extensible else 0), rest
        return
    mtype, subtype, params, _id, _desc, enc, size = node[:7]
    assert isinstance(mtype, bytes) and isinstance(subtype, bytes) and isinstance(enc, bytes)
    assert params is None or (isinstance(params, list) and len(params) % 2 == 0 and params)
    assert isinstance(size, int)
    rest = node[7:]
    if mtype.lower() == b"message" and subtype.lower() == b"rfc822":
        check_envelope(rest[0])
        check_body(rest[1], extensible)
        assert isinstance(rest[2], int)
        rest = rest[3:]
    elif mtype.lower() == b"text":
        assert isinstance(rest[0], int)
        rest = rest[1:]
    assert len(rest) == (4 if extensible else 0), rest


def part_paths(root: MimePart) -> list[tuple[tuple[int, ...], MimePart]]:
    """Every addressable part and its number, as RFC 3501 §6.4.5 numbers them."""
    out: list[tuple[tuple[int, ...], MimePart]] = []

    def children(part: MimePart, prefix: tuple[int, ...]) -> None:
        if part.multipart:
            for i, child in enumerate(part.children, 1):
                visit(child, (*prefix, i))
        else:
            visit(part, (*prefix, 1))

    def visit(part: MimePart, path: tuple[int, ...]) -> None:
        out.append((path, part))
        if part.multipart:
            children(part, path)
        elif part.message is not None:
            children(part.message, path)

    children(root, ())
    return out


def dotted(path: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in path)


def check_all(raw: bytes) -> None:
    """Every renderer on ``raw``: no exception, readable output, consistent sections."""
    msg = ParsedMessage(raw)
    check_envelope(read_imap(envelope(msg)))
    check_body(read_imap(bodystructure(msg)), extensible=True)
    check_body(read_imap(body(msg)), extensible=False)
    assert header_bytes(msg) + text_bytes(msg) == raw
    assert section(msg, "HEADER") == header_bytes(msg)
    assert section(msg, "") == raw
    for spec in ("TEXT", "1", "1.MIME", "2.1", "HEADER.FIELDS (From Subject)", "1.HEADER"):
        result = section(msg, spec)
        assert result is None or isinstance(result, bytes)
    for path, part in part_paths(msg.root)[:200]:
        mime = section(msg, dotted(path) + ".MIME")
        content = section(msg, dotted(path))
        assert mime is not None and content is not None
        assert mime + content == raw[part.start : part.end]


# --- golden ENVELOPE / BODYSTRUCTURE / BODY --------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_envelope_matches_golden(name: str) -> None:
    assert envelope(MESSAGES[name]) == GOLDEN[name][0]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_bodystructure_matches_golden(name: str) -> None:
    assert bodystructure(MESSAGES[name]) == GOLDEN[name][1]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_body_matches_golden(name: str) -> None:
    assert body(MESSAGES[name]) == GOLDEN[name][2]


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_message_renders_readable_structures(name: str) -> None:
    check_all(MESSAGES[name])


def test_results_are_cached_and_bytes_accepted() -> None:
    msg = ParsedMessage(MESSAGES["forward"])
    assert envelope(msg) is envelope(msg)
    assert bodystructure(msg) is bodystructure(msg)
    assert body(msg) is body(msg)
    assert bodystructure(MESSAGES["forward"]) == bodystructure(msg)


def test_envelope_details() -> None:
    env = read_imap(envelope(MESSAGES["non_ascii"]))
    assert isinstance(env, list)
    # RFC 2047 words stay encoded; the folded subject is unfolded (Dovecot "for humans").
    assert env[1] == b"=?UTF-8?B?UsOpc3VsdGF0cyBkJ2FuYWx5c2U=?= =?UTF-8?Q?_urgents?="
    assert env[5] == [["Éloïse Bérard".encode(), None, b"eloise", b"cabinet.mssante.fr"]]
    # 8-bit bytes travel as a literal.
    assert b"{16}\r\n\xc3\x89lo\xc3\xafse B\xc3\xa9rard" in envelope(MESSAGES["non_ascii"])


def test_envelope_groups_sender_and_reply_to() -> None:
    env = read_imap(envelope(MESSAGES["groups"]))
    assert isinstance(env, list)
    assert env[3] == [[None, None, b"robot", b"hopital.mssante.fr"]]  # Sender given
    assert env[5] == [
        [None, None, b"Equipe soins", None],
        [None, None, b"carol", b"cabinet.mssante.fr"],
        [b"Dan D.", None, b"dan", b"labo.mssante.fr"],
        [None, None, None, None],
        [None, None, b"eve", b"x.fr"],
    ]
    assert env[6] == [[None, None, b"undisclosed-recipients", None], [None, None, None, None]]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"bob@x.y (Bob Comment)", [[b"Bob Comment", None, b"bob", b"x.y"]]),
        (b"Bob (the builder) <bob@x.y>", [[b"Bob", None, b"bob", b"x.y"]]),
        (b'"john doe"@x.y', [[None, None, b"john doe", b"x.y"]]),
        (b"<@route,@r2:user@host>", [[None, b"@route,@r2", b"user", b"host"]]),
        (b"nodomain", [[None, None, b"nodomain", b"MISSING_DOMAIN"]]),
        (b"@nomailbox.com", [[None, None, b"MISSING_MAILBOX", b"nomailbox.com"]]),
        (b'"Name Only"', [[b"Name Only", None, b"MISSING_MAILBOX", b"MISSING_DOMAIN"]]),
        (b"Mary Jane  Doe <mj@x>", [[b"Mary Jane Doe", None, b"mj", b"x"]]),
        (b"John Q. Public <jqp@x>", [[b"John Q. Public", None, b"jqp", b"x"]]),
        (b"Broken Name broken@x", [[b"Broken Name", None, b"broken", b"x"]]),
        (b'"a\\"b" <x@y>', [[b'a"b', None, b"x", b"y"]]),
        (b'"Folded\r\n Name" <a@b>', [[b"Folded Name", None, b"a", b"b"]]),
        (b"a@[1.2.3.4]", [[None, None, b"a", b"[1.2.3.4]"]]),
        (b",, a@b ,", [[None, None, b"a", b"b"]]),
        (b"", None),
        (b"   ", None),
        (b"g:;", [[None, None, b"g", None], [None, None, None, None]]),
        (b"<a@b", [[None, None, b"a", b"b"]]),
    ],
)
def test_envelope_address_parsing(header: bytes, expected: Value) -> None:
    raw = b"From: " + header + b"\r\n\r\nx"
    env = read_imap(envelope(raw))
    assert isinstance(env, list)
    assert env[2] == expected


def test_envelope_repeated_and_empty_fields_follow_dovecot() -> None:
    raw = (
        b"From: first@a.b\r\nFrom: second@a.b\r\nSubject: one\r\nSubject: \r\n"
        b"Date:\r\nMessage-ID:   <abc@def>  \r\nIn-Reply-To:\r\n <x@y>\r\nSender:\r\n\r\nx"
    )
    env = read_imap(envelope(raw))
    assert isinstance(env, list)
    assert env[0] == b""  # present but empty
    assert env[1] == b""  # the last Subject counts
    assert env[2] == [[None, None, b"first", b"a.b"], [None, None, b"second", b"a.b"]]
    assert env[3] == env[2]  # empty Sender defaults to From
    assert env[8] == b" <x@y>"
    assert env[9] == b"<abc@def>  "


def test_envelope_nul_becomes_replacement_character() -> None:
    env = read_imap(envelope(b"Subject: x\x00y\r\n\r\n"))
    assert isinstance(env, list)
    assert env[1] == "x\ufffdy".encode()


# --- BODYSTRUCTURE details --------------------------------------------------------------------


def test_bodystructure_deep_nesting_is_bounded() -> None:
    raw = MESSAGES["deep"]
    structure = bodystructure(raw)
    depth = deepest = 0
    for byte in structure:
        depth += byte == 0x28
        depth -= byte == 0x29
        deepest = max(deepest, depth)
    assert deepest == MAX_DEPTH + 2  # 50 multiparts, the leaf, the leaf's parameter list
    assert b'"application" "octet-stream" ("boundary" "b50")' in structure
    check_all(raw)
    leaf = section(raw, ".".join(["1"] * MAX_DEPTH))
    assert leaf is not None and leaf.startswith(b"--b50\r\n")


def test_bodystructure_nested_boundary_prefixes_do_not_confuse() -> None:
    structure = read_imap(bodystructure(MESSAGES["deep"]))
    node = structure
    for _ in range(MAX_DEPTH):  # one child per level: "--b1" never matched "--b10"
        assert isinstance(node, list) and isinstance(node[0], list) and isinstance(node[1], bytes)
        node = node[0]


def test_bodystructure_part_count_is_bounded() -> None:
    parts = b"".join(b"--b\r\n\r\n%d\r\n" % i for i in range(MAX_PARTS + 50))
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    msg = ParsedMessage(raw)
    assert len(msg.root.children) <= MAX_PARTS
    read_imap(bodystructure(msg))


def test_bodystructure_rfc2231_and_defaults() -> None:
    raw = (
        b'Content-Type: application/x; b*1="B1"; a=1; b*0*=utf-8\'\'A%20; c*="x"; '
        b'b*2="b 2"; bad\r\nContent-Disposition: attachment\r\nContent-Language: en\r\n\r\nx'
    )
    assert bodystructure(raw) == (
        b'("application" "x" ("a" "1" "b*" "utf-8\'\'A%20B1b 2" "c*" "x") NIL NIL "7bit" 1 NIL'
        b' ("attachment" NIL) ("en") NIL)'
    )
    text = b"Content-Type: text/plain; format=flowed\r\nContent-Type: text/html\r\n\r\nx"
    assert bodystructure(text).startswith(
        b'("text" "plain" ("format" "flowed" "charset" "us-ascii")'
    )


def test_bodystructure_8bit_parameter_is_a_literal() -> None:
    raw = 'Content-Type: application/pdf; name="résultat.pdf"\r\n\r\nx'.encode()
    assert b'("name" {13}\r\nr\xc3\xa9sultat.pdf)' in bodystructure(raw)
    check_all(raw)


def test_bodystructure_message_rfc822_counts_lines_of_whole_message() -> None:
    node = read_imap(bodystructure(MESSAGES["forward"]))
    assert isinstance(node, list) and isinstance(node[1], list)
    inner = node[1]
    assert inner[:2] == [b"message", b"rfc822"]
    assert inner[6] == 390 and inner[9] == 17


def test_digest_children_default_to_message_rfc822() -> None:
    raw = crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: d1\n\nbody\n--d--\n")
    node = read_imap(bodystructure(raw))
    assert isinstance(node, list) and isinstance(node[0], list)
    assert node[0][:2] == [b"message", b"rfc822"]


# --- BODY[section] ----------------------------------------------------------------------------


def test_section_of_simple_message() -> None:
    raw = MESSAGES["simple"]
    assert section(raw, "1") == text_bytes(raw)
    assert section(raw, "1.MIME") == header_bytes(raw)
    assert section(raw, "TEXT") == b"Bonjour,\r\nVeuillez trouver le compte rendu ci-joint.\r\n"
    assert section(raw, "1.1") is None  # a simple message has only part 1
    assert section(raw, "2") is None
    assert section(raw, "1.HEADER") is None  # only for message/rfc822 parts


def test_section_header_fields() -> None:
    raw = MESSAGES["simple"]
    assert section(raw, "HEADER.FIELDS (subject FROM bogus)") == (
        b'From: "Dr Alice Martin" <alice.martin@hopital.mssante.fr>\r\n'
        b"Subject: Compte rendu\r\n\r\n"
    )
    assert section(raw, 'HEADER.FIELDS ("Message-ID")') == (
        b"Message-ID: <cr-1@hopital.mssante.fr>\r\n\r\n"
    )
    assert section(raw, "HEADER.FIELDS (Nothing)") == b"\r\n"
    # Without a blank line in the header, .NOT adds none (HEADER.FIELDS always does).
    assert section(b"A: 1\r\nB: 2\r\n", "HEADER.FIELDS.NOT (A)") == b"B: 2\r\n"
    assert section(b"A: 1\r\nB: 2\r\n", "HEADER.FIELDS (A)") == b"A: 1\r\n\r\n"
    not_fields = section(raw, "HEADER.FIELDS.NOT (From To Subject Date Message-ID MIME-Version)")
    assert not_fields == (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )


def test_section_header_fields_keep_folding_and_order() -> None:
    raw = b"Subject: folded\r\n  subject\r\nTo: a@b.c,\r\n d@e.f\r\nFrom: x@y\r\nSubject: 2\r\n\r\n"
    assert section(raw, "HEADER.FIELDS (TO SUBJECT)") == (
        b"Subject: folded\r\n  subject\r\nTo: a@b.c,\r\n d@e.f\r\nSubject: 2\r\n\r\n"
    )


def test_section_of_attached_message() -> None:
    raw = MESSAGES["forward"]
    inner = section(raw, "2")
    assert inner is not None and inner.startswith(b'From: "Dr Alice Martin"')
    assert section(raw, "2.MIME") == (
        b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    )
    header, text = section(raw, "2.HEADER"), section(raw, "2.TEXT")
    assert header is not None and text is not None and header + text == inner
    assert section(raw, "2.HEADER.FIELDS (Subject)") == b"Subject: Compte rendu\r\n\r\n"
    assert section(raw, "2.1") == b"Texte."
    assert section(raw, "2.2") == b"<p>Texte.</p>"
    assert section(raw, "2.1.MIME") == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert section(raw, "2.2.1") == b"<p>Texte.</p>"  # Dovecot: a leaf is its own part 1
    assert section(raw, "2.2.1.1") is None
    assert section(raw, "2.3") is None
    assert section(raw, "1.TEXT") is None


def test_section_of_multipart_parts() -> None:
    raw = MESSAGES["mixed_pdf"]
    assert section(raw, "1") == b"Voir la piece jointe."
    pdf = section(raw, "2")
    assert pdf is not None and base64.b64decode(pdf) == PDF
    assert binary_section(raw, (2,)) == PDF
    assert binary_section(raw, (1,)) == b"Voir la piece jointe."
    assert binary_section(raw, (3,)) is None
    assert binary_section(raw, ()) == raw


def test_binary_section_decodes_and_refuses_unknown_encodings() -> None:
    xdm = binary_section(MESSAGES["xdm"], (2,))
    assert xdm == XDM
    assert xdm is not None
    with zipfile.ZipFile(io.BytesIO(xdm)) as archive:
        assert "IHE_XDM/SUBSET01/METADATA.XML" in archive.namelist()
    qp = binary_section(MESSAGES["alternative"], (1,))
    assert qp == "Résultats normaux.".encode("iso-8859-1")
    uuencoded = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin"
    with pytest.raises(UnknownTransferEncoding):
        binary_section(uuencoded, (1,))


def test_content_fields_need_mime() -> None:
    """Without MIME-Version or Content-Type, outside a multipart, Content-* fields are ignored
    (RFC 2045 §4; Dovecot does the same), so this body is not base64 for anyone."""
    fields = b"Content-Transfer-Encoding: base64\r\nContent-Language: en\r\n\r\naGk=\r\n"
    assert bodystructure(fields) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)'
    )
    assert binary_section(fields, (1,)) == b"aGk=\r\n"
    mime = b"MIME-Version: 1.0\r\n" + fields
    assert bodystructure(mime) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "base64" 6 1 NIL NIL ("en") NIL)'
    )
    assert binary_section(mime, (1,)) == b"hi"
    # Junk after the subtype or the encoding token makes the field invalid (as Dovecot).
    assert bodystructure(b"Content-Type: message/rfc822 junk\r\n\r\nx").startswith(b'("text"')
    junk = b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n junk\r\n\r\nx"
    assert b'"7bit"' in bodystructure(junk)


def test_section_of_truncated_and_malformed() -> None:
    assert section(MESSAGES["truncated"], "2") == b"JVBERi0xLjQK"
    assert section(MESSAGES["truncated"], "1") == b"first"
    assert section(MESSAGES["boundary_never_seen"], "1") == b""
    whole = section(MESSAGES["no_boundary"], "1")
    assert whole is not None and whole.startswith(b"--x\r\n")  # readable as text/plain


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_section_mime_plus_body_is_the_raw_part(name: str) -> None:
    raw = MESSAGES[name]
    msg = ParsedMessage(raw)
    paths = part_paths(msg.root)
    assert paths
    for path, part in paths:
        mime, content = section(msg, dotted(path) + ".MIME"), section(msg, dotted(path))
        assert mime is not None and content is not None
        assert mime + content == raw[part.start : part.end]
    header, text = section(msg, "HEADER"), section(msg, "TEXT")
    assert header is not None and text is not None and header + text == raw


def test_parse_section() -> None:
    assert parse_section("") == SectionSpec()
    assert parse_section("1.2.3") == SectionSpec((1, 2, 3))
    assert parse_section("header") == SectionSpec((), "HEADER")
    assert parse_section('1.2.header.fields.not (From "X-A b")') == SectionSpec(
        (1, 2), "HEADER.FIELDS.NOT", ("From", "X-A b")
    )
    assert parse_section("4.MIME") == SectionSpec((4,), "MIME")
    for bad in (
        "MIME",
        "0",
        "1.0",
        "HEADER.FIELDS",
        "HEADER.FIELDS ()",
        "TEXT (a)",
        "1.FOO",
        "HEADER.FIELDS (a",
        "1..2",
        "HEADER.FIELDS (a) b",
        "١",
    ):
        with pytest.raises(ValueError):
            parse_section(bad)


def test_section_accepts_a_parsed_section_object() -> None:
    class Section:  # stands for fetch_items.Section of the command parser
        part = (2,)
        text = "HEADER.FIELDS"
        fields = ("subject",)

    assert section(MESSAGES["forward"], Section()) == b"Subject: Compte rendu\r\n\r\n"
    assert section(MESSAGES["forward"], SectionSpec((1,))) == b"Message transfere."


def test_partial() -> None:
    data = b"0123456789"
    assert partial(data, 0, 4) == b"0123"
    assert partial(data, 8, 10) == b"89"
    assert partial(data, 20, 5) == b""
    assert partial(data, 3) == b"3456789"
    assert partial(data, -1, 2) == b"01"
    assert partial(data, 2, -5) == b""


def test_sizes_and_helpers() -> None:
    raw = MESSAGES["mixed_pdf"]
    assert rfc822_size(raw) == rfc822_size(ParsedMessage(raw)) == len(raw)
    assert header_bytes(raw).endswith(b'boundary="b1"\r\n\r\n')
    assert text_bytes(raw).startswith(b"--b1\r\n")
    assert ParsedMessage(raw).header_values("SUBJECT") == [b" Ordonnance"]


def test_header_only_message() -> None:
    raw = b"Subject: no body"
    assert header_bytes(raw) == raw and text_bytes(raw) == b""
    assert bodystructure(raw) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
    )
    check_all(raw)


def test_large_attachment_is_fast_enough() -> None:
    blob = base64.encodebytes(bytes(range(256)) * 20_000)  # ~7 MB of base64 lines
    raw = (
        b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\n"
        b"hi\r\n--q\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n" + blob.replace(b"\n", b"\r\n") + b"--q--\r\n"
    )
    node = read_imap(bodystructure(raw))
    assert isinstance(node, list) and isinstance(node[1], list)
    assert binary_section(raw, (2,)) == bytes(range(256)) * 20_000


# --- strings and dates ------------------------------------------------------------------------


def test_imap_string() -> None:
    assert imap_string(None) == b"NIL"
    assert imap_string("") == b'""'
    assert imap_string(b'a "b" \\c') == b'"a \\"b\\" \\\\c"'
    assert imap_string("é") == b"{2}\r\n\xc3\xa9"
    assert imap_string(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert imap_string(b"a\x00b") == b"{3}\r\na\x80b"
    assert imap_literal(b"x\x00") == b"{2}\r\nx\x80"


def test_imap_astring() -> None:
    assert imap_astring("INBOX") == b"INBOX"
    assert imap_astring("a]b") == b"a]b"
    assert imap_astring("nil") == b'"nil"'
    assert imap_astring("") == b'""'
    assert imap_astring("two words") == b'"two words"'
    assert imap_astring("a%b") == b'"a%b"'
    assert imap_astring("Réunion") == b"{8}\r\nR\xc3\xa9union"


def test_internaldate_string() -> None:
    tz = timezone(timedelta(hours=-7))
    assert internaldate_string(datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz)) == (
        "17-Jul-1996 02:44:25 -0700"
    )
    assert internaldate_string(datetime(2024, 1, 2, 3, 4, 5)) == "02-Jan-2024 03:04:05 +0000"
    paris = timezone(timedelta(hours=5, minutes=30))
    assert internaldate_string(datetime(2024, 12, 31, 23, 59, 59, tzinfo=paris)) == (
        "31-Dec-2024 23:59:59 +0530"
    )
    assert internaldate_string(datetime(2024, 3, 1, tzinfo=UTC)).endswith("+0000")


# --- hostile input ----------------------------------------------------------------------------

_LINES = [
    b"Content-Type: multipart/mixed; boundary=a",
    b'Content-Type: multipart/alternative; boundary="b"',
    b"Content-Type: multipart/digest; boundary=a",
    b"Content-Type: message/rfc822",
    b"Content-Type: text/plain; charset=utf-8; name*0=x; name*1*=%C3%A9",
    b"Content-Type: garbage/",
    b"Content-Transfer-Encoding: base64",
    b'Content-Disposition: attachment; filename="\xc3\xa9.pdf"',
    b"Content-Language: fr, (c) en",
    b'From: "A (b)" <a@b>, g: c@d;, =?utf-8?q?x?= <e@f',
    b'To: <@r:x@y>, "unterminated',
    b"Subject: =?utf-8?b?w6k=?= \xff\x00",
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000",
    b" folded continuation",
    b"\tfolded (comment",
    b"--a",
    b"--a--",
    b"--b",
    b"--b--",
    b"--a  ",
    b"",
    b"",
    b"text \x80\xfe",
    b"no colon header",
    b"(",
    b")",
    b"{5}",
    b'"',
]


@st.composite
def mime_like(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(_LINES), max_size=60))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    tail = draw(st.binary(max_size=20))
    return eol.join(lines) + tail


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_any_bytes_render(raw: bytes) -> None:
    check_all(raw)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mime_like())
def test_mime_like_bytes_render(raw: bytes) -> None:
    check_all(raw)
    msg = ParsedMessage(raw)
    for path, _part in part_paths(msg.root)[:50]:
        try:
            binary_section(msg, path)
        except UnknownTransferEncoding:
            pass
