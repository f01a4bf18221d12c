"""Tests of the encrypted, content-addressed blob store."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssante.storage.blobs import (
    BlobCorrupted,
    BlobKeyring,
    BlobKeyUnavailable,
    BlobNotFound,
    BlobRef,
    FileBlobStore,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
NAMING = bytes(range(200, 232))


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(params=["naming-key", "per-key-names"])
def keyring(request: pytest.FixtureRequest) -> BlobKeyring:
    naming = NAMING if request.param == "naming-key" else None
    return BlobKeyring({"k1": KEY_A}, "k1", naming_key=naming)


@pytest.fixture
def store(tmp_path: Path, keyring: BlobKeyring) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs", keyring)


def with_keys(store: FileBlobStore, keys: dict[str, bytes], active: str) -> FileBlobStore:
    """The same root opened with another keyring (same naming mode)."""
    naming = NAMING if store.keyring.has_naming_key else None
    return FileBlobStore(store.root, BlobKeyring(keys, active, naming_key=naming))


# -- keyring -------------------------------------------------------------------------------


def test_keyring_validation() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BlobKeyring({}, "k1")
    with pytest.raises(ValueError, match="32 bytes"):
        BlobKeyring({"k1": b"short"}, "k1")
    with pytest.raises(TypeError):
        BlobKeyring({"k1": "x" * 32}, "k1")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not in the keyring"):
        BlobKeyring({"k1": KEY_A}, "k2")
    with pytest.raises(ValueError, match="invalid blob key id"):
        BlobKeyring({"bad id": KEY_A}, "bad id")
    with pytest.raises(ValueError, match="invalid blob key id"):
        BlobKeyring({"": KEY_A}, "")
    with pytest.raises(ValueError, match="naming key"):
        BlobKeyring({"k1": KEY_A}, "k1", naming_key=b"x" * 31)


def test_keyring_repr_hides_keys() -> None:
    keyring = BlobKeyring({"k1": KEY_A, "k2": KEY_B}, "k2", naming_key=NAMING)
    text = repr(keyring)
    assert "k1" in text and "k2" in text
    assert KEY_A.hex() not in text and repr(KEY_A) not in text
    assert keyring.key_ids == ("k2", "k1")


# -- basic behaviour -----------------------------------------------------------------------


def test_round_trip(store: FileBlobStore) -> None:
    data = b"Compte rendu d'hospitalisation\r\n" * 100
    ref = store.put(data)
    assert ref == BlobRef(hashlib.sha256(data).hexdigest(), len(data), "k1")
    assert store.exists(ref.digest)
    assert store.get(ref.digest) == data
    assert store.get(ref.digest.upper()) == data


def test_empty_blob(store: FileBlobStore) -> None:
    ref = store.put(b"")
    assert ref.size == 0
    assert store.get(ref.digest) == b""


def test_put_stream_matches_put(store: FileBlobStore) -> None:
    chunks = [b"a" * 1000, b"", b"b" * 5000, b"c"]
    ref = store.put_stream(iter(chunks))
    assert ref == store.put(b"".join(chunks))
    assert store.get(ref.digest) == b"".join(chunks)
    assert len(blob_files(store.root)) == 1


def test_file_is_encrypted_and_private(store: FileBlobStore) -> None:
    data = b"SECRET-PATIENT-DATA " * 10
    store.put(data)
    (path,) = blob_files(store.root)
    raw = path.read_bytes()
    assert b"SECRET-PATIENT-DATA" not in raw
    assert raw.startswith(b"MSSB\x01\x02k1")
    assert len(raw) == 4 + 2 + 2 + 12 + len(data) + 16
    assert path.stat().st_mode & 0o077 == 0


def test_file_name_does_not_leak_digest(store: FileBlobStore) -> None:
    data = b"a well-known public document"
    ref = store.put(data)
    (path,) = blob_files(store.root)
    rel = path.relative_to(store.root)
    assert len(rel.parts) == 3
    name = rel.parts[-1]
    assert rel.parts[0] == name[0:2] and rel.parts[1] == name[2:4]
    assert len(name) == 64
    assert ref.digest not in str(path)
    assert ref.digest[:8] not in str(rel)
    assert hashlib.sha256(ref.digest.encode()).hexdigest() != name


def test_names_depend_on_the_naming_secret(tmp_path: Path) -> None:
    data = b"same content"
    one = FileBlobStore(tmp_path / "one", BlobKeyring({"k1": KEY_A}, "k1", naming_key=NAMING))
    two = FileBlobStore(tmp_path / "two", BlobKeyring({"k1": KEY_A}, "k1", naming_key=KEY_B))
    one.put(data)
    two.put(data)
    assert blob_files(one.root)[0].name != blob_files(two.root)[0].name


def test_dedup_does_not_rewrite(store: FileBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"deduplicated body"
    first = store.put(data)
    (path,) = blob_files(store.root)
    before = path.read_bytes()
    stat_before = path.stat()
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src: str, dst: str) -> None:
        replaced.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    assert store.put(data) == first
    assert store.put_stream([data[:5], data[5:]]) == first
    assert replaced == []
    assert blob_files(store.root) == [path]
    assert path.read_bytes() == before  # same nonce: not re-encrypted
    assert path.stat().st_ino == stat_before.st_ino


def test_put_repairs_a_corrupted_copy(store: FileBlobStore) -> None:
    data = b"body to repair"
    ref = store.put(data)
    (path,) = blob_files(store.root)
    path.write_bytes(b"garbage")
    with pytest.raises(BlobCorrupted):
        store.get(ref.digest)
    assert store.put(data) == ref
    assert store.get(ref.digest) == data


def test_not_found_and_invalid_digest(store: FileBlobStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(BlobNotFound) as info:
        store.get(missing)
    assert info.value.digest == missing
    assert not store.exists(missing)
    assert store.delete(missing) is False
    with pytest.raises(BlobNotFound):
        store.rotate(missing)
    for bad in ("", "abc", "z" * 64, missing + "00"):
        with pytest.raises(ValueError):
            store.get(bad)


def test_delete(store: FileBlobStore) -> None:
    ref = store.put(b"to be deleted")
    assert store.delete(ref.digest) is True
    assert not store.exists(ref.digest)
    assert blob_files(store.root) == []
    with pytest.raises(BlobNotFound):
        store.get(ref.digest)
    assert store.delete(ref.digest) is False


# -- keys ----------------------------------------------------------------------------------


def test_wrong_key_same_id_is_an_error(store: FileBlobStore) -> None:
    ref = store.put(b"sealed under KEY_A")
    other = with_keys(store, {"k1": KEY_B}, "k1")
    if store.keyring.has_naming_key:
        # Same file name, different key bytes: authentication fails.
        with pytest.raises(BlobCorrupted):
            other.get(ref.digest)
    else:
        # Names derive from the key itself: the blob is not even found.
        with pytest.raises(BlobNotFound):
            other.get(ref.digest)


def test_unknown_key_id_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    old = FileBlobStore(root, BlobKeyring({"k1": KEY_A}, "k1", naming_key=NAMING))
    ref = old.put(b"sealed under k1")
    new = FileBlobStore(root, BlobKeyring({"k2": KEY_B}, "k2", naming_key=NAMING))
    with pytest.raises(BlobKeyUnavailable) as info:
        new.get(ref.digest)
    assert info.value.key_id == "k1"
    # A put of the same content replaces the unreadable copy with a readable one.
    assert new.put(b"sealed under k1").key_id == "k2"
    assert new.get(ref.digest) == b"sealed under k1"


def test_key_rotation(store: FileBlobStore) -> None:
    data = b"body written before the rotation"
    old_ref = store.put(data)
    assert old_ref.key_id == "k1"

    rotated = with_keys(store, {"k1": KEY_A, "k2": KEY_B}, "k2")
    # The old blob stays readable, and a put of the same content deduplicates.
    assert rotated.get(old_ref.digest) == data
    assert rotated.put(data) == old_ref
    # New blobs go under the new active key.
    new_ref = rotated.put(b"body written after the rotation")
    assert new_ref.key_id == "k2"

    ref = rotated.rotate(old_ref.digest)
    assert ref == BlobRef(old_ref.digest, len(data), "k2")
    assert rotated.get(old_ref.digest) == data
    assert len(blob_files(store.root)) == 2
    for path in blob_files(store.root):
        assert path.read_bytes().startswith(b"MSSB\x01\x02k2")
    # Rotating again is a no-op.
    assert rotated.rotate(old_ref.digest) == ref

    # The old key can now leave the keyring.
    retired = with_keys(store, {"k2": KEY_B}, "k2")
    assert retired.get(old_ref.digest) == data
    assert retired.get(new_ref.digest) == b"body written after the rotation"


# -- tampering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), id="tag"),
        pytest.param(lambda raw: raw[:30] + bytes([raw[30] ^ 0x80]) + raw[31:], id="body"),
        pytest.param(lambda raw: raw[:10] + bytes([raw[10] ^ 1]) + raw[11:], id="nonce"),
        pytest.param(lambda raw: raw[:20], id="truncated"),
        pytest.param(lambda raw: raw[:-16], id="no-tag"),
        pytest.param(lambda raw: b"XXXX" + raw[4:], id="magic"),
        pytest.param(lambda raw: raw[:4] + b"\x02" + raw[5:], id="version"),
        pytest.param(lambda raw: b"", id="empty"),
    ],
)
def test_tampered_file_is_corrupted(store: FileBlobStore, tamper: Callable[[bytes], bytes]) -> None:
    ref = store.put(b"x" * 64)
    (path,) = blob_files(store.root)
    path.write_bytes(tamper(path.read_bytes()))
    with pytest.raises(BlobCorrupted):
        store.get(ref.digest)
    with pytest.raises(BlobCorrupted):
        store.rotate(ref.digest)


def test_tampered_key_id_is_corrupted(tmp_path: Path) -> None:
    keyring = BlobKeyring({"k1": KEY_A, "k2": KEY_A}, "k1", naming_key=NAMING)
    store = FileBlobStore(tmp_path, keyring)
    ref = store.put(b"header is authenticated")
    (path,) = blob_files(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"\x02k1", b"\x02k2", 1))
    with pytest.raises(BlobCorrupted):
        store.get(ref.digest)


def test_swapped_files_are_corrupted(store: FileBlobStore) -> None:
    ref_a = store.put(b"blob A")
    ref_b = store.put(b"blob B")
    files = blob_files(store.root)
    raw = {p: p.read_bytes() for p in files}
    path_a, path_b = files
    path_a.write_bytes(raw[path_b])
    path_b.write_bytes(raw[path_a])
    for ref in (ref_a, ref_b):
        with pytest.raises(BlobCorrupted):
            store.get(ref.digest)


# -- durability ----------------------------------------------------------------------------


@pytest.fixture
def fsync_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    yield calls


def test_put_fsyncs_file_and_directories(tmp_path: Path, fsync_calls: list[int]) -> None:
    store = FileBlobStore(tmp_path / "a" / "b", BlobKeyring({"k1": KEY_A}, "k1"))
    # Creating root/a and root/a/b synced their parents.
    assert len(fsync_calls) == 2
    fsync_calls.clear()
    store.put(b"first blob")
    # The file, its directory, and the parents of the two created directories ab/ and cd/.
    assert len(fsync_calls) == 4
    fsync_calls.clear()
    store.put(b"first blob")
    assert fsync_calls == []  # dedup writes nothing


def test_put_fsyncs_before_replace(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch, fsync_calls: list[int]
) -> None:
    events: list[str] = []
    real_replace = os.replace

    def recording_replace(src: str, dst: str) -> None:
        events.append(f"replace after {len(fsync_calls)} fsync")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    store.put(b"ordered")
    assert len(events) == 1
    count_at_replace = int(events[0].split()[2])
    assert count_at_replace >= 1  # the temp file was synced before the rename
    assert len(fsync_calls) > count_at_replace  # and the directory after it


def test_delete_and_rotate_fsync(store: FileBlobStore, fsync_calls: list[int]) -> None:
    ref = store.put(b"x")
    fsync_calls.clear()
    rotated = with_keys(store, {"k1": KEY_A, "k2": KEY_B}, "k2")
    rotated.rotate(ref.digest)
    assert len(fsync_calls) >= 2
    fsync_calls.clear()
    assert rotated.delete(ref.digest)
    assert len(fsync_calls) >= 1


def test_failed_write_leaves_no_temp_file(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put(b"never stored")
    assert blob_files(store.root) == []


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_puts_and_gets(store: FileBlobStore) -> None:
    bodies = [f"body {i % 20}".encode() * 50 for i in range(200)]

    def work(body: bytes) -> bytes:
        ref = store.put(body)
        return store.get(ref.digest)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, bodies))
    assert results == bodies
    assert len(blob_files(store.root)) == 20


# -- property ------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=4096))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = tmp_path_factory.mktemp("prop")
    store = FileBlobStore(root, BlobKeyring({"k1": KEY_A}, "k1", naming_key=NAMING))
    ref = store.put(data)
    assert ref.digest == hashlib.sha256(data).hexdigest()
    assert ref.size == len(data)
    assert store.get(ref.digest) == data
    assert store.put(data) == ref


def test_concurrent_rotate_and_get(store: FileBlobStore) -> None:
    bodies = [f"rotating body {i}".encode() for i in range(30)]
    refs = [store.put(body) for body in bodies]
    rotated = with_keys(store, {"k1": KEY_A, "k2": KEY_B}, "k2")

    def work(i: int) -> bytes:
        ref = refs[i % len(refs)]
        if i % 2:
            rotated.rotate(ref.digest)
        return rotated.get(ref.digest)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(120)))
    assert results == [bodies[i % len(bodies)] for i in range(120)]
    assert len(blob_files(store.root)) == len(bodies)
