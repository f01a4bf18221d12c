"""`mssante demo` as a user runs it: a real process, its state file, swaks, then Ctrl-C.

One demo process serves the whole module; the last test stops it with SIGINT. The demo keeps
its two operators on SQLite in its own data directory whatever `MSSANTE_TEST_DB` says.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mssante.config import load_config
from mssante.runtime import Services

# A bound for a loaded CI machine, not a speed target (the time is printed).
STATE_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
SWAKS = shutil.which("swaks")
needs_swaks = pytest.mark.skipif(
    SWAKS is None, reason="swaks is not installed (Debian package `swaks`; `make test` installs it)"
)


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    state: dict[str, Any]
    stdout: Path
    stderr: Path
    started_in: float

    def operator(self, index: int) -> dict[str, Any]:
        return dict(self.state["operators"][index])

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")

    def errors(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")


def _exe() -> str:
    beside = Path(sys.executable).parent / "mssante"
    found = str(beside) if beside.exists() else shutil.which("mssante")
    assert found, "the mssante script is not installed (pip install -e .)"
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("demo")
    state_file, data_dir = root / "demo-state.json", root / "data"
    stdout, stderr = root / "stdout.txt", root / "stderr.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MSSANTE_CONFIG", None)
    argv = [_exe(), "demo", "--state-file", str(state_file), "--data-dir", str(data_dir)]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.monotonic()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
    try:
        while not state_file.exists():
            elapsed = time.monotonic() - started
            if process.poll() is not None:
                pytest.fail(
                    f"mssante demo exited with {process.returncode} before writing its state:\n"
                    + stderr.read_text(encoding="utf-8", errors="replace")
                )
            if elapsed > STATE_TIMEOUT:
                pytest.fail(f"no state file after {STATE_TIMEOUT:.0f} s")
            time.sleep(0.05)
        started_in = time.monotonic() - started
        state = json.loads(state_file.read_text(encoding="utf-8"))
        yield Demo(process, state, stdout, stderr, started_in)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_state_file_appears_quickly(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f" [mssante demo: state file after {demo.started_in:.2f} s]", end="")
    assert demo.started_in < STATE_TIMEOUT
    assert demo.process.poll() is None, demo.errors()


def test_state_file_has_the_stable_keys(demo: Demo) -> None:
    state = demo.state
    assert Path(state["ca_file"]).is_file()
    domains = [op["domain"] for op in state["operators"]]
    assert domains == ["hopital-demo.mssante.fr", "ehpad-demo.mssante.fr"]
    for op in state["operators"]:
        assert Path(op["config_file"]).is_file()
        for endpoint in ("submission", "mx"):
            assert op[endpoint]["host"] == "127.0.0.1"
            assert isinstance(op[endpoint]["port"], int)
            assert 0 < op[endpoint]["port"] < 65536
        assert op["submission"]["port"] != op["mx"]["port"]
        assert op["accounts"]
        for account in op["accounts"]:
            assert account["address"].endswith("@" + op["domain"])
            assert account["type"] in {"PER", "ORG", "APP"}
            assert len(account["password"]) >= 16
            assert not account["password"].startswith("-")  # usable as a swaks option value
    types = {a["type"] for op in state["operators"] for a in op["accounts"]}
    assert types == {"PER", "ORG", "APP"}


def test_all_six_flows_are_delivered(demo: Demo) -> None:
    flows = demo.state["flows"]
    assert len(flows) == 6
    assert [f["status"] for f in flows] == ["delivered"] * 6, flows
    for flow in flows:
        assert flow["from"] and flow["to"]


def test_summary_is_printed(demo: Demo) -> None:
    text = demo.output()
    assert "Espace de confiance MSSanté de démonstration" in text
    for op in demo.state["operators"]:
        assert f"{op['submission']['host']}:{op['submission']['port']}" in text


# -- swaks against the running demo --------------------------------------------------------


def _swaks(demo: Demo, *args: str) -> subprocess.CompletedProcess[str]:
    assert SWAKS is not None
    hospital = demo.operator(0)
    server = f"{hospital['submission']['host']}:{hospital['submission']['port']}"
    return subprocess.run(
        [SWAKS, "--server", server, "--timeout", "15", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _per_account(demo: Demo) -> dict[str, str]:
    return next(a for a in demo.operator(0)["accounts"] if a["type"] == "PER")


def _auth(account: dict[str, str]) -> list[str]:
    return [
        "--auth",
        "PLAIN",
        "--auth-user",
        account["address"],
        "--auth-password",
        account["password"],
    ]


def _tls(demo: Demo) -> list[str]:
    return ["--tls", "--tls-ca-path", demo.state["ca_file"], "--tls-verify"]


@needs_swaks
def test_swaks_per_to_other_operator_is_delivered(demo: Demo) -> None:
    sender = _per_account(demo)
    ehpad = demo.operator(1)
    rcpt = ehpad["accounts"][0]["address"]
    message_id = f"{uuid.uuid4().hex}@test.hopital-demo.mssante.fr"
    result = _swaks(
        demo,
        *_tls(demo),
        *_auth(sender),
        "--from",
        sender["address"],
        "--to",
        rcpt,
        "--header",
        f"Message-Id: <{message_id}>",
        "--header",
        "Subject: test swaks",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0" in result.stdout
    assert "<~  250 2.0.0" in result.stdout

    services = Services(load_config(Path(ehpad["config_file"])))
    try:
        deadline = time.monotonic() + 20
        while True:
            ids = [m.message_id or "" for m in services.store.list(rcpt)]
            if any(message_id in i for i in ids):
                break
            assert time.monotonic() < deadline, f"{message_id} not in {rcpt}: {ids}"
            time.sleep(0.1)
        stored = next(m for m in services.store.list(rcpt) if message_id in (m.message_id or ""))
        body = services.store.read(stored)
        assert b"Subject: test swaks" in body
    finally:
        services.close()


@needs_swaks
def test_swaks_recipient_outside_the_trust_space_is_refused(demo: Demo) -> None:
    sender = _per_account(demo)
    result = _swaks(
        demo, *_tls(demo), *_auth(sender), "--from", sender["address"], "--to", "x@gmail.com"
    )
    assert result.returncode != 0
    assert "RCPT TO:<x@gmail.com>" in result.stdout
    assert "550 5.7.1" in result.stdout, result.stdout


@needs_swaks
def test_swaks_without_starttls_gets_530(demo: Demo) -> None:
    sender = _per_account(demo)
    rcpt = demo.operator(1)["accounts"][0]["address"]
    # AUTH is not even advertised before STARTTLS, so swaks refuses to try it...
    no_auth = _swaks(demo, *_auth(sender), "--from", sender["address"], "--to", rcpt)
    assert no_auth.returncode != 0
    replies = [line for line in no_auth.stdout.splitlines() if line.startswith("<-")]
    assert replies and not any("AUTH" in line for line in replies), no_auth.stdout
    assert "did not advertise authentication" in no_auth.stdout + no_auth.stderr
    # ...and a transaction without TLS is refused with 530 5.7.0.
    plain = _swaks(demo, "--from", sender["address"], "--to", rcpt)
    assert plain.returncode != 0
    assert "530 5.7.0" in plain.stdout, plain.stdout


def test_auth_without_starttls_gets_530(demo: Demo) -> None:
    """The AUTH command itself, sent in clear by a client that ignores EHLO, gets 530 5.7.0."""
    sender = _per_account(demo)
    hospital = demo.operator(0)
    address = (hospital["submission"]["host"], hospital["submission"]["port"])
    with socket.create_connection(address, timeout=10) as sock, sock.makefile("rwb") as conn:
        assert conn.readline().startswith(b"220")
        conn.write(b"EHLO client.test\r\n")
        conn.flush()
        while (line := conn.readline())[3:4] == b"-":
            pass
        assert line.startswith(b"250 ")
        token = f"\0{sender['address']}\0{sender['password']}".encode()
        conn.write(b"AUTH PLAIN " + base64.b64encode(token) + b"\r\n")
        conn.flush()
        assert conn.readline().startswith(b"530 5.7.0")


# -- the national directory (issue 5 item 4) -----------------------------------------------


def test_a_professional_finds_the_other_operators_bal_without_accents(demo: Demo) -> None:
    """Operator B's BALs were published to the demo national directory (FHIR PATCH), and
    operator A's copy was refreshed from its extraction: "lefevre" finds Dr Hélène Lefèvre."""
    state = demo.state
    ctx = ssl.create_default_context(cafile=state["ca_file"])
    assert state["directory"]["fhir"].startswith("https://127.0.0.1:")
    assert all(op["http"].startswith("https://127.0.0.1:") for op in state["operators"])
    assert f"Annuaire national de démonstration : {state['directory']['fhir']}" in demo.output()
    other = next(a["address"] for a in demo.operator(1)["accounts"] if a["type"] == "PER")
    bundle = httpx.get(
        state["directory"]["fhir"] + "/Practitioner",
        params={"family": "lefevre"},
        verify=ctx,
        timeout=10,
    ).json()
    found = [cp["value"] for e in bundle["entry"] for cp in e["resource"].get("telecom", [])]
    assert other in found
    # The suggest endpoint of operator A, with a PSC token of one of its professionals.
    per = _per_account(demo)
    token = httpx.get(
        state["identity"]["token_url"], params={"id_nat_ps": per["id_nat_ps"]}, timeout=10
    ).json()["access_token"]
    answer = httpx.get(
        demo.operator(0)["http"] + "/annuaire/suggest",
        params={"q": "lefevre"},
        headers={"Authorization": f"Bearer {token}"},
        verify=ctx,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert other in [item["address"] for item in answer.json()]


# -- last: Ctrl-C --------------------------------------------------------------------------


def test_sigint_stops_the_demo_cleanly(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.process.poll() is None, demo.errors()
    demo.process.send_signal(signal.SIGINT)
    started = time.monotonic()
    code = demo.process.wait(timeout=STOP_TIMEOUT)
    with capsys.disabled():
        print(f" [stopped {time.monotonic() - started:.2f} s after SIGINT]", end="")
    assert code == 0, demo.errors()
    assert "Arrêt" in demo.output()
    assert "Traceback" not in demo.errors()
