"""A zip reader that refuses hostile archives, and a deterministic zip writer.

Used for the ``IHE_XDM.ZIP`` attachments of MSSanté mails (SPEC §7.1, R36–R37), which come
from other operators and must be treated as hostile until proven otherwise.

``read_zip`` works on bytes already in memory and never touches the file system. It refuses
the whole archive with ``UnsafeArchive(reason_code, message)`` on the first problem found, so a
caller never sees part of a hostile archive. The checks, in order:

1. the end-of-central-directory record is read by hand, so a central directory announcing
   millions of entries is refused (``too-many-members``) before ``zipfile`` parses it;
2. every name: ``path-traversal`` (a ``..`` segment, with ``/`` or ``\\``), ``absolute-path``
   (leading ``/``, drive letter, any backslash), ``bad-name`` (empty or ``.`` segments,
   control characters, too long), ``duplicate-name`` (also case-insensitive duplicates, and a
   file that is also a folder prefix); the entry type: ``symlink`` (``S_IFLNK`` in the Unix
   external attributes), ``special-file`` (devices, FIFOs…); ``encrypted``;
   ``unsupported-compression`` (only stored and deflate are read), ``unsupported-feature``
   (what ``zipfile`` cannot read: a newer zip version, patched data…);
3. the declared sizes: ``member-too-large``, ``total-too-large``, ``ratio``;
4. each member is then inflated in 64 KiB steps without trusting its declared size: the
   reader asks ``zipfile`` for up to ``max_member_size + 1`` bytes and refuses the archive
   (``size-mismatch``) as soon as a member passes its declared size, or ends short of it. So
   the real bytes are bounded by the declared ones, and the limits of step 3 hold for them;
5. ``corrupt`` (bad CRC, bad deflate stream), ``nested-archive`` (a zip, gzip, 7z, rar or xz
   inside, unless allowed).

A 200 MB member is therefore refused from its declared size without inflating a byte, and one
whose header lies is refused after at most ``declared size + 64 KiB``. The ratio limit is a
heuristic against bombs (compressed sizes come from the headers too); the member and total
limits are the hard bounds.
"""

from __future__ import annotations

import copy
import io
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_LIMITS",
    "FIXED_DATE_TIME",
    "Reason",
    "UnsafeArchive",
    "ZipLimits",
    "check_entries",
    "check_member_name",
    "is_archive",
    "read_zip",
    "write_zip",
]

MIB = 1024 * 1024
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest DOS date: deterministic archives
_CHUNK = 64 * 1024
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_DRIVE = re.compile(r"^[A-Za-z]:")
_ARCHIVE_MAGIC = (  # zip, empty zip, gzip (deflate), 7z, rar, xz
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b\x08",
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"\xfd7zXZ\x00",
)


class Reason(StrEnum):
    """Why an archive was refused (``UnsafeArchive.reason_code``)."""

    NOT_A_ZIP = "not-a-zip"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    ARCHIVE_TOO_LARGE = "archive-too-large"
    TOO_MANY_MEMBERS = "too-many-members"
    MEMBER_TOO_LARGE = "member-too-large"
    TOTAL_TOO_LARGE = "total-too-large"
    RATIO = "ratio"
    SIZE_MISMATCH = "size-mismatch"
    PATH_TRAVERSAL = "path-traversal"
    ABSOLUTE_PATH = "absolute-path"
    BAD_NAME = "bad-name"
    SYMLINK = "symlink"
    SPECIAL_FILE = "special-file"
    DUPLICATE_NAME = "duplicate-name"
    ENCRYPTED = "encrypted"
    UNSUPPORTED_COMPRESSION = "unsupported-compression"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    NESTED_ARCHIVE = "nested-archive"


class UnsafeArchive(ValueError):
    """The archive was refused as a whole; nothing of it may be used."""

    def __init__(self, reason_code: Reason, message: str, member: str | None = None) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message
        self.member = member


@dataclass(frozen=True)
class ZipLimits:
    """Bounds applied by ``read_zip``. Sizes are in bytes, after decompression."""

    max_archive_size: int = 150 * MIB  # the compressed input itself
    max_members: int = 1000
    max_member_size: int = 100 * MIB
    max_total_size: int = 150 * MIB
    max_ratio: float = 100.0  # uncompressed / compressed, per member
    ratio_grace: int = 1 * MIB  # small members may compress better than max_ratio
    max_name_length: int = 255
    allow_nested_archives: bool = False


DEFAULT_LIMITS = ZipLimits()


def _refuse(reason: Reason, message: str, member: str | None = None) -> UnsafeArchive:
    return UnsafeArchive(reason, message, member)


def check_member_name(name: str, max_length: int = 255) -> None:
    """Raise ``UnsafeArchive`` unless ``name`` is a plain relative path inside the archive."""

    if not name or len(name) > max_length:
        raise _refuse(Reason.BAD_NAME, f"member name of length {len(name)}", name)
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _refuse(Reason.BAD_NAME, f"control character in member name {name!r}", name)
    if ".." in re.split(r"[/\\]", name):
        raise _refuse(Reason.PATH_TRAVERSAL, f"'..' in member name {name!r}", name)
    if name.startswith("/") or "\\" in name or _DRIVE.match(name):
        raise _refuse(Reason.ABSOLUTE_PATH, f"absolute or Windows path {name!r}", name)
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if any(p in ("", ".") for p in parts):
        raise _refuse(Reason.BAD_NAME, f"empty or '.' segment in member name {name!r}", name)


def _declared_entry_count(data: bytes) -> int:
    """Entry count from the end-of-central-directory record (zip64 aware)."""

    start = data.rfind(_EOCD, max(0, len(data) - 22 - 0xFFFF))
    if start < 0 or len(data) - start < 22:
        if data.startswith(b"PK\x03\x04"):
            raise _refuse(Reason.TRUNCATED, "no end-of-central-directory record (truncated?)")
        raise _refuse(Reason.NOT_A_ZIP, "not a zip archive")
    (count,) = struct.unpack_from("<H", data, start + 10)
    locator = start - 20
    if count == 0xFFFF and locator >= 0 and data[locator : locator + 4] == _ZIP64_LOCATOR:
        (offset,) = struct.unpack_from("<Q", data, locator + 8)
        if offset + 56 <= len(data) and data[offset : offset + 4] == _ZIP64_EOCD:
            (count,) = struct.unpack_from("<Q", data, offset + 32)
    return int(count)


def _check_entry(info: zipfile.ZipInfo, limits: ZipLimits) -> None:
    name = info.filename
    check_member_name(name, limits.max_name_length)
    if info.create_system == 3:  # Unix: the high 16 bits are st_mode
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise _refuse(Reason.SYMLINK, f"{name!r} is a symbolic link", name)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse(Reason.SPECIAL_FILE, f"{name!r} is a special file ({kind:o})", name)
    if info.flag_bits & 0x1:
        raise _refuse(Reason.ENCRYPTED, f"{name!r} is encrypted", name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _refuse(
            Reason.UNSUPPORTED_COMPRESSION,
            f"{name!r} uses compression method {info.compress_type}",
            name,
        )
    if info.is_dir():
        return
    if info.file_size > limits.max_member_size:
        raise _refuse(
            Reason.MEMBER_TOO_LARGE,
            f"{name!r} declares {info.file_size} bytes (limit {limits.max_member_size})",
            name,
        )
    _check_ratio(name, info.file_size, info.compress_size, limits, "declares")


def _check_ratio(name: str, size: int, compressed: int, limits: ZipLimits, verb: str) -> None:
    if size > limits.ratio_grace and size > limits.max_ratio * max(compressed, 1):
        raise _refuse(
            Reason.RATIO,
            f"{name!r} {verb} {size} bytes from {compressed} compressed "
            f"(ratio above {limits.max_ratio:g})",
            name,
        )


def _check_duplicates(infos: list[zipfile.ZipInfo]) -> None:
    files: dict[str, str] = {}
    folders: dict[str, str] = {}
    for info in infos:
        name = info.filename
        key = name.rstrip("/").casefold()
        if not info.is_dir():
            if key in files or key in folders:
                other = files.get(key) or folders[key]
                raise _refuse(Reason.DUPLICATE_NAME, f"{name!r} duplicates {other!r}", name)
            files[key] = name
        parts = key.split("/")
        for i in range(1, len(parts) + (1 if info.is_dir() else 0)):
            folder = "/".join(parts[:i])
            folders.setdefault(folder, name)
            if folder in files and files[folder] != name:
                raise _refuse(
                    Reason.DUPLICATE_NAME, f"{files[folder]!r} is both a file and a folder", name
                )


def check_entries(infos: list[zipfile.ZipInfo], limits: ZipLimits = DEFAULT_LIMITS) -> None:
    """Steps 2 and 3 of ``read_zip`` on a central directory, for readers that stream members.

    Names, entry types, encryption, compression, declared sizes and ratios, duplicates: raises
    ``UnsafeArchive`` on the first problem. A streaming reader relies on ``zipfile`` stopping
    at the declared size and checking the CRC at the end of the member.
    """

    if len(infos) > limits.max_members:
        raise _refuse(Reason.TOO_MANY_MEMBERS, f"{len(infos)} members (limit {limits.max_members})")
    for info in infos:
        _check_entry(info, limits)
    _check_duplicates(infos)
    declared_total = sum(i.file_size for i in infos)
    if declared_total > limits.max_total_size:
        raise _refuse(
            Reason.TOTAL_TOO_LARGE,
            f"members declare {declared_total} bytes (limit {limits.max_total_size})",
        )


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits) -> bytes:
    """Inflate one member, holding it to its declared size (already checked against limits)."""

    name = info.filename
    probe = copy.copy(info)
    probe.file_size = limits.max_member_size + 1  # let zipfile go past a lying header
    chunks: list[bytes] = []
    count = 0
    with zf.open(probe) as stream:
        while chunk := stream.read(_CHUNK):
            count += len(chunk)
            if count > info.file_size:
                raise _refuse(
                    Reason.SIZE_MISMATCH,
                    f"{name!r} inflates beyond its declared {info.file_size} bytes",
                    name,
                )
            chunks.append(chunk)
    if count != info.file_size:
        raise _refuse(
            Reason.SIZE_MISMATCH,
            f"{name!r} inflates to {count} bytes, declares {info.file_size}",
            name,
        )
    return b"".join(chunks)


def is_archive(content: bytes) -> bool:
    """Whether ``content`` starts like a zip, gzip, 7z, rar or xz archive."""
    return content.startswith(_ARCHIVE_MAGIC)


def read_zip(data: bytes, limits: ZipLimits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """The files of a zip archive, ``{name: content}`` in archive order (folders left out).

    Raises ``UnsafeArchive`` with a ``Reason`` on anything hostile or broken (see the module
    documentation); no partial result is ever returned.
    """

    if len(data) > limits.max_archive_size:
        raise _refuse(
            Reason.ARCHIVE_TOO_LARGE,
            f"archive of {len(data)} bytes (limit {limits.max_archive_size})",
        )
    declared = _declared_entry_count(data)
    if declared > limits.max_members:
        raise _refuse(Reason.TOO_MANY_MEMBERS, f"{declared} members (limit {limits.max_members})")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except NotImplementedError as exc:  # e.g. "zip file version 7.6"
        raise _refuse(Reason.UNSUPPORTED_FEATURE, str(exc)) from exc
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error) as exc:
        if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise _refuse(Reason.NOT_A_ZIP, f"not a zip archive: {exc}") from exc
        raise _refuse(Reason.TRUNCATED, f"unreadable central directory: {exc}") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise _refuse(
                Reason.TOO_MANY_MEMBERS, f"{len(infos)} members (limit {limits.max_members})"
            )
        for info in infos:
            _check_entry(info, limits)
        _check_duplicates(infos)
        declared_total = sum(i.file_size for i in infos)
        if declared_total > limits.max_total_size:
            raise _refuse(
                Reason.TOTAL_TOO_LARGE,
                f"members declare {declared_total} bytes (limit {limits.max_total_size})",
            )
        members: dict[str, bytes] = {}
        for info in infos:
            if info.is_dir():
                continue
            try:
                content = _inflate(zf, info, limits)
            except UnsafeArchive:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
                raise _refuse(Reason.CORRUPT, f"{info.filename!r}: {exc}", info.filename) from exc
            except NotImplementedError as exc:  # e.g. patched data, strong encryption
                raise _refuse(
                    Reason.UNSUPPORTED_FEATURE, f"{info.filename!r}: {exc}", info.filename
                ) from exc
            if not limits.allow_nested_archives and is_archive(content):
                raise _refuse(
                    Reason.NESTED_ARCHIVE,
                    f"{info.filename!r} is itself an archive",
                    info.filename,
                )
            members[info.filename] = content
    return members


def write_zip(members: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> bytes:
    """A deflated zip of ``members`` in the given order, byte-for-byte reproducible.

    Every entry gets the same fixed timestamp and ``rw-r--r--`` regular-file attributes.
    Names are checked like ``read_zip`` does (``UnsafeArchive`` on an unsafe or duplicate name).
    """

    items = list(members.items()) if isinstance(members, Mapping) else list(members)
    seen: set[str] = set()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in items:
            check_member_name(name)
            if name.endswith("/") or name.casefold() in seen:
                raise _refuse(Reason.DUPLICATE_NAME, f"cannot write {name!r}", name)
            seen.add(name.casefold())
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, content)
    return buffer.getvalue()
