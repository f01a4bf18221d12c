"""One scripted IMAP conversation, run against Dovecot and mssante, and its normalisation.

:func:`build_script` returns the conversation: raw command lines with their tags, on two
connections (``main`` starts in plaintext on the IMAP port and upgrades with STARTTLS;
``side`` uses IMAPS and appends a message while ``main`` is in IDLE). It covers the
extensions of issue 4: IDLE, UIDPLUS, MOVE, NAMESPACE, ENABLE, SPECIAL-USE, LIST-EXTENDED,
LIST-STATUS, CONDSTORE, QRESYNC, ESEARCH, LITERAL+, SASL-IR, ID, QUOTA, APPENDLIMIT,
UNSELECT, CHILDREN, plus error cases. Values learnt during the conversation (UIDVALIDITY,
HIGHESTMODSEQ, a message's MODSEQ, the quota root) are written ``<<name>>`` in later
commands and substituted when they are sent.

:func:`normalise` turns the responses into comparable lines, one list per command.

What is kept: tags; status (OK/NO/BAD/BYE/PREAUTH); response-code names and their
arguments; flag sets (sorted, system flags in canonical case); EXISTS/RECENT/EXPUNGE
numbers; the FETCH data of each message (items sorted by name); UID and sequence numbers
and their order in FETCH, SEARCH, ESEARCH, VANISHED and COPYUID/APPENDUID; mailbox names,
delimiters and attributes; RFC822.SIZE (every message is APPENDed, so sizes are the
literal's size and identical on every server); ENVELOPE and BODYSTRUCTURE (with MIME type,
subtype, encoding and parameter names case-folded: RFC 2045 says they are
case-insensitive); body sections' bytes.

What is dropped or replaced: human-readable text after status and codes (Dovecot adds
timings); ``* OK`` without a code (keep-alives, progress); UIDVALIDITY values
(``<uidvalidity>``, they are random or time based), MODSEQ/HIGHESTMODSEQ values
(``<modseq>``: each server numbers its own transactions; what is compared is that they
are there); APPENDUID/COPYUID UIDVALIDITY (the UIDs are kept); QUOTA numbers (``<n>``:
usage is counted in different units and limits are configuration); INTERNALDATE of
messages appended without a date (``<now>``, within two days of the test's clock; other
dates are compared as UTC instants);
the ID parameters (each server names itself); capabilities outside issue 4's list (each
server has its own extras: SORT, THREAD, NOTIFY…); unsolicited untagged responses that are
not ordered (FLAGS, LIST, STATUS, OK codes…) are sorted within a command because their order
is not specified, while FETCH, EXPUNGE, VANISHED and SEARCH keep their order.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imap_reference import PLAINTEXT_SOURCE, RawImap, Reply

FAILED_LOGIN_SOURCE = "127.0.0.3"

# -- messages (fixed bytes) ----------------------------------------------------------------


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


MSG_CONSULTATION = _crlf("""\
Date: Thu, 14 Mar 2024 09:28:41 +0100
From: "Dr Camille Martin" <camille.martin@alpha.mssante.fr>
To: =?utf-8?q?Dr_L=C3=A9a_Dubois?= <lea.dubois@beta.mssante.fr>
Cc: secretariat.cardio@alpha.mssante.fr
Subject: =?utf-8?q?Compte_rendu_de_consultation_=E2=80=93_M=2E_Bernard?=
Message-ID: <cr-20240314-0001@alpha.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable
X-Mailer: mssante-conversation 1.0

Ch=C3=A8re cons=C5=93ur,

Je vous adresse le compte rendu de la consultation de M. Hugo Bernard, vu ce
jour pour un bilan cardiologique. L'=C3=A9lectrocardiogramme est normal.

Bien confraternellement,
Dr Camille Martin
""")

MSG_BIOLOGIE = _crlf("""\
Date: Fri, 15 Mar 2024 07:02:10 +0100
From: Laboratoire Biopole <resultats@labo-biopole.mssante.fr>
To: camille.martin@alpha.mssante.fr
Subject: =?UTF-8?B?UsOpc3VsdGF0cyBiaW9sb2dpcXVlcyAtIEJFUk5BUkQgSHVnbw==?=
Message-ID: <bio-5521@labo-biopole.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Bonjour Docteur,

Les résultats du bilan lipidique de M. Bernard sont disponibles :
cholestérol LDL 1,32 g/L, HDL 0,58 g/L, triglycérides 0,91 g/L.

Laboratoire Biopôle
""")

_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _b64_lines(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


MSG_PDF = _crlf(f"""\
Date: Mon, 18 Mar 2024 16:45:00 +0100
From: "CH Saint-Joseph - Cardiologie" <cardiologie@ch-saint-joseph.mssante.fr>
To: camille.martin@alpha.mssante.fr
Subject: CR d'hospitalisation - BERNARD Hugo
Message-ID: <crh-7781@ch-saint-joseph.mssante.fr>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=_mss_pdf_01"

--=_mss_pdf_01
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Veuillez trouver ci-joint le compte rendu d'hospitalisation de votre patient.

--=_mss_pdf_01
Content-Type: application/pdf; name="CR_hospitalisation.pdf"
Content-Disposition: attachment; filename="CR_hospitalisation.pdf"
Content-Transfer-Encoding: base64

{_b64_lines(_PDF)}
--=_mss_pdf_01--
""")

# An IHE XDM archive (IHE ITI TF-1 §16) as MSSanté clients attach it: INDEX.HTM,
# README.TXT, IHE_XDM/SUBSET01/{METADATA.XML,DOC0001.XML}; stored, fixed timestamps.
_IHE_XDM_ZIP_B64 = """\
UEsDBBQAAAAAAMBLblju52thUgAAAFIAAAAJAAAASU5ERVguSFRNPGh0bWw+PGJvZHk+PGEgaHJl
Zj0iSUhFX1hETS9TVUJTRVQwMS9ET0MwMDAxLlhNTCI+Q1IgYmlvbG9naWU8L2E+PC9ib2R5Pjwv
aHRtbD4NClBLAwQUAAAAAADAS25Yph5+gCIAAAAiAAAACgAAAFJFQURNRS5UWFRBcmNoaXZlIElI
RSBYRE0gLSBNU1NhbnRlIC0gdGVzdA0KUEsDBBQAAAAAAMBLblgRibgB6AAAAOgAAAAdAAAASUhF
X1hETS9TVUJTRVQwMS9NRVRBREFUQS5YTUw8P3htbCB2ZXJzaW9uPSIxLjAiIGVuY29kaW5nPSJV
VEYtOCI/Pg0KPGxjbTpTdWJtaXRPYmplY3RzUmVxdWVzdCB4bWxuczpsY209InVybjpvYXNpczpu
YW1lczp0YzplYnhtbC1yZWdyZXA6eHNkOmxjbTozLjAiPjxyaW06UmVnaXN0cnlPYmplY3RMaXN0
IHhtbG5zOnJpbT0idXJuOm9hc2lzOm5hbWVzOnRjOmVieG1sLXJlZ3JlcDp4c2Q6cmltOjMuMCIv
PjwvbGNtOlN1Ym1pdE9iamVjdHNSZXF1ZXN0Pg0KUEsDBBQAAAAAAMBLblioGX+agwAAAIMAAAAc
AAAASUhFX1hETS9TVUJTRVQwMS9ET0MwMDAxLlhNTDw/eG1sIHZlcnNpb249IjEuMCIgZW5jb2Rp
bmc9IlVURi04Ij8+DQo8Q2xpbmljYWxEb2N1bWVudCB4bWxucz0idXJuOmhsNy1vcmc6djMiPjx0
aXRsZT5DUiBkZSBiaW9sb2dpZTwvdGl0bGU+PC9DbGluaWNhbERvY3VtZW50Pg0KUEsBAhQDFAAA
AAAAwEtuWO7na2FSAAAAUgAAAAkAAAAAAAAAAAAAAIABAAAAAElOREVYLkhUTVBLAQIUAxQAAAAA
AMBLblimHn6AIgAAACIAAAAKAAAAAAAAAAAAAACAAXkAAABSRUFETUUuVFhUUEsBAhQDFAAAAAAA
wEtuWBGJuAHoAAAA6AAAAB0AAAAAAAAAAAAAAIABwwAAAElIRV9YRE0vU1VCU0VUMDEvTUVUQURB
VEEuWE1MUEsBAhQDFAAAAAAAwEtuWKgZf5qDAAAAgwAAABwAAAAAAAAAAAAAAIAB5gEAAElIRV9Y
RE0vU1VCU0VUMDEvRE9DMDAwMS5YTUxQSwUGAAAAAAQABAAEAQAAowIAAAAA"""

MSG_XDM = _crlf(f"""\
Date: Tue, 19 Mar 2024 11:15:27 +0100
From: Laboratoire Biopole <resultats@labo-biopole.mssante.fr>
To: camille.martin@alpha.mssante.fr
Subject: =?utf-8?q?CR_de_biologie_structur=C3=A9_=28CDA_R2_N1=29?=
Message-ID: <xdm-0042@labo-biopole.mssante.fr>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=_mss_xdm_01"
X-MSSANTE-IHE-XDM: 1

--=_mss_xdm_01
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Compte rendu structuré de biologie au format IHE XDM (CDA R2).

--=_mss_xdm_01
Content-Type: application/zip; name="IHE_XDM.ZIP"
Content-Disposition: attachment; filename="IHE_XDM.ZIP"
Content-Transfer-Encoding: base64

{_IHE_XDM_ZIP_B64}
--=_mss_xdm_01--
""")

MSG_REPLY = _crlf("""\
Date: Wed, 20 Mar 2024 18:03:55 +0100
From: =?utf-8?q?Dr_L=C3=A9a_Dubois?= <lea.dubois@beta.mssante.fr>
To: "Dr Camille Martin" <camille.martin@alpha.mssante.fr>
Subject: =?utf-8?q?Re=3A_Compte_rendu_de_consultation_=E2=80=93_M=2E_Bernard?=
Message-ID: <re-cr-20240320@beta.mssante.fr>
In-Reply-To: <cr-20240314-0001@alpha.mssante.fr>
References: <cr-20240314-0001@alpha.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Merci pour ce compte rendu, je revois le patient dans un mois.
""")

MSG_DRAFT = _crlf("""\
From: "Dr Camille Martin" <camille.martin@alpha.mssante.fr>
To: hugo.bernard@alpha.mssante.fr
Subject: Brouillon - courrier de sortie
Message-ID: <draft-01@alpha.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Courrier de sortie à compléter.
""")

MSG_SENT = _crlf("""\
Date: Thu, 21 Mar 2024 08:00:00 +0100
From: "Dr Camille Martin" <camille.martin@alpha.mssante.fr>
To: lea.dubois@beta.mssante.fr
Subject: Demande d'avis - ECG
Message-ID: <sent-01@alpha.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Pourriez-vous relire l'ECG joint au dossier ?
""")

MSG_IDLE = _crlf("""\
Date: Fri, 22 Mar 2024 10:10:10 +0100
From: Laboratoire Biopole <resultats@labo-biopole.mssante.fr>
To: camille.martin@alpha.mssante.fr
Subject: Nouveau resultat disponible
Message-ID: <bio-5522@labo-biopole.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Un nouveau resultat est disponible.
""")

# APPEND dates (RFC 3501 date-time); INTERNALDATEs equal to one of them are compared.
DATE_BIO = "15-Mar-2024 07:02:11 +0100"
DATE_PDF = "18-Mar-2024 16:45:02 +0100"
DATE_XDM = "19-Mar-2024 11:15:30 +0100"
DATE_REPLY = "20-Mar-2024 18:04:00 +0100"
DATE_SENT = "21-Mar-2024 08:00:01 +0100"
FIXED_DATES = (DATE_BIO, DATE_PDF, DATE_XDM, DATE_REPLY, DATE_SENT)


# -- steps ---------------------------------------------------------------------------------

Capture = Callable[[Reply], str]


@dataclass(frozen=True)
class Cmd:
    """One command: ``line`` is what follows the tag (literals inline, no final CRLF)."""

    tag: str
    line: bytes
    conn: str = "main"
    capture: Mapping[str, Capture] = field(default_factory=dict)


@dataclass(frozen=True)
class StartTls:
    tag: str
    conn: str = "main"


@dataclass(frozen=True)
class Open:
    """Open a connection (IMAPS when ``implicit_tls``, else the IMAP port in plaintext),
    from ``source`` (a loopback address) when given."""

    conn: str
    implicit_tls: bool
    source: str | None = None


@dataclass(frozen=True)
class Idle:
    """IDLE on ``conn``; once the continuation is in, run ``during`` (on other
    connections), wait up to ``timeout`` for an untagged response containing ``until``,
    then send DONE."""

    tag: str
    during: tuple[Cmd, ...]
    until: bytes = b"EXISTS"
    timeout: float = 5.0
    conn: str = "main"


Step = Cmd | StartTls | Open | Idle


def C(tag: str, line: str | bytes, conn: str = "main", **capture: Capture) -> Cmd:
    return Cmd(tag, line.encode("utf-8") if isinstance(line, str) else line, conn, capture)


def append(
    tag: str, mailbox: str, message: bytes, *, flags: str | None = None,
    date: str | None = None, plus: bool = False, conn: str = "main",
) -> Cmd:  # fmt: skip
    """APPEND with a synchronising literal, or a LITERAL+ one when ``plus``."""
    head = f"APPEND {mailbox}"
    if flags is not None:
        head += f" ({flags})"
    if date is not None:
        head += f' "{date}"'
    head += f" {{{len(message)}{'+' if plus else ''}}}\r\n"
    return Cmd(tag, head.encode("utf-8") + message, conn)


def literal(text: str, plus: bool = False) -> bytes:
    data = text.encode("utf-8")
    return f"{{{len(data)}{'+' if plus else ''}}}\r\n".encode() + data


# Captures: values learnt from a reply, substituted for <<name>> in later commands.

_CODE = re.compile(rb"\[([A-Z-]+) ([^\]]*)\]")


def code_arg(name: str) -> Capture:
    def get(reply: Reply) -> str:
        for line in [*reply.untagged, reply.tagged or b""]:
            for match in _CODE.finditer(line):
                if match.group(1).decode() == name:
                    return match.group(2).decode().split(" ")[0]
        raise AssertionError(f"no [{name} …] in {reply}")

    return get


def fetch_modseq(reply: Reply) -> str:
    for line in reply.untagged:
        match = re.search(rb"MODSEQ \((\d+)\)", line)
        if match:
            return match.group(1).decode()
    raise AssertionError(f"no MODSEQ in {reply}")


def quota_root(reply: Reply) -> str:
    for line in reply.untagged:
        if line.upper().startswith(b"* QUOTAROOT "):
            tokens = tokenize(line[2:])
            if len(tokens) > 2:
                return json.dumps(_text(tokens[2]))
            return '""'
    raise AssertionError(f"no QUOTAROOT in {reply}")


def sasl_plain(login: str, password: str) -> str:
    return base64.b64encode(f"\0{login}\0{password}".encode()).decode("ascii")


def build_script(login: str, password: str) -> list[Step]:
    """The conversation, for a fresh mailbox holding only INBOX, Sent, Drafts, Trash and
    Archive (empty), logging in as ``login``."""
    return [
        # -- not authenticated, plaintext, then STARTTLS ---------------------------------
        # A wrong password first, from its own address: servers slow down the next logins
        # from an address that failed (Dovecot's auth penalty, mssante's throttling).
        Open("probe", implicit_tls=True, source=FAILED_LOGIN_SOURCE),
        C("prb1", f'LOGIN "{login}" "not-the-password"', conn="probe"),
        C("prb2", "LOGOUT", conn="probe"),
        Open("main", implicit_tls=False, source=PLAINTEXT_SOURCE[0]),
        C("cap1", "CAPABILITY"),
        C("nop1", "NOOP"),
        C("lgn1", f'LOGIN "{login}" "{password}"'),  # refused before TLS
        StartTls("tls1"),
        C("cap2", "CAPABILITY"),
        C("aut1", f"AUTHENTICATE PLAIN {sasl_plain(login, password)}"),  # SASL-IR
        # -- authenticated ----------------------------------------------------------------
        C("cap3", "CAPABILITY"),
        C("id1", 'ID ("name" "mssante-conversation" "version" "1")'),
        C("ns1", "NAMESPACE"),
        C("en1", "ENABLE CONDSTORE"),
        C("lst1", 'LIST "" ""'),
        C("lst2", 'LIST "" "*"'),
        C("lst3", 'LIST "" "%"'),
        C("lst4", 'LIST (SPECIAL-USE) "" "*"'),
        C("lst5", 'LIST "" "*" RETURN (SPECIAL-USE)'),
        C("lst6", 'LIST "" "*" RETURN (CHILDREN)'),
        C("cre1", "CREATE Projets"),
        C("cre2", "CREATE Projets/2026"),
        C("cre3", "CREATE Projets/2026/Cardiologie"),
        C("cre4", 'CREATE "Dossiers patients/R&AOk-sultats"'),  # "Résultats", mUTF-7
        C("cre5", "CREATE Projets"),  # already exists
        C("cre6", "CREATE INBOX"),
        C("lst7", 'LIST "" "Projets/*" RETURN (CHILDREN)'),
        C("lst8", 'LIST "" "Projets/%"'),
        C("lst9", 'LIST "" "Dossiers patients"'),  # \HasChildren, created implicitly
        C("sub1", "SUBSCRIBE Projets/2026"),
        C("sub2", 'SUBSCRIBE "Dossiers patients/R&AOk-sultats"'),
        C("lsb1", 'LSUB "" "*"'),
        C("lst10", 'LIST (SUBSCRIBED) "" "*"'),
        C("lst11", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'),  # CHILDINFO
        C("lst12", 'LIST "" "*" RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)'),
        C("lst13", 'LIST "" ("INBOX" "Sent" "Projets/*")'),  # multiple patterns
        C("uns1", "UNSUBSCRIBE Projets/2026"),
        C("lsb2", 'LSUB "" "Projets/*"'),
        C("ren1", "RENAME Projets/2026/Cardiologie Projets/2026/Cardio"),
        C("ren2", "RENAME Projets Dossiers"),  # the hierarchy moves with it
        C("lst14", 'LIST "" "Dossiers*"'),
        C("ren3", "RENAME Manquant Autre"),
        C("ren4", "RENAME Dossiers Sent"),  # target exists
        C("del1", "DELETE Dossiers/2026/Cardio"),
        C("del2", "DELETE Dossiers/2026"),
        C("del3", "DELETE Manquant"),
        C("lst15", 'LIST "" "*" RETURN (CHILDREN)'),
        C("sta1", "STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"),
        C("sta2", "STATUS Drafts (MESSAGES UNSEEN)"),
        C("sta3", "STATUS Manquant (MESSAGES)"),
        # -- APPEND: synchronising literal, LITERAL+, flags, dates ---------------------
        append("app1", "INBOX", MSG_CONSULTATION),
        append("app2", "INBOX", MSG_BIOLOGIE, flags="\\Seen", date=DATE_BIO, plus=True),
        append("app3", "INBOX", MSG_PDF, flags="\\Flagged $Label1", date=DATE_PDF),
        append("app4", "INBOX", MSG_XDM, flags="", date=DATE_XDM, plus=True),
        append("app5", "Drafts", MSG_DRAFT, flags="\\Draft \\Seen", plus=True),
        append("app6", "Sent", MSG_SENT, flags="\\Seen", date=DATE_SENT),
        append("app7", "Manquant", MSG_SENT, plus=True),  # TRYCREATE
        append("app8", "INBOX", MSG_REPLY, flags="\\Answered", date=DATE_REPLY),
        C("sta4", "STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN)"),
        C("lst16", 'LIST "" "%" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN UIDNEXT))'),
        C("quo1", "GETQUOTAROOT INBOX", qroot=quota_root),
        C("quo2", "GETQUOTA <<qroot>>"),
        # -- errors without a selected mailbox --------------------------------------------
        C("fet0", "FETCH 1 (FLAGS)"),
        C("sel0", "SELECT Manquant"),
        C("bad1", "FROBNICATE now"),
        C("bad2", "SELECT"),
        # -- EXAMINE (read-only) ------------------------------------------------------------
        C("exa1", "EXAMINE INBOX"),
        C("fet1", "FETCH 1:* (FLAGS UID)"),
        C("sto0", "STORE 1 +FLAGS (\\Deleted)"),
        # -- SELECT with CONDSTORE, FETCH ---------------------------------------------------
        C(
            "sel1",
            "SELECT INBOX (CONDSTORE)",
            uidvalidity=code_arg("UIDVALIDITY"),
            hms0=code_arg("HIGHESTMODSEQ"),
        ),
        C("fet2", "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)"),
        C("fet3", "UID FETCH 1:* (ENVELOPE)"),
        C("fet4", "FETCH 1:* (BODYSTRUCTURE)"),
        C("fet5", "FETCH 2 (BODY.PEEK[HEADER.FIELDS (From To Subject Message-ID)])"),
        C("fet6", "FETCH 1 (BODY[TEXT]<0.10>)"),  # sets \Seen
        C("fet7", "FETCH 1:* (FLAGS MODSEQ)"),
        C("fet8", "FETCH 3 (BODY.PEEK[1] BODY.PEEK[2.MIME])"),
        C("fet9", "UID FETCH 4 (RFC822.SIZE BODY.PEEK[HEADER.FIELDS.NOT (Date Received)])"),
        C("fet10", "FETCH 1,3 (UID BODY.PEEK[1.MIME])"),
        # -- STORE, CONDSTORE ------------------------------------------------------------
        C("sto1", "STORE 1 +FLAGS (\\Flagged)"),
        C("sto2", "STORE 2 -FLAGS.SILENT (\\Seen)"),
        C("sto3", "UID STORE 3 +FLAGS ($Label2)"),
        C("sto4", "STORE 4 FLAGS (\\Seen $Forwarded)"),
        C("fet11", "FETCH 4 (MODSEQ)", ms1=fetch_modseq),  # the highest so far
        C("sto5", "STORE 1 (UNCHANGEDSINCE <<ms1>>) +FLAGS (\\Answered)"),
        C("sto6", "STORE 1,2 (UNCHANGEDSINCE <<ms1>>) -FLAGS (\\Flagged)"),  # [MODIFIED 1]
        C("fet12", "FETCH 1:* (UID FLAGS) (CHANGEDSINCE <<hms0>>)"),
        C("bad3", "STORE 1 +FLAGS (\\Bogus)"),
        C("bad4", "FETCH 1 (FLAGS"),
        # -- SEARCH, ESEARCH --------------------------------------------------------------
        C("sea1", "SEARCH ALL"),
        C("sea2", "SEARCH UNSEEN"),
        C("sea3", "UID SEARCH FLAGGED"),
        C("sea4", "SEARCH FROM biopole"),
        Cmd("sea5", b"SEARCH CHARSET UTF-8 SUBJECT " + literal("résultats")),
        C("sea6", "SEARCH BEFORE 1-Jan-2025"),
        C("sea7", "SEARCH LARGER 1500"),
        C("sea8", 'SEARCH HEADER Message-ID "<crh-7781@ch-saint-joseph.mssante.fr>"'),
        C("sea9", "SEARCH MODSEQ <<hms0>>"),
        C("sea10", "SEARCH OR SEEN FLAGGED NOT DELETED"),
        C("sea11", "SEARCH KEYWORD $Label1"),
        C("sea12", "UID SEARCH UID 2:4 NOT ANSWERED"),
        C("sea13", 'SEARCH TEXT "compte rendu"'),
        C("esr1", "SEARCH RETURN (MIN MAX COUNT ALL) ALL"),
        C("esr2", "UID SEARCH RETURN (COUNT) UNSEEN"),
        C("esr3", "UID SEARCH RETURN () FLAGGED"),
        C("esr4", "SEARCH RETURN (MIN MAX) KEYWORD $Label1"),
        C("esr5", "UID SEARCH RETURN (ALL) SEEN"),
        # -- COPY, MOVE, EXPUNGE ----------------------------------------------------------
        C("cop1", "COPY 1:2 Archive"),
        C("cop2", "UID COPY 3 Manquant"),
        C("mov1", "MOVE 4 Archive"),
        C("mov2", "UID MOVE 5 Trash"),
        C("fet13", "FETCH 1:* (UID FLAGS)"),
        C("sto7", "STORE 2 +FLAGS.SILENT (\\Deleted)"),
        C("exp1", "EXPUNGE"),
        C("nop2", "NOOP"),
        C("chk1", "CHECK"),
        # -- IDLE, with a message appended from a second connection -----------------------
        Open("side", implicit_tls=True),
        C("s1", f'LOGIN "{login}" "{password}"', conn="side"),
        C("s2", "ID NIL", conn="side"),
        Idle("idl1", during=(append("s3", "INBOX", MSG_IDLE, conn="side"),)),
        C("fet14", "FETCH 1:* (UID FLAGS)"),
        # -- UIDPLUS: UID EXPUNGE only expunges the given UIDs ---------------------------
        C("sto8", "UID STORE 3,6 +FLAGS (\\Deleted)"),
        C("uex1", "UID EXPUNGE 6"),
        C("sea14", "SEARCH DELETED"),
        C("unsl1", "UNSELECT"),  # does not expunge UID 3
        C("sta5", "STATUS INBOX (MESSAGES UIDNEXT UNSEEN)"),
        C("s4", "STATUS INBOX (MESSAGES UNSEEN)", conn="side"),
        C("s5", "LOGOUT", conn="side"),
        # -- QRESYNC ------------------------------------------------------------------------
        C("en2", "ENABLE QRESYNC"),
        C("sel2", "SELECT INBOX (QRESYNC (<<uidvalidity>> <<hms0>>))"),
        C("uex2", "UID EXPUNGE 3"),  # VANISHED
        C("fet15", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE <<hms0>> VANISHED)"),
        C("sel3", "SELECT Archive (CONDSTORE)"),  # [CLOSED] first
        C("fet16", "FETCH 1:* (UID FLAGS)"),
        C("sea15", "UID SEARCH RETURN (MIN MAX COUNT) ALL"),
        C("sto9", "STORE 1:* +FLAGS.SILENT (\\Deleted)"),
        C("cls1", "CLOSE"),  # expunges silently
        C("exa2", "EXAMINE Archive"),
        C("cls2", "CLOSE"),
        C("sel4", "SELECT Trash"),
        C("fet17", "UID FETCH 1:* (FLAGS ENVELOPE)"),
        C("unsl2", "UNSELECT"),
        # -- final checks and errors in authenticated state -------------------------------
        C("sta6", "STATUS Archive (MESSAGES UIDNEXT)"),
        C("sta7", "STATUS Trash (MESSAGES UIDNEXT UNSEEN)"),
        C("sta8", "STATUS INBOX (APPENDLIMIT)"),
        C("lst17", 'LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT) SPECIAL-USE)'),
        C("del4", "DELETE INBOX"),
        C("del5", 'DELETE "Dossiers patients/R&AOk-sultats"'),
        C("lsb3", 'LSUB "" "*"'),
        C("fet18", "UID FETCH 1 (FLAGS)"),  # no mailbox selected
        C("bad5", "UID FROBNICATE 1"),
        C("unsl3", "UNSELECT"),  # nothing selected
        C("nop3", "NOOP"),
        C("lgo1", "LOGOUT"),
    ]


def command_count(script: Sequence[Step]) -> int:
    """Commands sent (STARTTLS, IDLE and the commands run during IDLE included)."""
    count = 0
    for step in script:
        if isinstance(step, (Cmd, StartTls)):
            count += 1
        elif isinstance(step, Idle):
            count += 1 + len(step.during)
    return count


# -- running -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    tag: str
    conn: str
    command: bytes
    reply: Reply


def _substitute(line: bytes, values: Mapping[str, str]) -> bytes:
    def replace(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode()
        if name not in values:
            raise AssertionError(f"<<{name}>> used before it was captured")
        return values[name].encode()

    return re.sub(rb"<<([a-z0-9_]+)>>", replace, line)


def _contains(needle: bytes) -> Callable[[bytes], bool]:
    return lambda response: needle in response


def run_conversation(
    host: str, imap_port: int, imaps_port: int, ca_file: Path, login: str, password: str,
    script: Sequence[Step] | None = None,
) -> list[Exchange]:  # fmt: skip
    """Play the script; every command's reply is recorded (greetings as ``*<conn>``)."""
    steps = build_script(login, password) if script is None else script
    connections: dict[str, RawImap] = {}
    values: dict[str, str] = {}
    transcript: list[Exchange] = []

    def run(cmd: Cmd) -> None:
        line = _substitute(cmd.line, values)
        reply = connections[cmd.conn].command(cmd.tag, line)
        transcript.append(Exchange(cmd.tag, cmd.conn, line, reply))
        for name, capture in cmd.capture.items():
            values[name] = capture(reply)

    try:
        for step in steps:
            if isinstance(step, Open):
                port = imaps_port if step.implicit_tls else imap_port
                client = RawImap(
                    host, port, ca_file, implicit_tls=step.implicit_tls,
                    source_address=(step.source, 0) if step.source else None,
                )  # fmt: skip
                connections[step.conn] = client
                greeting = Reply(f"*{step.conn}", [client.greeting], None)
                transcript.append(Exchange(greeting.tag, step.conn, b"", greeting))
            elif isinstance(step, StartTls):
                reply = connections[step.conn].starttls(step.tag)
                transcript.append(Exchange(step.tag, step.conn, b"STARTTLS", reply))
            elif isinstance(step, Idle):
                client = connections[step.conn]
                first = client.idle_start(step.tag)
                if not first.startswith(b"+"):
                    reply = Reply(step.tag, [], first)
                    if not first.startswith(step.tag.encode() + b" "):
                        reply = client.collect(step.tag, [first])
                    transcript.append(Exchange(step.tag, step.conn, b"IDLE", reply))
                    continue
                pending: list[Exchange] = []
                for cmd in step.during:
                    before = len(transcript)
                    run(cmd)
                    pending.extend(transcript[before:])
                    del transcript[before:]
                seen = client.idle_wait(_contains(step.until), step.timeout)
                reply = client.idle_done(step.tag, [first, *seen])
                transcript.append(Exchange(step.tag, step.conn, b"IDLE", reply))
                transcript.extend(pending)
            else:
                run(step)
    finally:
        for client in connections.values():
            client.close()
    return transcript


# -- parsing -------------------------------------------------------------------------------


class Atom(str):
    """An IMAP atom (numbers, flags, NIL, sequence sets, section specifiers…)."""


class String(bytes):
    """A quoted string or a literal: equivalent forms of the same value."""


Token = Atom | String | list  # type: ignore[type-arg]


def tokenize(data: bytes) -> list[Token]:
    """Atoms, strings (quoted or literal) and parenthesised lists of a response."""
    tokens, _ = _parse(data, 0, top=True)
    return tokens


def _parse(data: bytes, position: int, top: bool = False) -> tuple[list[Token], int]:
    out: list[Token] = []
    size = len(data)
    while position < size:
        char = data[position : position + 1]
        if char in (b" ", b"\r", b"\n"):
            position += 1
        elif char == b"(":
            inner, position = _parse(data, position + 1)
            out.append(inner)
        elif char == b")":
            if top:
                position += 1  # unbalanced: ignore
                continue
            return out, position + 1
        elif char == b'"':
            position += 1
            value = bytearray()
            while position < size and data[position : position + 1] != b'"':
                if data[position : position + 1] == b"\\":
                    position += 1
                value += data[position : position + 1]
                position += 1
            out.append(String(bytes(value)))
            position += 1
        elif char in (b"{", b"~") and (match := _LITERAL.match(data, position)):
            start = match.end()
            length = int(match.group(1))
            out.append(String(data[start : start + length]))
            position = start + length
        else:
            start = position
            depth = 0
            while position < size:
                c = data[position : position + 1]
                if c == b"[":
                    depth += 1
                elif c == b"]":
                    depth -= 1
                elif depth == 0 and c in (b" ", b"(", b")", b"\r", b"\n"):
                    break
                position += 1
            out.append(Atom(data[start:position].decode("utf-8", "replace")))
    return out, position


_LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n")


def _text(token: Token) -> str:
    if isinstance(token, String):
        return bytes(token).decode("utf-8", "replace")
    if isinstance(token, Atom):
        return str(token)
    return show(token)


def show(token: Token) -> str:
    """A canonical rendering: strings quoted (JSON), atoms bare, NIL upper case."""
    if isinstance(token, String):
        return json.dumps(bytes(token).decode("utf-8", "replace"), ensure_ascii=False)
    if isinstance(token, Atom):
        return "NIL" if token.upper() == "NIL" else str(token)
    return "(" + " ".join(show(t) for t in token) + ")"


def _split_code(rest: bytes) -> tuple[list[Token] | None, bytes]:
    """``[CODE args] text`` → (code tokens, text); (None, rest) without a code."""
    if not rest.startswith(b"["):
        return None, rest
    depth = 0
    quoted = False
    for index, byte in enumerate(rest):
        char = chr(byte)
        if quoted:
            if char == '"':
                quoted = False
            continue
        if char == '"':
            quoted = True
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
            if depth == 0 and char == "]":
                return tokenize(rest[1:index]), rest[index + 1 :]
    return tokenize(rest[1:]), b""


# -- normalisation -------------------------------------------------------------------------

# Capabilities compared (issue 4's list and the login ones); others are each server's own.
COMPARED_CAPABILITIES = frozenset(
    {
        "IMAP4REV1", "IMAP4REV2", "STARTTLS", "LOGINDISABLED", "AUTH=PLAIN", "AUTH=LOGIN",
        "IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "ENABLE", "SPECIAL-USE", "LIST-EXTENDED",
        "LIST-STATUS", "CONDSTORE", "QRESYNC", "ESEARCH", "LITERAL+", "SASL-IR", "ID",
        "QUOTA", "APPENDLIMIT", "UNSELECT", "CHILDREN",
    }
)  # fmt: skip

_SYSTEM_FLAGS = {
    f.upper(): f
    for f in (
        "\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent", "\\*",
        "\\Noselect", "\\NoInferiors", "\\Marked", "\\Unmarked", "\\HasChildren",
        "\\HasNoChildren", "\\NonExistent", "\\Subscribed", "\\Remote", "\\All",
        "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash",
    )
}  # fmt: skip

_ORDERED = {"FETCH", "EXPUNGE", "VANISHED", "SEARCH", "ESEARCH"}


def _flag(token: Token) -> str:
    text = _text(token)
    return _SYSTEM_FLAGS.get(text.upper(), text)


def _flags(token: Token) -> str:
    items = token if isinstance(token, list) else [token]
    return "(" + " ".join(sorted(_flag(t) for t in items)) + ")"


def canonical_set(text: str) -> str:
    """A sequence set in ascending, compressed form (``5,1:3`` → ``1:3,5``)."""
    if "*" in text or not text:
        return text
    numbers: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.partition(":")
            a, b = int(low), int(high or low)
            numbers.update(range(min(a, b), max(a, b) + 1))
    except ValueError:
        return text
    ordered = sorted(numbers)
    ranges: list[str] = []
    start = prev = ordered[0]
    for n in [*ordered[1:], -1]:
        if n == prev + 1:
            prev = n
            continue
        ranges.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = n
    return ",".join(ranges)


def _date(text: str, fixed: frozenset[str]) -> str:
    try:
        when = datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return text
    instant = when.astimezone(UTC)
    if instant.isoformat() in fixed or abs(datetime.now(UTC) - instant) > timedelta(days=2):
        return instant.isoformat()  # a given date (or a wrong one: shown as it is)
    return "<now>"


_FIXED_UTC = frozenset(
    datetime.strptime(d, "%d-%b-%Y %H:%M:%S %z").astimezone(UTC).isoformat() for d in FIXED_DATES
)


def _upper(token: Token) -> str:
    return show(token).upper() if not isinstance(token, list) else show(token)


def _params(token: Token) -> str:
    if not isinstance(token, list):
        return show(token)
    pairs = []
    for i in range(0, len(token) - 1, 2):
        pairs.append(f"{_upper(token[i])} {show(token[i + 1])}")
    return "(" + " ".join(pairs) + ")"


def _disposition(token: Token) -> str:
    if not isinstance(token, list) or not token:
        return show(token)
    return "(" + " ".join([_upper(token[0]), *(_params(t) for t in token[1:2])]) + ")"


def body_structure(token: Token) -> str:
    """BODYSTRUCTURE with case-insensitive parts (types, encodings, names) folded."""
    if not isinstance(token, list) or not token:
        return show(token)
    if isinstance(token[0], list):  # multipart: parts, subtype, [params, disp, lang, loc]
        index = 0
        parts = []
        while index < len(token) and isinstance(token[index], list):
            parts.append(body_structure(token[index]))
            index += 1
        rest = token[index:]
        out = [*parts]
        if rest:
            out.append(_upper(rest[0]))
        if len(rest) > 1:
            out.append(_params(rest[1]))
        if len(rest) > 2:
            out.append(_disposition(rest[2]))
        out.extend(show(t) for t in rest[3:])
        return "(" + " ".join(out) + ")"
    # basic: type subtype params id description encoding size [lines] [md5 disp lang loc]
    out = [_upper(token[0]), _upper(token[1]) if len(token) > 1 else ""]
    if len(token) > 2:
        out.append(_params(token[2]))
    out.extend(show(t) for t in token[3:5])
    if len(token) > 5:
        out.append(_upper(token[5]))
    out.extend(show(t) for t in token[6:7])
    kind = f"{_text(token[0])}/{_text(token[1])}".lower() if len(token) > 1 else ""
    extension_at = 7
    if kind.startswith("text/"):
        out.extend(show(t) for t in token[7:8])
        extension_at = 8
    elif kind == "message/rfc822":
        out.extend(show(t) for t in token[7:8])  # envelope
        if len(token) > 8:
            out.append(body_structure(token[8]))
        out.extend(show(t) for t in token[9:10])
        extension_at = 10
    extension = token[extension_at:]
    if extension:
        out.append(show(extension[0]))  # md5
    if len(extension) > 1:
        out.append(_disposition(extension[1]))
    out.extend(show(t) for t in extension[2:])
    return "(" + " ".join(out) + ")"


def _section_value(token: Token) -> str:
    if isinstance(token, String) and len(token) > 240:
        import hashlib

        digest = hashlib.sha256(bytes(token)).hexdigest()[:16]
        return f"<{len(token)} bytes sha256:{digest}>"
    return show(token)


def _fetch(number: str, items: Token) -> str:
    return _render_fetch(number, _fetch_items(items))


def _render_fetch(number: str, data: Mapping[str, str]) -> str:
    return f"* {number} FETCH (" + " ".join(f"{k} {v}" for k, v in sorted(data.items())) + ")"


def _fetch_items(items: Token) -> dict[str, str]:
    data: dict[str, str] = {}
    if not isinstance(items, list):
        return {"?": show(items)}
    for i in range(0, len(items) - 1, 2):
        key = _text(items[i]).upper()
        value = items[i + 1]
        if key == "FLAGS":
            data[key] = _flags(value)
        elif key == "MODSEQ":
            data[key] = "(<modseq>)"
        elif key == "INTERNALDATE":
            data[key] = _date(_text(value), _FIXED_UTC)
        elif key in ("BODYSTRUCTURE", "BODY"):
            data[key] = body_structure(value)
        elif key.startswith(("BODY[", "BINARY[", "RFC822")) and key != "RFC822.SIZE":
            data[key] = _section_value(value)
        else:
            data[key] = show(value)
    return data


def _code(tokens: list[Token]) -> tuple[str, list[str]]:
    """A response code → its normalised text and, for CAPABILITY, one line per capability."""
    name = _text(tokens[0]).upper()
    args = tokens[1:]
    extra: list[str] = []
    if name == "UIDVALIDITY":
        rendered = ["<uidvalidity>"]
    elif name == "HIGHESTMODSEQ":
        rendered = ["<modseq>"]
    elif name == "APPENDUID" and len(args) >= 2:
        rendered = ["<uidvalidity>", canonical_set(_text(args[1]))]
    elif name == "COPYUID" and len(args) >= 3:
        rendered = ["<uidvalidity>", _text(args[1]), _text(args[2])]
    elif name == "MODIFIED" and args:
        rendered = [canonical_set(_text(args[0]))]
    elif name == "PERMANENTFLAGS" and args:
        rendered = [_flags(args[0])]
    elif name == "CAPABILITY":
        rendered = []
        extra = _capabilities(args, "[CAPABILITY]")
    elif name == "APPENDLIMIT":
        rendered = ["<n>"]
    else:
        rendered = [show(a) for a in args]
    return "[" + " ".join([name, *rendered]) + "]", extra


def _capabilities(tokens: Sequence[Token], prefix: str) -> list[str]:
    names = set()
    for token in tokens:
        name = _text(token).upper()
        if name.startswith("APPENDLIMIT"):
            name = "APPENDLIMIT"
        if name in COMPARED_CAPABILITIES:
            names.add(name)
    return [f"{prefix} {name}" for name in sorted(names)]


def _status_response(head: str, status: str, rest: bytes) -> list[str]:
    code, _ = _split_code(rest.lstrip(b" "))
    if code is None:
        return [f"{head} {status}"]
    text, extra = _code(code)
    return [f"{head} {status} {text}", *extra]


def normalise_response(line: bytes) -> tuple[bool, list[str]]:
    """One response → (ordered?, normalised lines). Ordered responses keep their place."""
    if line.startswith(b"+"):
        return True, ["+"]
    if not line.startswith(b"* "):
        tag, _, rest = line.partition(b" ")
        status, _, rest = rest.partition(b" ")
        return True, _status_response(tag.decode(errors="replace"), status.decode().upper(), rest)
    body = line[2:]
    word, _, rest = body.partition(b" ")
    keyword = word.decode(errors="replace").upper()
    if keyword in ("OK", "NO", "BAD", "BYE", "PREAUTH"):
        code, _ = _split_code(rest.lstrip(b" "))
        if keyword == "OK" and code is None:
            return False, []  # keep-alive or progress text
        return False, _status_response("*", keyword, rest)
    if keyword.isdigit():
        kind, _, data = rest.partition(b" ")
        kind_text = kind.decode(errors="replace").upper()
        if kind_text == "FETCH":
            tokens = tokenize(data)
            return True, [_fetch(keyword, tokens[0] if tokens else [])]
        return kind_text in _ORDERED, [f"* {keyword} {kind_text}"]
    tokens = tokenize(rest)
    if keyword == "CAPABILITY":
        return False, _capabilities(tokens, "* CAPABILITY")
    if keyword == "FLAGS":
        return False, [f"* FLAGS {_flags(tokens[0] if tokens else [])}"]
    if keyword in ("LIST", "LSUB"):
        attrs = _flags(tokens[0]) if tokens else "()"
        delimiter = show(tokens[1]) if len(tokens) > 1 else "NIL"
        name = json.dumps(_text(tokens[2]), ensure_ascii=False) if len(tokens) > 2 else ""
        extended = " ".join(show(t) for t in tokens[3:])
        return False, [f"* {keyword} {attrs} {delimiter} {name} {extended}".rstrip()]
    if keyword == "STATUS":
        name = json.dumps(_text(tokens[0]), ensure_ascii=False) if tokens else ""
        pairs = tokens[1] if len(tokens) > 1 and isinstance(tokens[1], list) else []
        items = []
        for i in range(0, len(pairs) - 1, 2):
            key = _text(pairs[i]).upper()
            value = _text(pairs[i + 1])
            if key == "UIDVALIDITY":
                value = "<uidvalidity>"
            elif key == "HIGHESTMODSEQ":
                value = "<modseq>"
            elif key in ("APPENDLIMIT", "SIZE"):
                value = "<n>"
            items.append(f"{key} {value}")
        return False, [f"* STATUS {name} (" + " ".join(sorted(items)) + ")"]
    if keyword == "SEARCH":
        numbers = [show(t) for t in tokens if not isinstance(t, list)]
        modseq = " (MODSEQ <modseq>)" if any(isinstance(t, list) for t in tokens) else ""
        return True, [("* SEARCH " + " ".join(numbers)).rstrip() + modseq]
    if keyword == "ESEARCH":
        out = ["* ESEARCH"]
        index = 0
        if tokens and isinstance(tokens[0], list):
            out.append(show(tokens[0]))  # (TAG "…")
            index = 1
        if index < len(tokens) and _text(tokens[index]).upper() == "UID":
            out.append("UID")
            index += 1
        pairs = []
        for i in range(index, len(tokens) - 1, 2):
            key = _text(tokens[i]).upper()
            value = _text(tokens[i + 1])
            if key == "ALL":
                value = canonical_set(value)
            elif key == "MODSEQ":
                value = "<modseq>"
            pairs.append(f"{key} {value}")
        return True, [" ".join(out + sorted(pairs))]
    if keyword == "VANISHED":
        earlier = ""
        if tokens and isinstance(tokens[0], list):
            earlier = " " + show(tokens[0]).upper()
            tokens = tokens[1:]
        uids = canonical_set(_text(tokens[0])) if tokens else ""
        return True, [f"* VANISHED{earlier} {uids}"]
    if keyword == "ENABLED":
        return False, ["* ENABLED " + " ".join(sorted(_text(t).upper() for t in tokens))]
    if keyword == "ID":
        return False, ["* ID " + ("NIL" if not tokens or show(tokens[0]) == "NIL" else "(…)")]
    if keyword == "QUOTA":
        root = json.dumps(_text(tokens[0])) if tokens else ""
        resources = tokens[1] if len(tokens) > 1 and isinstance(tokens[1], list) else []
        names = [_text(resources[i]).upper() for i in range(0, len(resources), 3)]
        return False, [f"* QUOTA {root} (" + " ".join(f"{n} <n> <n>" for n in names) + ")"]
    if keyword == "QUOTAROOT":
        names = [json.dumps(_text(t), ensure_ascii=False) for t in tokens]
        return False, ["* QUOTAROOT " + " ".join(names)]
    return False, [f"* {keyword} " + " ".join(show(t) for t in tokens)]


_FETCH_LINE = re.compile(rb"\* (\d+) FETCH (.*)\Z", re.IGNORECASE | re.DOTALL)


def line_class(line: str) -> int:
    """0: untagged data whose order is not specified (sorted); 1: untagged data whose
    order matters (FETCH, EXPUNGE, VANISHED, SEARCH, ESEARCH, continuations); 2: the tagged
    answer and the lines of its response code."""
    if line == "+":
        return 1
    if not line.startswith("* "):
        return 2
    words = line.split(" ", 3)
    if len(words) > 2 and words[1].isdigit():
        return 1 if words[2] in _ORDERED else 0
    return 1 if words[1] in _ORDERED else 0


def canonical_order(lines: Sequence[str]) -> list[str]:
    """One command's normalised lines in canonical order (see :func:`line_class`)."""
    return (
        sorted(x for x in lines if line_class(x) == 0)
        + [x for x in lines if line_class(x) == 1]
        + [x for x in lines if line_class(x) == 2]
    )


def normalise_reply(reply: Reply) -> list[str]:
    """A command's responses. FETCH responses for the same message that follow each other
    (other ordered responses aside) are merged: a server may split one message's data
    across several FETCH responses (Dovecot sends MODSEQ apart after an implicit \\Seen)."""
    ordered: list[str] = []
    unordered: list[str] = []
    last_fetch: tuple[str, dict[str, str], int] | None = None  # number, items, index
    for line in reply.untagged:
        match = _FETCH_LINE.match(line)
        if match:
            number = match.group(1).decode()
            tokens = tokenize(match.group(2))
            items = _fetch_items(tokens[0] if tokens else [])
            if last_fetch is not None and last_fetch[0] == number:
                merged = {**last_fetch[1], **items}
                ordered[last_fetch[2]] = _render_fetch(number, merged)
                last_fetch = (number, merged, last_fetch[2])
            else:
                ordered.append(_render_fetch(number, items))
                last_fetch = (number, items, len(ordered) - 1)
            continue
        in_order, lines = normalise_response(line)
        if in_order:
            last_fetch = None
        (ordered if in_order else unordered).extend(lines)
    out = canonical_order(unordered + ordered)
    if reply.tagged is None:
        if reply.tag.startswith("*"):
            return out
        return [*out, f"{reply.tag} <connection closed>"]
    _, tagged = normalise_response(reply.tagged)
    return out + tagged


def normalise(responses: Sequence[Exchange]) -> list[tuple[str, list[str]]]:
    """(tag, normalised lines) for every command of a transcript, in order."""
    return [(exchange.tag, normalise_reply(exchange.reply)) for exchange in responses]


def flatten(normalised: Sequence[tuple[str, list[str]]]) -> list[str]:
    """One line per response, prefixed with its command's tag: ``tag | line``."""
    return [f"{tag} | {line}" for tag, lines in normalised for line in lines]
