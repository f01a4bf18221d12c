"""Content-addressed, encrypted-at-rest store for message bodies.

A blob is addressed by the SHA-256 of its plaintext (its *digest*). On disk each blob is
sealed with AES-256-GCM under one of the configured keys; the id of that key is written in
the clear in the file header so the keys can rotate: old blobs stay readable as long as
their key stays in the keyring, and :meth:`FileBlobStore.rotate` re-encrypts a blob under
the active key.

File names
    The plaintext digest must not appear on disk: whoever reads the disk could otherwise
    confirm that a known document (a standard form, a published report) is stored. The file
    name is therefore ``HMAC-SHA256(naming_secret, digest)`` in hex, stored under
    ``root/ab/cd/<name>`` where ``abcd`` are the first four hex digits of the name.

    The naming secret comes from a dedicated ``naming_key`` (recommended). A name derived
    from the *active* encryption key would change whenever the active key rotates and every
    old blob would become unreachable by its digest. Without a ``naming_key`` the store
    still works: it derives one naming secret per encryption key, writes under the active
    key's name and looks blobs up under the names of all keys in the keyring (active key
    first); :meth:`FileBlobStore.rotate` then also moves the file to the active key's name.
    Either way the secret goes through HKDF with its own label, so no key is ever used both
    as an AES key and as an HMAC key.

File format (version 1)
    ``b"MSSB"`` | version (1 byte) | key id length (1 byte) | key id (ASCII) |
    nonce (12 random bytes) | ciphertext || GCM tag (16 bytes).

    The associated data is the whole header up to the nonce followed by the 32-byte binary
    digest, so a file copied over another blob's file, or whose key id was edited, fails
    authentication and reads as :class:`BlobCorrupted`.

Durability
    A blob is written to a temporary file in its final directory, flushed, ``fsync``-ed,
    renamed over its final name with :func:`os.replace`, then the directory is
    ``fsync``-ed, and so is the parent of every directory the write had to create. Once
    :meth:`FileBlobStore.put` returns, the blob survives a power loss. A crash during a
    write can leave a ``.tmp-*`` file behind; such files are never read as blobs.

Thread safety
    Every operation on a given digest holds one of a fixed set of striped locks, so the
    store can be shared by the threads of a pool; operations on different digests mostly
    run in parallel. Distinct processes sharing one root stay consistent for ``put`` and
    ``get`` (the rename is atomic) but are not serialised against ``rotate``/``delete``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "BlobCorrupted",
    "BlobError",
    "BlobKeyUnavailable",
    "BlobKeyring",
    "BlobNotFound",
    "BlobRef",
    "FileBlobStore",
]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16

_MAGIC = b"MSSB"
_VERSION = 1
_NAMING_INFO = b"mssante blob naming v1"
_NAME_PREFIX = b"mssante-blob-name\x00"
_TMP_PREFIX = ".tmp-"
_LOCK_STRIPES = 64
_MIN_FILE_SIZE = len(_MAGIC) + 2 + 1 + NONCE_SIZE + TAG_SIZE

_KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


class BlobError(Exception):
    """Base class of the errors raised by the blob store."""

    def __init__(self, message: str, digest: str | None = None) -> None:
        super().__init__(message)
        self.digest = digest


class BlobNotFound(BlobError):
    """No blob with this digest is stored."""


class BlobCorrupted(BlobError):
    """The stored file fails to parse or to authenticate, or its content has another digest.

    A key that was replaced under the same key id also ends here: AES-GCM cannot tell a
    wrong key from a tampered file.
    """


class BlobKeyUnavailable(BlobError):
    """The blob is sealed under a key id that the keyring does not hold (any more)."""

    def __init__(self, message: str, digest: str | None = None, key_id: str = "") -> None:
        super().__init__(message, digest)
        self.key_id = key_id


@dataclass(frozen=True, slots=True)
class BlobRef:
    """What a caller keeps to find a blob again.

    ``digest`` is the lowercase hex SHA-256 of the plaintext, ``size`` the plaintext size
    in bytes, ``key_id`` the id of the key the stored copy is sealed under.
    """

    digest: str
    size: int
    key_id: str


def _check_key(name: str, key: object) -> bytes:
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"{name} must be bytes, not {type(key).__name__}")
    if len(key) != KEY_SIZE:
        raise ValueError(f"{name} must be {KEY_SIZE} bytes long, got {len(key)}")
    return bytes(key)


def _derive_naming_secret(key: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_NAMING_INFO)
    return hkdf.derive(key)


class BlobKeyring:
    """The AES-256 keys of the blob store, by key id, and which one seals new blobs.

    ``keys`` maps key ids (1–64 characters among ``A-Za-z0-9._:-``, starting with a letter
    or digit) to 32-byte keys; ``active`` is the id used for new blobs and for rotation.
    ``naming_key`` (32 bytes, optional but recommended) is the secret the file names
    derive from; see the module documentation. Keep retired keys in the keyring until
    every blob sealed under them has been rotated.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        active: str,
        *,
        naming_key: bytes | None = None,
    ) -> None:
        if not keys:
            raise ValueError("the blob keyring needs at least one key")
        checked: dict[str, bytes] = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
                raise ValueError(f"invalid blob key id {key_id!r}")
            checked[key_id] = _check_key(f"blob key {key_id!r}", key)
        if active not in checked:
            raise ValueError(f"the active blob key id {active!r} is not in the keyring")
        self._keys = checked
        self._active = active
        self._naming_key = (
            None if naming_key is None else _check_key("the blob naming key", naming_key)
        )

    @property
    def active_id(self) -> str:
        """The id of the key that seals new blobs."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id in the keyring, the active one first."""
        return (self._active, *(k for k in self._keys if k != self._active))

    @property
    def has_naming_key(self) -> bool:
        """Whether file names derive from a dedicated naming key."""
        return self._naming_key is not None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def key(self, key_id: str) -> bytes:
        """The key with this id; :class:`KeyError` when it is unknown."""
        return self._keys[key_id]

    def naming_secrets(self) -> tuple[bytes, ...]:
        """The HMAC secrets that file names may derive from, the one for new files first."""
        if self._naming_key is not None:
            return (_derive_naming_secret(self._naming_key),)
        return tuple(_derive_naming_secret(self._keys[k]) for k in self.key_ids)

    def __repr__(self) -> str:
        # Never print key material.
        return (
            f"BlobKeyring(key_ids={list(self._keys)!r}, active={self._active!r}, "
            f"naming_key={'set' if self._naming_key is not None else 'unset'})"
        )


def _normalise_digest(digest: str) -> str:
    if not isinstance(digest, str):
        raise TypeError("a blob digest is a hex string")
    lowered = digest.lower()
    if not _DIGEST_RE.fullmatch(lowered):
        raise ValueError(f"not a hex SHA-256 digest: {digest!r}")
    return lowered


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """Create ``path`` and its missing parents, fsync-ing the parent of each one created.

    A directory seen missing is always followed by an fsync of its parent, even when a
    concurrent writer won the race to create it: that writer may not have synced it yet.
    """
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        _fsync_dir(directory.parent)


class FileBlobStore:
    """Blobs as encrypted files under ``root`` (see the module documentation)."""

    def __init__(self, root: Path, keyring: BlobKeyring) -> None:
        self._root = Path(root)
        self._keyring = keyring
        self._naming_secrets = keyring.naming_secrets()
        self._locks = tuple(threading.Lock() for _ in range(_LOCK_STRIPES))
        _makedirs_durable(self._root)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def keyring(self) -> BlobKeyring:
        return self._keyring

    def __repr__(self) -> str:
        return f"FileBlobStore(root={str(self._root)!r}, keyring={self._keyring!r})"

    # -- public API ----------------------------------------------------------------------

    def put(self, data: bytes) -> BlobRef:
        """Store ``data`` and return its reference; a blob already stored is not rewritten.

        An existing copy that fails to decrypt (corrupted, or sealed under a key that left
        the keyring) is replaced by a fresh copy sealed under the active key.
        """
        data = bytes(data)
        return self._put(data, hashlib.sha256(data).hexdigest())

    def put_stream(self, chunks: Iterable[bytes]) -> BlobRef:
        """Store the concatenation of ``chunks``.

        The body is buffered in memory (messages are bounded by the configured size
        limit); only the hashing is incremental.
        """
        hasher = hashlib.sha256()
        buffer = bytearray()
        for chunk in chunks:
            hasher.update(chunk)
            buffer += chunk
        return self._put(bytes(buffer), hasher.hexdigest())

    def get(self, digest: str) -> bytes:
        """The plaintext of the blob.

        Raises :class:`BlobNotFound`, :class:`BlobCorrupted` or :class:`BlobKeyUnavailable`.
        """
        digest = _normalise_digest(digest)
        with self._lock(digest):
            for path in self._candidate_paths(digest):
                raw = self._read(path)
                if raw is not None:
                    plaintext, _ = self._open(raw, digest)
                    return plaintext
        raise BlobNotFound(f"blob {digest} not found", digest)

    def exists(self, digest: str) -> bool:
        """Whether a file for this digest is stored (its content is not verified)."""
        digest = _normalise_digest(digest)
        with self._lock(digest):
            return any(path.is_file() for path in self._candidate_paths(digest))

    def delete(self, digest: str) -> bool:
        """Remove the blob durably; return whether there was one."""
        digest = _normalise_digest(digest)
        with self._lock(digest):
            deleted = False
            for path in self._candidate_paths(digest):
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                _fsync_dir(path.parent)
                deleted = True
            return deleted

    def rotate(self, digest: str) -> BlobRef:
        """Re-encrypt the blob under the active key (a no-op when it already is).

        Raises the same errors as :meth:`get`; a blob that cannot be read is left as is.
        """
        digest = _normalise_digest(digest)
        with self._lock(digest):
            primary = self._path(digest, self._naming_secrets[0])
            for path in self._candidate_paths(digest):
                raw = self._read(path)
                if raw is None:
                    continue
                plaintext, key_id = self._open(raw, digest)
                if key_id == self._keyring.active_id and path == primary:
                    return BlobRef(digest, len(plaintext), key_id)
                ref = self._write(primary, plaintext, digest)
                if path != primary:
                    # The fresh copy is durable; only now drop the old one.
                    with suppress(FileNotFoundError):
                        path.unlink()
                        _fsync_dir(path.parent)
                return ref
        raise BlobNotFound(f"blob {digest} not found", digest)

    # -- internals -----------------------------------------------------------------------

    def _lock(self, digest: str) -> threading.Lock:
        return self._locks[int(digest[:8], 16) % _LOCK_STRIPES]

    def _path(self, digest: str, secret: bytes) -> Path:
        name = hmac.new(secret, _NAME_PREFIX + bytes.fromhex(digest), hashlib.sha256)
        hex_name = name.hexdigest()
        return self._root / hex_name[0:2] / hex_name[2:4] / hex_name

    def _candidate_paths(self, digest: str) -> list[Path]:
        return [self._path(digest, secret) for secret in self._naming_secrets]

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def _put(self, data: bytes, digest: str) -> BlobRef:
        with self._lock(digest):
            for path in self._candidate_paths(digest):
                raw = self._read(path)
                if raw is None:
                    continue
                try:
                    _, key_id = self._open(raw, digest)
                except (BlobCorrupted, BlobKeyUnavailable):
                    continue
                return BlobRef(digest, len(data), key_id)
            return self._write(self._path(digest, self._naming_secrets[0]), data, digest)

    def _seal(self, data: bytes, digest: str) -> tuple[bytes, str]:
        key_id = self._keyring.active_id
        encoded_id = key_id.encode("ascii")
        header = _MAGIC + bytes((_VERSION, len(encoded_id))) + encoded_id
        nonce = os.urandom(NONCE_SIZE)
        sealed = AESGCM(self._keyring.key(key_id)).encrypt(
            nonce, data, header + bytes.fromhex(digest)
        )
        return header + nonce + sealed, key_id

    def _open(self, raw: bytes, digest: str) -> tuple[bytes, str]:
        """Parse, authenticate and decrypt a blob file; return (plaintext, key id)."""
        if len(raw) < _MIN_FILE_SIZE or raw[: len(_MAGIC)] != _MAGIC:
            raise BlobCorrupted(f"blob {digest}: not a blob file", digest)
        offset = len(_MAGIC)
        version, id_length = raw[offset], raw[offset + 1]
        if version != _VERSION:
            raise BlobCorrupted(f"blob {digest}: unknown format version {version}", digest)
        offset += 2
        header_end = offset + id_length
        if id_length == 0 or len(raw) < header_end + NONCE_SIZE + TAG_SIZE:
            raise BlobCorrupted(f"blob {digest}: truncated header", digest)
        try:
            key_id = raw[offset:header_end].decode("ascii")
        except UnicodeDecodeError:
            raise BlobCorrupted(f"blob {digest}: invalid key id", digest) from None
        if key_id not in self._keyring:
            raise BlobKeyUnavailable(
                f"blob {digest} is sealed under key {key_id!r}, absent from the keyring",
                digest,
                key_id,
            )
        nonce = raw[header_end : header_end + NONCE_SIZE]
        sealed = raw[header_end + NONCE_SIZE :]
        aad = raw[:header_end] + bytes.fromhex(digest)
        try:
            plaintext = AESGCM(self._keyring.key(key_id)).decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise BlobCorrupted(
                f"blob {digest}: authentication failed (tampered file or wrong key)", digest
            ) from None
        if not hmac.compare_digest(hashlib.sha256(plaintext).hexdigest(), digest):
            raise BlobCorrupted(f"blob {digest}: content does not match its digest", digest)
        return plaintext, key_id

    def _write(self, path: Path, data: bytes, digest: str) -> BlobRef:
        """Seal ``data`` and atomically, durably put it at ``path``."""
        blob, key_id = self._seal(data, digest)
        directory = path.parent
        _makedirs_durable(directory)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(directory)
        return BlobRef(digest, len(data), key_id)
