"""Tests of the throwaway PostgreSQL server used by the suite."""

from __future__ import annotations

import os
import pwd
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy

from mssante.testing import postgres as postgres_harness
from mssante.testing.postgres import (
    TEST_OS_USER,
    PostgresError,
    PostgresServer,
    PostgresStartError,
    find_pg_bin,
    postgres_available,
)

pytestmark = pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL server binaries not available"
)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        yield pg


def scalar(url: str, query: str) -> object:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(query)).scalar_one()
    finally:
        engine.dispose()


def test_find_pg_bin() -> None:
    bin_dir = find_pg_bin()
    assert bin_dir is not None
    for name in ("initdb", "pg_ctl", "postgres"):
        assert os.access(bin_dir / name, os.X_OK)


def test_create_database_and_select_one(server: PostgresServer) -> None:
    url = server.create_database("harness_select")
    try:
        assert url == f"postgresql+psycopg://mssante@127.0.0.1:{server.port}/harness_select"
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("select 1")).scalar_one() == 1
                assert (
                    conn.execute(sqlalchemy.text("select current_database()")).scalar_one()
                    == "harness_select"
                )
        finally:
            engine.dispose()
    finally:
        server.drop_database("harness_select")


def test_url_and_settings(server: PostgresServer) -> None:
    assert re.fullmatch(r"postgresql\+psycopg://mssante@127\.0\.0\.1:\d+/postgres", server.url)
    assert scalar(server.url, "select current_user") == "mssante"
    assert scalar(server.url, "select current_setting('fsync')") == "on"
    assert scalar(server.url, "select current_setting('max_connections')") == "200"
    assert scalar(server.url, "select current_setting('listen_addresses')") == "127.0.0.1"
    assert scalar(server.url, "select current_setting('port')") == str(server.port)
    assert scalar(server.url, "select current_setting('server_encoding')") == "UTF8"


def test_drop_database(server: PostgresServer) -> None:
    url = server.create_database("harness_drop")
    # An open connection does not prevent the drop.
    with psycopg.connect(server.conninfo("harness_drop")):
        server.drop_database("harness_drop")
    with pytest.raises(sqlalchemy.exc.OperationalError):
        scalar(url, "select 1")
    server.drop_database("harness_drop")  # already gone: no error


def test_create_existing_database_fails(server: PostgresServer) -> None:
    server.create_database("harness_twice")
    try:
        with pytest.raises(PostgresError, match="already exists"):
            server.create_database("harness_twice")
    finally:
        server.drop_database("harness_twice")


@pytest.mark.parametrize("name", ["", "Upper", "with-dash", 'x"; drop', "postgres", "a" * 64])
def test_invalid_database_names(server: PostgresServer, name: str) -> None:
    with pytest.raises(ValueError):
        server.create_database(name)
    with pytest.raises(ValueError):
        server.drop_database(name)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops privileges")
def test_runs_unprivileged_as_root(server: PostgresServer) -> None:
    account = pwd.getpwnam(TEST_OS_USER)
    assert server.data_dir.stat().st_uid == account.pw_uid
    pid = scalar(server.url, "select pg_backend_pid()")
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(account.pw_uid)] * 4


def test_lifecycle() -> None:
    pg = PostgresServer()
    assert not pg.running
    with pytest.raises(PostgresError):
        _ = pg.url
    pg.start()
    try:
        assert pg.running
        base = pg.data_dir.parent
        port = pg.port
        assert (pg.data_dir / "PG_VERSION").is_file()
        assert scalar(pg.url, "select 1") == 1
        with pytest.raises(PostgresError, match="already started"):
            pg.start()
    finally:
        pg.stop()
    assert not pg.running
    assert not base.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    pg.stop()  # idempotent


def test_two_servers_side_by_side() -> None:
    with PostgresServer() as one, PostgresServer() as two:
        assert one.port != two.port
        assert scalar(one.url, "select 1") == scalar(two.url, "select 1") == 1


def test_start_failure_reports_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = str(real_mkdtemp(*args, **kwargs))
        created.append(path)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    pg = PostgresServer(settings={"max_connections": "not-a-number"})
    with pytest.raises(PostgresStartError) as info:
        pg.start()
    message = str(info.value)
    assert "server log" in message
    assert "max_connections" in message
    assert not pg.running
    assert len(created) == 1
    assert not Path(created[0]).exists()


def test_port_in_use_is_reported() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PostgresStartError, match="server log"):
            PostgresServer(port=port, start_timeout=10).start()


def test_lost_port_race_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        ports = [busy_port]
        real_free_port = postgres_harness._free_port
        monkeypatch.setattr(
            postgres_harness, "_free_port", lambda: ports.pop() if ports else real_free_port()
        )
        with PostgresServer() as pg:
            assert pg.port != busy_port
            assert scalar(pg.url, "select 1") == 1
            assert "Address already in use" in pg.log_path.read_text()
