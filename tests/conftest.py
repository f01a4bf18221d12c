"""Shared fixtures: the database engine under test, a running local trust space.

`MSSANTE_TEST_DB=postgresql` runs the suite on a throwaway PostgreSQL server started here
(Debian's initdb/pg_ctl, as an unprivileged user); the default is SQLite. `make test` runs
the whole suite on both.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from mssante.testing.postgres import PostgresServer, postgres_available
from mssante.testing.trust_space import LocalTrustSpace, OperatorSpec

ENGINE = os.environ.get("MSSANTE_TEST_DB", "sqlite")

SHARED_DATA = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)

ALPHA = OperatorSpec("alpha.mssante.fr", "Operateur Alpha", "1750000028", "Paris (75)")
BETA = OperatorSpec("beta.mssante.fr", "Operateur Beta", "1130000037", "Bouches-du-Rhone (13)")


def pytest_report_header() -> str:
    return f"mssante database engine under test: {ENGINE}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    if ENGINE != "postgresql":
        yield None
        return
    if not postgres_available():
        pytest.fail("MSSANTE_TEST_DB=postgresql but PostgreSQL server binaries are missing")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def database_url(postgres: PostgresServer | None) -> Iterator[Callable[[], str]]:
    """Returns a factory: each call gives a fresh empty database ("" means SQLite default)."""

    created: list[str] = []

    def make() -> str:
        if postgres is None:
            return ""
        name = f"t_{secrets.token_hex(6)}"
        created.append(name)
        return postgres.create_database(name)

    yield make
    for name in created:  # dropping keeps the server's shutdown at the end quick
        try:
            postgres.drop_database(name)  # type: ignore[union-attr]
        except Exception:
            pass


@pytest.fixture
async def trust_space(
    tmp_path: Path, database_url: Callable[[], str]
) -> AsyncIterator[LocalTrustSpace]:
    """Two running operators, alpha and beta, that trust each other."""
    space = LocalTrustSpace.create(
        tmp_path / "space", [ALPHA, BETA], database_urls=[database_url(), database_url()]
    )
    await space.start()
    try:
        yield space
    finally:
        await space.stop()
