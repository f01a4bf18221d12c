"""The `mssante` command line (docs/operations.md): exit codes, messages and effects.

Most commands run in-process with click's CliRunner; a few run the installed `mssante`
script as a real subprocess. Every operator test writes the database URL of the engine
under test (`MSSANTE_TEST_DB`, fixture `database_url`) into the config made by `mssante init`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mssante.cli import main
from mssante.config import load_config

SHARED_DATA = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
VECTORS_CSV = SHARED_DATA / "identifiers" / "identifier_vectors.csv"
WHITE_LIST = SHARED_DATA / "trust-list" / "listeblanchemssante.xml"
CHECKSUM = SHARED_DATA / "trust-list" / "checksum"
WHITE_LIST_ENTRIES = 619

DOMAIN = "ch-test.mssante.fr"
STRUCT = "1750000028"  # 1 + FINESS 750000028
RPPS = "10000000017"  # valid Luhn key
BAD_RPPS = "10000000018"  # key should be 7
PASSWORD = "Demo-password-0123456789"
PER = f"camille.martin@{DOMAIN}"
ORG = f"secretariat@{DOMAIN}"
APP = f"dpi@{DOMAIN}"

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Wide enough that rich never wraps or truncates a line or a table cell.
WIDE = {"COLUMNS": "250"}


def _exe() -> str:
    beside = Path(sys.executable).parent / "mssante"
    found = str(beside) if beside.exists() else shutil.which("mssante")
    assert found, "the mssante script is not installed (pip install -e .)"
    return found


def _clean(text: str) -> str:
    return ANSI.sub("", text)


def cli(*args: str, config: Path | None = None, env: dict[str, str | None] | None = None) -> Result:
    """Run `mssante [--config FILE] ARGS` in-process; MSSANTE_CONFIG unset unless in env."""
    argv = (["--config", str(config)] if config else []) + list(args)
    full_env: dict[str, str | None] = {"MSSANTE_CONFIG": None, **WIDE, **(env or {})}
    return CliRunner().invoke(main, argv, env=full_env, catch_exceptions=False)


def out(result: Result) -> str:
    """stdout and stderr together, without colours."""
    return _clean(result.output)


def run_exe(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed `mssante` script as a real process."""
    full_env = {k: v for k, v in os.environ.items() if k != "MSSANTE_CONFIG"}
    full_env.update(WIDE)
    full_env.update(env or {})
    return subprocess.run(
        [_exe(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


# -- identifier check ----------------------------------------------------------------------


def _vectors() -> list[dict[str, str]]:
    with VECTORS_CSV.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


VECTORS = _vectors()


@pytest.mark.parametrize(
    "row",
    VECTORS,
    ids=[f"{r['identifier_type']}-{r['value']}-{r['computed_check']}" for r in VECTORS],
)
def test_identifier_check_vectors(row: dict[str, str]) -> None:
    expected = 0 if row["computed_check"] == "ok" else 1
    human = cli("identifier", "check", row["value"], "--type", row["identifier_type"])
    assert human.exit_code == expected, out(human)
    assert ("invalid" in out(human)) == (expected == 1), out(human)

    machine = cli("identifier", "check", row["value"], "--type", row["identifier_type"], "--json")
    assert machine.exit_code == expected, out(machine)
    verdict = json.loads(machine.stdout)
    assert verdict["valid"] is (expected == 0)
    assert verdict["value"] == re.sub(r"[\s.]", "", row["value"]).upper()
    assert verdict["reason"]
    assert set(verdict) >= {"type", "value", "valid", "reason", "ambiguous"}


def test_identifier_vectors_cover_both_outcomes() -> None:
    outcomes = {r["computed_check"] == "ok" for r in VECTORS}
    assert outcomes == {True, False}
    assert len(VECTORS) >= 90


def test_identifier_check_guesses_the_type() -> None:
    result = cli("identifier", "check", RPPS, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["type"] == "RPPS"
    bad = cli("identifier", "check", BAD_RPPS)
    assert bad.exit_code == 1
    assert "Luhn" in out(bad)


def test_identifier_check_unknown_type_is_a_usage_error() -> None:
    result = cli("identifier", "check", RPPS, "--type", "PASSPORT")
    assert result.exit_code == 2
    assert "unknown identifier type 'PASSPORT'" in out(result)
    assert "RPPS" in out(result)  # the message lists the accepted types


def test_identifier_check_as_a_real_process() -> None:
    bad = run_exe("identifier", "check", BAD_RPPS, "--type", "rpps", "--json")
    assert bad.returncode == 1, bad.stderr
    verdict = json.loads(bad.stdout)
    assert verdict["valid"] is False
    assert "expected 7" in verdict["reason"]
    unknown = run_exe("identifier", "check", RPPS, "--type", "nope")
    assert unknown.returncode == 2
    assert "unknown identifier type" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1  # one line, not wrapped at 80 cols


# -- operator administration ---------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, database_url: Callable[[], str]) -> Path:
    """`mssante init` output, pointed at the database engine under test."""
    result = cli("init", str(tmp_path / "op"), "--domain", DOMAIN)
    assert result.exit_code == 0, out(result)
    path = tmp_path / "op" / "mssante.toml"
    assert path.exists()
    url = database_url()
    if url:
        text = path.read_text(encoding="utf-8")
        text, count = re.subn(r'(?m)^url = "".*$', f"url = {json.dumps(url)}", text)
        assert count == 1, 'mssante init no longer writes `url = ""` under [database]'
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def operator(config_file: Path) -> Path:
    """An operator with one structure, one professional and a PER, an ORG and an APP box."""
    steps = [
        f"structure create --id-nat-struct {STRUCT} --name 'CH Test'",
        f"professional create --rpps {RPPS} --family-name Martin --given-name Camille",
        f"mailbox create {PER} --type PER --rpps {RPPS} --password {PASSWORD}",
        f"mailbox create {ORG} --type ORG --id-nat-struct {STRUCT} --responsible 'Dr Martin'",
        f"mailbox create {APP} --type APP --id-nat-struct {STRUCT} --responsible 'DSI du CH'",
    ]
    for step in steps:
        result = cli(*shlex.split(step), config=config_file)
        assert result.exit_code == 0, f"{step}: {out(result)}"
    return config_file


def _boxes(config: Path) -> dict[str, dict[str, object]]:
    result = cli("mailbox", "list", "--json", config=config)
    assert result.exit_code == 0, out(result)
    return {b["address"]: b for b in json.loads(result.stdout)}


def test_init_refuses_a_domain_outside_mssante_and_an_existing_config(tmp_path: Path) -> None:
    outside = cli("init", str(tmp_path / "x"), "--domain", "example.com")
    assert outside.exit_code == 2
    assert "not a subdomain of mssante.fr" in out(outside)
    assert cli("init", str(tmp_path / "op"), "--domain", DOMAIN).exit_code == 0
    again = cli("init", str(tmp_path / "op"), "--domain", DOMAIN)
    assert again.exit_code == 2
    assert "already exists" in out(again)


def test_create_structure_professional_and_mailboxes(operator: Path) -> None:
    boxes = _boxes(operator)
    assert set(boxes) == {PER, ORG, APP}
    assert boxes[PER]["type"] == "PER"
    assert boxes[PER]["id_nat_ps"] == "8" + RPPS
    assert boxes[PER]["id_nat_struct"] is None
    for address, type_ in ((ORG, "ORG"), (APP, "APP")):
        assert boxes[address]["type"] == type_
        assert boxes[address]["id_nat_struct"] == STRUCT
        assert boxes[address]["id_nat_ps"] is None
    assert {b["status"] for b in boxes.values()} == {"active"}
    assert not any(b["list_rouge"] for b in boxes.values())
    table = cli("mailbox", "list", config=operator)
    assert table.exit_code == 0
    for address in (PER, ORG, APP):
        assert address in out(table)


def test_duplicate_mailbox_is_refused(operator: Path) -> None:
    again = cli("mailbox", "create", PER, "--type", "PER", "--rpps", RPPS, config=operator)
    assert again.exit_code == 1
    assert "error:" in out(again)
    assert "[already-exists]" in out(again)


def test_mailbox_life_cycle(operator: Path) -> None:
    steps = (("suspend", "suspended"), ("reactivate", "active"), ("close", "closed"))
    for command, status in steps:
        result = cli("mailbox", command, APP, config=operator)
        assert result.exit_code == 0, out(result)
        assert f"mailbox {APP} is now {status}" in out(result)
        assert _boxes(operator)[APP]["status"] == status
    twice = cli("mailbox", "close", APP, config=operator)
    assert twice.exit_code == 1
    lines = [line for line in out(twice).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "already closed" in lines[0]
    assert _boxes(operator)[APP]["status"] == "closed"
    reopen = cli("mailbox", "reactivate", APP, config=operator)
    assert reopen.exit_code == 1  # closed is final
    unknown = cli("mailbox", "suspend", f"nobody@{DOMAIN}", config=operator)
    assert unknown.exit_code == 1
    assert f"nobody@{DOMAIN}" in out(unknown)


def test_invalid_rpps_is_refused_with_the_reason(config_file: Path) -> None:
    professional = cli(
        *shlex.split(f"professional create --rpps {BAD_RPPS} --family-name X --given-name Y"),
        config=config_file,
    )
    assert professional.exit_code == 1
    assert "Luhn" in out(professional)
    assert "expected 7" in out(professional)
    box = cli(
        *shlex.split(f"mailbox create x.y@{DOMAIN} --type PER --rpps {BAD_RPPS}"),
        config=config_file,
    )
    assert box.exit_code == 1
    assert "Luhn" in out(box)
    assert "[invalid-identifier]" in out(box)
    assert _boxes(config_file) == {}


def test_org_and_app_mailboxes_need_a_responsible_person(config_file: Path) -> None:
    created = cli(
        *shlex.split(f"structure create --id-nat-struct {STRUCT} --name CH"), config=config_file
    )
    assert created.exit_code == 0, out(created)
    for type_ in ("ORG", "APP"):
        command = f"mailbox create {type_.lower()}@{DOMAIN} --type {type_} --id-nat-struct {STRUCT}"
        result = cli(*shlex.split(command), config=config_file)
        assert result.exit_code == 1, out(result)
        assert "responsible" in out(result)
    assert _boxes(config_file) == {}


def test_operator_runs_on_the_engine_under_test(operator: Path) -> None:
    engine = os.environ.get("MSSANTE_TEST_DB", "sqlite")
    url = load_config(operator).database_url
    assert url.startswith("postgresql" if engine == "postgresql" else "sqlite:///")
    sqlite_file = operator.parent / "data" / "mssante.db"
    assert sqlite_file.exists() is (engine != "postgresql")


def test_unknown_or_missing_configuration_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    by_option = cli("mailbox", "list", config=missing)
    assert by_option.exit_code == 2
    assert str(missing) in out(by_option)
    by_env = cli("queue", env={"MSSANTE_CONFIG": str(missing)})
    assert by_env.exit_code == 2
    assert str(missing) in out(by_env)
    nothing = cli("queue")
    assert nothing.exit_code == 2
    assert "MSSANTE_CONFIG" in out(nothing)
    broken = tmp_path / "broken.toml"
    broken.write_text("data_dir = [\n", encoding="utf-8")
    assert cli("queue", config=broken).exit_code == 2


def test_mssante_config_variable_selects_the_operator(operator: Path) -> None:
    result = cli("mailbox", "list", "--json", env={"MSSANTE_CONFIG": str(operator)})
    assert result.exit_code == 0, out(result)
    assert {b["address"] for b in json.loads(result.stdout)} == {PER, ORG, APP}


def test_add_member_and_trace_list(operator: Path) -> None:
    added = cli("mailbox", "add-member", ORG, PER, config=operator)
    assert added.exit_code == 0, out(added)
    assert f"{PER} is now a member of {ORG}" in out(added)
    again = cli("mailbox", "add-member", ORG, PER, config=operator)
    assert again.exit_code == 1
    assert "already a member" in out(again)
    not_org = cli("mailbox", "add-member", PER, APP, config=operator)
    assert not_org.exit_code == 1
    assert cli("mailbox", "suspend", APP, config=operator).exit_code == 0

    traces = cli("trace", "list", config=operator)
    assert traces.exit_code == 0, out(traces)
    text = out(traces)
    for action in (
        "structure.create",
        "professional.create",
        "mailbox.create",
        "mailbox.member.add",
        "mailbox.suspend",
    ):
        assert action in text, f"{action} missing from:\n{text}"
    assert PASSWORD not in text  # R63: never a password in a trace

    only_app = out(cli("trace", "list", "--mailbox", APP, config=operator))
    assert "mailbox.suspend" in only_app
    assert "mailbox.member.add" not in only_app
    only_member = out(cli("trace", "list", "--action", "mailbox.member.add", config=operator))
    assert "mailbox.member.add" in only_member
    assert "mailbox.create" not in only_member


def test_queue_is_empty_on_a_new_operator(config_file: Path) -> None:
    result = cli("queue", config=config_file)
    assert result.exit_code == 0, out(result)
    assert "0 deliveries queued" in out(result)


def test_operator_commands_as_real_processes(operator: Path) -> None:
    env = {"MSSANTE_CONFIG": str(operator)}
    assert cli("mailbox", "close", APP, config=operator).exit_code == 0
    listed = run_exe("mailbox", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    statuses = {b["address"]: b["status"] for b in json.loads(listed.stdout)}
    assert statuses == {PER: "active", ORG: "active", APP: "closed"}
    twice = run_exe("--config", str(operator), "mailbox", "close", APP)
    assert twice.returncode == 1
    lines = _clean(twice.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert "already closed" in lines[0]


# -- white list ----------------------------------------------------------------------------


def _sha256_in(text: str) -> str:
    match = re.search(r"sha256 ([0-9a-f]{64})", text)
    assert match, text
    return match.group(1)


def test_trust_list_load_and_a_tampered_list_keeps_the_list_in_force(
    config_file: Path, tmp_path: Path
) -> None:
    none_yet = cli("trust-list", "status", config=config_file)
    assert none_yet.exit_code == 1
    assert "no white list loaded" in out(none_yet)

    env = {"MSSANTE_CONFIG": str(config_file)}
    loaded = run_exe("trust-list", "load", str(WHITE_LIST), "--checksum", str(CHECKSUM), env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert f"white list loaded: {WHITE_LIST_ENTRIES} entries" in loaded.stdout

    status = cli("trust-list", "status", config=config_file)
    assert status.exit_code == 0, out(status)
    expected_sha = CHECKSUM.read_text(encoding="ascii").split()[0].lower()
    assert _sha256_in(out(status)) == expected_sha
    assert f"{WHITE_LIST_ENTRIES} entries" in out(status)
    assert "generation 1" in out(status)

    data = bytearray(WHITE_LIST.read_bytes())
    at = data.index(b".mssante.fr") - 1  # last letter of the first listed domain
    data[at] ^= 0x01
    tampered = tmp_path / "listeblanchemssante.xml"
    tampered.write_bytes(bytes(data))
    refused = cli("trust-list", "load", str(tampered), "--checksum", str(CHECKSUM), env=env)
    assert refused.exit_code == 1
    message = out(refused)
    assert "checksum mismatch" in message
    assert expected_sha in message
    assert "[trust-list-rejected]" in message

    after = run_exe("trust-list", "status", env=env)
    assert after.returncode == 0, after.stderr
    assert _sha256_in(after.stdout) == expected_sha
    assert f"{WHITE_LIST_ENTRIES} entries" in after.stdout
    assert "generation 1" in after.stdout
    assert str(WHITE_LIST) in after.stdout


def test_trust_list_load_rejects_garbage(config_file: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.xml"
    garbage.write_bytes(b"<not-a-white-list/>")
    result = cli("trust-list", "load", str(garbage), config=config_file)
    assert result.exit_code == 1
    assert "[trust-list-rejected]" in out(result)
    assert cli("trust-list", "status", config=config_file).exit_code == 1
