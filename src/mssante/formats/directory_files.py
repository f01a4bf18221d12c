"""Streaming readers of the public directory extractions (SPEC §4.3, R52).

Three formats, recognised from their header line:

- ``mssante``: ``Extraction_Correspondance_MSSante``, 31 columns, one BAL per row (SPEC §4.3);
- ``rass``: ``PS_LibreAcces_Personne_activite``, 52 columns and a trailing ``|``, one exercise
  situation of a professional per row;
- ``psc``: ``Extraction_ProSanteConnect_Personne_activite``, 49 columns and a trailing ``|``.

A file is a ``.txt`` or a ``.zip`` holding one ``.txt`` (recognised from its first bytes).
It is UTF-8 (a BOM is accepted), ``|``-separated, read line by line with a hard line length
limit: a 50 MB line is skipped in 64 KiB steps, never held in memory, and reported with its
number. A header that is not one of the three formats refuses the whole file
(:class:`DirectoryFileRefused`) before any row is read; a bad row gives a :class:`RowError`
(line number, French reason) and the reader goes on.

The reader does no I/O of its own: it reads the binary stream it is given. Rows come out as
tuples in the field order of :class:`~mssante.domain.directory.DirectoryEntry` (31 values) or
:class:`~mssante.domain.directory.DirectoryProfessional` (17 values), followed by the row
hash: the fast path of the importer. :meth:`ExtractionReader.items` gives the dataclasses.
"""

from __future__ import annotations

import codecs
import io
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import blake2b
from operator import gt, itemgetter
from typing import IO, Any, cast

from mssante.domain.directory import BAL_TYPES, DirectoryEntry, DirectoryProfessional
from mssante.domain.errors import DomainError
from mssante.formats.directory_columns import (
    ENTRY_WIDTHS,
    MSSANTE_COLUMNS,
    PROFESSIONAL_WIDTHS,
    PSC_COLUMNS,
    RASS_COLUMNS,
    TRE_G15,
)
from mssante.formats.safezip import Reason, UnsafeArchive, ZipLimits, check_entries

MAX_LINE = 64 * 1024  # bytes; real rows are under 2 KiB
_SKIP_CHUNK = 64 * 1024
_BOM = codecs.BOM_UTF8
GIB = 1024**3
# The national files: the RASS extraction inflates to ~1 GiB, and text compresses ~10×.
DIRECTORY_ZIP_LIMITS = ZipLimits(
    max_archive_size=8 * GIB,
    max_members=16,  # exactly one file is required; folders are tolerated
    max_member_size=16 * GIB,
    max_total_size=16 * GIB,
    max_ratio=100.0,
)

# --- the formats --------------------------------------------------------------------------

ENTRY_FIELDS = tuple(DirectoryEntry.__dataclass_fields__)[:31]
PROFESSIONAL_FIELDS = tuple(DirectoryProfessional.__dataclass_fields__)


@dataclass(frozen=True)
class FileFormat:
    name: str  # mssante | rass | psc
    kind: str  # bal | professionals
    label: str
    columns: tuple[str, ...]
    trailing_separator: bool  # every line ends with "|"

    @property
    def header(self) -> str:
        return "|".join(self.columns) + ("|" if self.trailing_separator else "")


MSSANTE = FileFormat(
    "mssante", "bal", "Extraction_Correspondance_MSSante", tuple(MSSANTE_COLUMNS), False
)
RASS = FileFormat(
    "rass", "professionals", "PS_LibreAcces_Personne_activite", tuple(RASS_COLUMNS), True
)
PSC = FileFormat(
    "psc",
    "professionals",
    "Extraction_ProSanteConnect_Personne_activite",
    tuple(PSC_COLUMNS),
    True,
)
FORMATS = {f.name: f for f in (MSSANTE, RASS, PSC)}


_ZIP_REASONS = {
    Reason.PATH_TRAVERSAL: "chemin hors de l'archive",
    Reason.ABSOLUTE_PATH: "chemin absolu",
    Reason.BAD_NAME: "nom de fichier invalide",
    Reason.SYMLINK: "lien symbolique",
    Reason.SPECIAL_FILE: "fichier spécial",
    Reason.DUPLICATE_NAME: "nom en double",
    Reason.ENCRYPTED: "fichier chiffré",
    Reason.UNSUPPORTED_COMPRESSION: "compression non prise en charge",
    Reason.MEMBER_TOO_LARGE: "fichier trop grand",
    Reason.TOTAL_TOO_LARGE: "contenu trop grand",
    Reason.RATIO: "taux de compression suspect (bombe zip ?)",
    Reason.TOO_MANY_MEMBERS: "trop de fichiers",
}


class DirectoryFileRefused(DomainError):
    """A directory file refused as a whole: unknown format, broken zip, too many bad rows."""

    code = "directory-file-refused"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that was skipped: its line number (1 = the header) and why, in French."""

    line: int
    reason: str


# --- header recognition ------------------------------------------------------------------


def _norm(name: str) -> str:
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def _signature(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_norm(c) for c in columns[:4])


def detect_format(header: str) -> FileFormat:
    """The format of a header line (without its line end); DirectoryFileRefused if none."""
    if "|" not in header:
        for sep, name in ((";", "';'"), ("\t", "tabulation"), (",", "','")):
            if sep in header:
                raise DirectoryFileRefused(
                    f"ligne 1 : séparateur « | » absent de l'en-tête (séparateur {name} "
                    "trouvé) : ce n'est pas une extraction de l'annuaire",
                    line=1,
                )
        raise DirectoryFileRefused(
            "ligne 1 : en-tête sans séparateur « | » : ce n'est pas une extraction de l'annuaire",
            line=1,
        )
    names = header.split("|")
    trailing = names[-1].strip() == ""
    if trailing:
        names = names[:-1]
    found = tuple(_norm(n) for n in names)
    for fmt in FORMATS.values():
        if found[:4] != _signature(fmt.columns):
            continue
        expected = tuple(_norm(c) for c in fmt.columns)
        if len(found) != len(expected):
            raise DirectoryFileRefused(
                f"ligne 1 : en-tête de {len(found)} colonnes, {len(expected)} attendues "
                f"pour le format {fmt.label}",
                line=1,
            )
        for i, (got, want) in enumerate(zip(found, expected, strict=True), start=1):
            if got != want:
                raise DirectoryFileRefused(
                    f"ligne 1 : colonne {i} « {names[i - 1].strip()[:80]} », "
                    f"« {fmt.columns[i - 1]} » attendue (format {fmt.label})",
                    line=1,
                )
        return fmt
    raise DirectoryFileRefused(
        f"ligne 1 : en-tête non reconnu (« {header[:60]}… ») : ni {MSSANTE.label}, "
        f"ni {RASS.label}, ni {PSC.label}",
        line=1,
    )


# --- identifiers (SPEC §5) -----------------------------------------------------------------

_LUHN_DOUBLE = {str(d): (2 * d) % 9 if d != 9 else 9 for d in range(10)}
_LUHN_SINGLE = {str(d): d for d in range(10)}


def luhn_ok(digits: str) -> bool:
    """Luhn over a digit string (R53): the fast form of the check in domain.identifiers."""
    return (
        sum(map(_LUHN_SINGLE.__getitem__, digits[-1::-2]))
        + sum(map(_LUHN_DOUBLE.__getitem__, digits[-2::-2]))
    ) % 10 == 0


class _Bad(Exception):
    pass


def _check_pp(id_type: str, id_pp: str, id_nat: str, *, required: bool) -> str:
    """Check an RPPS/ADELI identity; return the idNat_PS (SPEC §5, R53, R54)."""
    if id_type == "8":
        if len(id_pp) != 11 or not id_pp.isdigit():
            raise _Bad(f"RPPS « {id_pp[:40]} » : 11 chiffres attendus")
        if not luhn_ok(id_pp):
            raise _Bad(f"RPPS {id_pp} : clé de Luhn invalide")
    elif id_type == "0":
        if len(id_pp) != 9 or not id_pp.isalnum():
            raise _Bad(f"ADELI « {id_pp[:40]} » : 9 caractères attendus")
    elif id_type == "":
        if required:
            raise _Bad("identifiant PP absent")
        if id_pp or id_nat:
            raise _Bad("identifiant PP sans type d'identifiant")
        return ""
    elif id_type in "13456" and len(id_type) == 1:
        # Staff without RPPS: "<prefix><structure id>/<internal id>" (TRE_G08).
        if not id_nat.startswith(id_type) or "/" not in id_nat:
            raise _Bad(f"identification nationale PP « {id_nat[:40]} » invalide")
        return id_nat
    else:
        raise _Bad(f"type d'identifiant PP « {id_type[:10]} » inconnu")
    expected = id_type + id_pp
    if id_nat and id_nat != expected:
        raise _Bad(f"identification nationale PP {id_nat[:40]} incohérente, {expected} attendue")
    return expected


def _check_address(address: str) -> None:
    local, at, domain = address.partition("@")
    if (
        not at
        or not local
        or "." not in domain
        or "@" in domain
        or " " in address
        or domain.startswith(".")
        or domain.endswith(".")
    ):
        raise _Bad(f"adresse BAL « {address[:80]} » invalide")


def departement_of(postcode: str) -> str:
    """The département code of a French postcode (2A/2B in Corsica, 3 digits overseas)."""
    if len(postcode) != 5 or not postcode.isdigit():
        return ""
    if postcode.startswith("20"):
        return "2A" if postcode < "20200" else "2B"
    if postcode.startswith("97") or postcode.startswith("98"):
        return postcode[:3]
    return postcode[:2]


def city_of(line: str) -> str:
    """The city of an acheminement line ("01000 BOURG EN BRESSE" → "BOURG EN BRESSE")."""
    head, _, rest = line.partition(" ")
    return rest.strip() if head.isdigit() and rest else line


# --- row parsers ---------------------------------------------------------------------------

Values = tuple[str, ...]


def _too_wide(values: Values, widths: tuple[int, ...], names: tuple[str, ...]) -> None:
    if any(map(gt, map(len, values), widths)):
        for value, width, name in zip(values, widths, names, strict=True):
            if len(value) > width:
                raise _Bad(f"champ {name} trop long ({len(value)} caractères, {width} au plus)")


def _entry(v: list[str]) -> Values:
    v[0] = bal_type = v[0].upper()
    if bal_type not in BAL_TYPES:
        raise _Bad(f"type de BAL « {bal_type[:10]} » inconnu (PER, ORG, APP, CAB)")
    v[1] = address = v[1].lower()
    _check_address(address)
    v[4] = _check_pp(v[2], v[3], v[4], required=bal_type == "PER")
    values = tuple(v)
    _too_wide(values, ENTRY_WIDTHS, ENTRY_FIELDS)
    return values


class _ProfessionalMapper:
    """Picks the DirectoryProfessional fields out of a RASS or PSC row."""

    def __init__(self, fmt: FileFormat) -> None:
        pos = {c: i for i, c in enumerate(fmt.columns)}
        rass = fmt is RASS
        names = (
            "Type d'identifiant PP",
            "Identifiant PP",
            "Identification nationale PP",
            "Code civilité d'exercice",
            "Nom d'exercice",
            "Prénom d'exercice",
            "Code profession",
            "Libellé profession" if rass else "Code profession",
            "Code catégorie professionnelle",
            "Code savoir-faire",
            "Libellé savoir-faire" if rass else "Code savoir-faire",
            "Identifiant technique de la structure",
            "Raison sociale site",
            "Code postal (coord. structure)",
            "Libellé commune (coord. structure)" if rass else "Bureau cedex (coord. structure)",
            "Code Département (structure)" if rass else "Code département (coord. structure)",
            "Adresse e-mail (coord. structure)",
            # fallbacks
            "Code civilité",
            "Enseigne commerciale site",
            "Numéro FINESS site",
            "Numéro SIRET site",
            "Bureau cedex (coord. structure)",
            "Adresse e-mail (coord. structure)"
            if rass
            else "Adresse e-mail (coord. correspondance)",
        )
        self.pick = itemgetter(*(pos[n] for n in names))
        self.rass = rass

    def __call__(self, row: list[str]) -> Values:
        v = list(self.pick(row))
        civ_code, trade_name, finess, siret, cedex, personal_email = v[17:]
        del v[17:]
        v[2] = _check_pp(v[0], v[1], v[2], required=True)
        if not v[3]:
            v[3] = civ_code
        if self.rass:
            if not v[14]:
                v[14] = city_of(cedex)
        else:
            v[7] = TRE_G15.get(v[6], "")  # the PSC file carries codes only
            v[10] = ""
            v[14] = city_of(cedex)
            if personal_email:  # the contract: coord. correspondance first
                v[16] = personal_email
        if not v[11]:
            v[11] = finess or siret
        if not v[12]:
            v[12] = trade_name
        if not v[15]:
            v[15] = departement_of(v[13])
        v[16] = v[16].lower()
        values = tuple(v)
        _too_wide(values, PROFESSIONAL_WIDTHS, PROFESSIONAL_FIELDS)
        return values


def row_hash(values: Values) -> str:
    """Digest of a normalised row (16 bytes, hex): equal rows, equal hashes."""
    return blake2b("\x1f".join(values).encode(), digest_size=16).hexdigest()


# --- the reader ----------------------------------------------------------------------------


@dataclass
class ReadStats:
    lines: int = 0  # physical lines read, header included
    rows: int = 0  # good rows yielded
    rejected: int = 0
    blank: int = 0


class ExtractionReader:
    """One extraction file, its format recognised from the header (read at construction).

    ``stream`` is a seekable binary file object (a ``.txt`` or a ``.zip``); ``name`` is used
    in messages. Raises :class:`DirectoryFileRefused` when the file is not an extraction.
    """

    def __init__(
        self,
        stream: IO[bytes],
        name: str = "",
        *,
        max_line: int = MAX_LINE,
        zip_limits: ZipLimits = DIRECTORY_ZIP_LIMITS,
    ) -> None:
        self.name = name
        self.max_line = max_line
        self.stats = ReadStats()
        self._raw = stream
        self._zip: zipfile.ZipFile | None = None
        self.member: str | None = None
        self.overlong = False
        self.is_zip = stream.read(4) == b"PK\x03\x04"
        stream.seek(0)
        self._lines = self._open(stream, zip_limits)
        self.format = self._read_header()
        self._mapper = None if self.format is MSSANTE else _ProfessionalMapper(self.format)
        n = len(self.format.columns)
        self._widths = {n + 1} if self.format.trailing_separator else {n}
        if self.format.trailing_separator:
            self._widths.add(n)  # a missing trailing "|" is tolerated

    @property
    def kind(self) -> str:
        return self.format.kind

    def position(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for a zip): for progress."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def _open(self, stream: IO[bytes], limits: ZipLimits) -> IO[bytes]:
        if not self.is_zip:
            return stream
        try:
            zf = zipfile.ZipFile(stream)
            infos = [i for i in zf.infolist() if not i.is_dir()]
            check_entries(zf.infolist(), limits)
        except UnsafeArchive as exc:
            why = _ZIP_REASONS.get(exc.reason_code, exc.reason_code)
            raise DirectoryFileRefused(f"archive zip refusée : {why} ({exc.message})") from exc
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise DirectoryFileRefused(f"archive zip tronquée ou illisible ({exc})") from exc
        except NotImplementedError as exc:
            raise DirectoryFileRefused(f"archive zip non prise en charge ({exc})") from exc
        if len(infos) != 1:
            zf.close()
            raise DirectoryFileRefused(
                f"l'archive doit contenir un seul fichier, elle en contient {len(infos)}"
            )
        self._zip = zf
        self.member = infos[0].filename
        try:
            member = zf.open(infos[0])
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
            raise DirectoryFileRefused(f"archive zip illisible ({exc})") from exc
        return io.BufferedReader(member, buffer_size=1024 * 1024)  # type: ignore[type-var]

    def _readline(self, limit: int) -> bytes:
        try:
            return self._lines.readline(limit)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            line = self.stats.lines + 1
            raise DirectoryFileRefused(
                f"ligne {line} : archive zip corrompue ou tronquée ({exc})", line=line
            ) from exc

    def _next_line(self) -> bytes | None:
        """The next line without its end, None at the end of the file.

        A line longer than ``max_line`` is skipped 64 KiB at a time, never held whole: it
        comes back as b"" with ``self.overlong`` set.
        """
        raw = self._readline(self.max_line + 1)
        if not raw:
            return None
        self.stats.lines += 1
        self.overlong = False
        if raw.endswith(b"\n"):
            return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        if len(raw) <= self.max_line:
            return raw  # the last line, without a line end
        self.overlong = True
        while True:
            chunk = self._readline(_SKIP_CHUNK)
            if not chunk or chunk.endswith(b"\n"):
                return b""

    def _read_header(self) -> FileFormat:
        raw = self._next_line()
        if raw is None or (not raw and not self.overlong):
            raise DirectoryFileRefused("fichier vide : en-tête absent", line=1)
        if self.overlong:
            raise DirectoryFileRefused(
                f"ligne 1 : en-tête de plus de {self.max_line} octets", line=1
            )
        if raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            header = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DirectoryFileRefused(
                f"ligne 1 : en-tête non UTF-8 (octet 0x{raw[exc.start]:02x} en position "
                f"{exc.start + 1})",
                line=1,
            ) from None
        return detect_format(header)

    def records(self) -> Iterator[Values | RowError]:
        """The rows: a tuple of values followed by the row hash, or a RowError."""
        widths = self._widths
        ncols = len(self.format.columns)
        convert = self._mapper or _entry
        stats = self.stats
        next_line = self._next_line
        while True:
            raw = next_line()
            if raw is None:
                return
            line_no = stats.lines
            if not raw:
                if self.overlong:
                    stats.rejected += 1
                    yield RowError(line_no, f"ligne de plus de {self.max_line} octets, ignorée")
                else:
                    stats.blank += 1
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                stats.rejected += 1
                yield RowError(
                    line_no,
                    f"encodage non UTF-8 (octet 0x{raw[exc.start]:02x} en position "
                    f"{exc.start + 1})",
                )
                continue
            if "\x00" in text:
                stats.rejected += 1
                yield RowError(line_no, "caractère NUL dans la ligne")
                continue
            fields = text.split("|")
            if len(fields) not in widths:
                stats.rejected += 1
                yield RowError(line_no, f"{len(fields)} colonnes, {ncols} attendues")
                continue
            del fields[ncols:]
            try:
                values = convert(list(map(str.strip, fields)))
            except _Bad as exc:
                stats.rejected += 1
                yield RowError(line_no, str(exc))
                continue
            stats.rows += 1
            yield (*values, row_hash(values))

    def items(self) -> Iterator[DirectoryEntry | DirectoryProfessional | RowError]:
        """The rows as dataclasses (slower than ``records``: for tests and small files)."""
        for record in self.records():
            if isinstance(record, RowError):
                yield record
            elif self.format is MSSANTE:
                yield DirectoryEntry(*cast(tuple[Any, ...], record[:-1]))
            else:
                yield DirectoryProfessional(*record[:-1])
