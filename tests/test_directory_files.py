"""Readers of the directory extractions (issue 5 item 1; SPEC §4.3, R52): formats recognised
from the header, streaming, bad rows reported with their line number, hostile files refused.

No database here: see test_directory_import.py for the import itself.
"""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from mssante.domain.directory import DirectoryEntry, DirectoryProfessional
from mssante.domain.identifiers import is_valid_finess, is_valid_rpps, is_valid_siret
from mssante.formats.directory_files import (
    ENTRY_WIDTHS,
    MSSANTE,
    PROFESSIONAL_WIDTHS,
    PSC,
    RASS,
    DirectoryFileRefused,
    ExtractionReader,
    RowError,
    detect_format,
)
from mssante.formats.directory_sample import sample_lines, write_sample
from mssante.storage.schema_directory import directory_entries, directory_professionals

EXTRACTIONS = SHARED_DATA / "annuaire" / "extractions"
PSC_FILE = EXTRACTIONS / "Extraction_ProSanteConnect_Personne_activite_202112120512.txt"


def _reader(data: bytes, name: str = "f.txt") -> ExtractionReader:
    return ExtractionReader(io.BytesIO(data), name)


def _sample(fmt: str, rows: int, seed: int = 1) -> bytes:
    out = io.BytesIO()
    write_sample(out, fmt, rows, seed)
    return out.getvalue()


def _items(data: bytes) -> list[object]:
    return list(_reader(data).items())


# -- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("Extraction_Correspondance_MSSante.header.txt", MSSANTE),
        ("PS_LibreAcces_Personne_activite.header.txt", RASS),
        (PSC_FILE.name, PSC),
    ],
)
def test_the_published_headers_are_recognised(name: str, fmt: object) -> None:
    header = (EXTRACTIONS / name).read_text(encoding="utf-8").splitlines()[0]
    assert detect_format(header) is fmt


def test_the_real_pro_sante_connect_file_reads_and_reports_its_bad_rows() -> None:
    with PSC_FILE.open("rb") as f:
        reader = ExtractionReader(f, PSC_FILE.name)
        items = list(reader.items())
    pros = [i for i in items if isinstance(i, DirectoryProfessional)]
    errors = [i for i in items if isinstance(i, RowError)]
    assert reader.format is PSC and len(pros) == 8
    # Lines 10 and 11: "Identifiant PP" 10107582544 fails its Luhn key (R53).
    assert [e.line for e in errors] == [10, 11]
    assert all("10107582544" in e.reason and "Luhn" in e.reason for e in errors)
    evrard = pros[1]
    assert (evrard.id_nat_ps, evrard.profession_code, evrard.profession_label) == (
        "0012800728",
        "28",
        "Opticien-Lunetier",
    )
    assert (evrard.postcode, evrard.city, evrard.departement) == ("01000", "BOURG EN BRESSE", "01")
    assert evrard.org_id == "C39806996300013" and evrard.org_name == "SARL PATRICE EVRARD"
    assert pros[-1].id_nat_ps == "810107592585" and pros[-1].email == "roleau@outlook.fr"


@pytest.mark.parametrize("fmt", ["mssante", "rass", "psc"])
def test_samples_read_back_without_errors(fmt: str) -> None:
    items = _items(_sample(fmt, 600, seed=5))
    assert len(items) == 600
    assert not [i for i in items if isinstance(i, RowError)]


def test_sample_is_deterministic_valid_and_french() -> None:
    assert _sample("mssante", 300, seed=9) == _sample("mssante", 300, seed=9)
    assert _sample("mssante", 300, seed=9) != _sample("mssante", 300, seed=10)
    entries = [i for i in _items(_sample("mssante", 2000, seed=3)) if isinstance(i, DirectoryEntry)]
    per = [e for e in entries if e.bal_type == "PER"]
    org = [e for e in entries if e.bal_type == "ORG"]
    assert 0.78 < len(per) / len(entries) < 0.92 and len(per) + len(org) == len(entries)
    assert all(
        e.address == e.address.lower() and e.address.endswith(".mssante.fr") for e in entries
    )
    rpps = [e for e in per if e.id_type_pp == "8"]
    assert all(is_valid_rpps(e.id_pp) and e.id_nat_ps == "8" + e.id_pp for e in rpps)
    assert all(is_valid_finess(e.id_struct[1:]) for e in org)
    assert any(set("éèêëïîôüç") & set(e.given_name.lower()) for e in per)
    assert {e.departement for e in entries} >= {"75", "2A", "974"}
    rass = _items(_sample("rass", 500, seed=3))
    assert all(isinstance(p, DirectoryProfessional) for p in rass)
    assert all(is_valid_siret(p.org_id[1:]) for p in rass if isinstance(p, DirectoryProfessional))
    # The same seed describes the same people in both formats.
    assert rpps[0].id_nat_ps in {p.id_nat_ps for p in rass if isinstance(p, DirectoryProfessional)}


def test_bom_crlf_blank_lines_and_case_are_accepted() -> None:
    lines = list(sample_lines("mssante", 3, seed=2))
    lines[1] = lines[1].replace("@", "@").upper().replace("PER|", "per|", 1)
    data = b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n\r\n").encode()
    items = _items(data)
    assert len(items) == 3 and all(isinstance(i, DirectoryEntry) for i in items)
    first = items[0]
    assert isinstance(first, DirectoryEntry)
    assert first.address == first.address.lower() and first.bal_type in ("PER", "ORG")


def test_entry_widths_follow_the_tables() -> None:
    def widths(table: object, names: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(table.c[n].type.length for n in names)  # type: ignore[attr-defined]

    entry_names = tuple(DirectoryEntry.__dataclass_fields__)[:31]
    pro_names = tuple(DirectoryProfessional.__dataclass_fields__)
    assert widths(directory_entries, entry_names) == ENTRY_WIDTHS
    assert widths(directory_professionals, pro_names) == PROFESSIONAL_WIDTHS


# -- bad files, refused as a whole ------------------------------------------------------------


def test_wrong_separator_is_refused_at_line_1() -> None:
    data = _sample("mssante", 5).replace(b"|", b";")
    with pytest.raises(DirectoryFileRefused, match=r"ligne 1 .*séparateur") as caught:
        _reader(data)
    assert caught.value.line == 1


def test_unknown_header_and_wrong_header_width_are_refused() -> None:
    with pytest.raises(DirectoryFileRefused, match="en-tête non reconnu"):
        _reader(b"nom|prenom|ville\nMartin|Jean|Paris\n")
    header = MSSANTE.header + "|Colonne en trop"
    with pytest.raises(DirectoryFileRefused, match="32 colonnes, 31 attendues"):
        _reader(header.encode() + b"\n")
    renamed = MSSANTE.header.replace("Nom d'exercice", "Nom")
    with pytest.raises(DirectoryFileRefused, match="colonne 10"):
        _reader(renamed.encode() + b"\n")


def test_empty_file_non_utf8_header_and_huge_header_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DirectoryFileRefused, match="vide"):
        _reader(b"")
    with pytest.raises(DirectoryFileRefused, match="UTF-8"):
        _reader(MSSANTE.header.encode("latin-1") + b"\n")
    with pytest.raises(DirectoryFileRefused, match="ligne 1 : en-tête de plus de"):
        _reader(b"x" * 200_000 + b"\n")


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return out.getvalue()


def test_zip_is_read_and_hostile_zips_are_refused() -> None:
    data = _sample("rass", 50)
    reader = _reader(_zip({"PS_LibreAcces_Personne_activite_202611260000.txt": data}), "r.zip")
    assert reader.is_zip and reader.format is RASS
    assert len([i for i in reader.items() if isinstance(i, DirectoryProfessional)]) == 50
    archive = _zip({"a.txt": data})
    with pytest.raises(DirectoryFileRefused, match="tronquée"):
        _reader(archive[: len(archive) // 2], "cut.zip")
    with pytest.raises(DirectoryFileRefused, match="un seul fichier"):
        _reader(_zip({"a.txt": data, "b.txt": data}), "two.zip")
    with pytest.raises(DirectoryFileRefused, match="refusée : chemin hors de l'archive"):
        _reader(_zip({"../evil.txt": data}), "evil.zip")
    bomb = _zip({"a.txt": data + b"0" * 30_000_000})
    with pytest.raises(DirectoryFileRefused, match="bombe zip"):
        _reader(bomb, "bomb.zip")


def test_corrupt_zip_data_is_refused_with_the_line_reached() -> None:
    data = _sample("mssante", 3000)
    archive = bytearray(_zip({"a.txt": data}))
    middle = len(archive) // 2
    archive[middle : middle + 64] = bytes(64)  # damage the deflate stream, keep the directory
    with pytest.raises(DirectoryFileRefused, match=r"ligne \d+ : archive zip corrompue") as caught:
        list(_reader(bytes(archive), "bad.zip").records())
    assert caught.value.line is not None


# -- bad rows, reported with their line number and skipped -------------------------------------


def test_bad_rows_are_reported_with_line_number_and_reason() -> None:
    lines = list(sample_lines("mssante", 12, seed=4))
    per = [i for i, line in enumerate(lines) if line.startswith("PER|8|") or "|8|" in line[:60]]
    assert len(per) >= 4
    bad_key = lines[per[0]].split("|")
    bad_key[3] = bad_key[3][:-1] + str((int(bad_key[3][-1]) + 1) % 10)
    lines[per[0]] = "|".join(bad_key)
    lines[per[1]] = lines[per[1]] + "|extra"
    wrong_nat = lines[per[2]].split("|")
    wrong_nat[4] = "810000000017"
    lines[per[2]] = "|".join(wrong_nat)
    long_name = lines[per[3]].split("|")
    long_name[9] = "É" * 300
    lines[per[3]] = "|".join(long_name)
    lines.append("XYZ|x@y.mssante.fr" + "|" * 29)
    lines.append("ORG|pas-une-adresse" + "|" * 29)
    data = ("\n".join(lines) + "\n").encode()
    data += b"PER|\xff\xfe@x.fr" + b"|" * 29 + b"\nPER|a@b.fr|\x00" + b"|" * 28 + b"\n"
    errors = {e.line: e.reason for e in _items(data) if isinstance(e, RowError)}
    n = len(lines)  # line numbers start at 1 with the header: lines[i] is line i + 1
    assert "clé de Luhn" in errors[per[0] + 1]
    assert errors[per[1] + 1] == "32 colonnes, 31 attendues"
    assert "incohérente" in errors[per[2] + 1]
    assert "trop long" in errors[per[3] + 1] and "family_name" in errors[per[3] + 1]
    assert errors[n - 1].startswith("type de BAL « XYZ »")
    assert "adresse BAL" in errors[n]
    assert "UTF-8" in errors[n + 1]
    assert "NUL" in errors[n + 2]
    assert len(errors) == 8


def test_a_50_mb_line_is_skipped_without_being_held_in_memory(tmp_path: Path) -> None:
    lines = list(sample_lines("mssante", 4, seed=1))
    path = tmp_path / "huge.txt"
    with path.open("wb") as f:
        f.write(("\n".join(lines[:3]) + "\n").encode())
        chunk = b"A" * (1024 * 1024)
        for _ in range(50):
            f.write(chunk)
        f.write(b"\n" + lines[3].encode() + b"\n")
    tracemalloc.start()
    try:
        with path.open("rb") as f:
            items = list(ExtractionReader(f, path.name).items())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [type(i) for i in items] == [DirectoryEntry, DirectoryEntry, RowError, DirectoryEntry]
    error = items[2]
    assert isinstance(error, RowError) and error.line == 4 and "65536 octets" in error.reason
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes while reading a 50 MB line"
