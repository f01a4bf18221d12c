"""A throwaway PostgreSQL server for the test suite and the benchmarks.

:class:`PostgresServer` runs ``initdb`` in a fresh temporary directory and starts the
cluster with ``pg_ctl`` on a free TCP port of 127.0.0.1; :meth:`PostgresServer.stop`
shuts it down (``pg_ctl stop -m fast``) and deletes the directory. The cluster is a test
server: its superuser ``mssante`` has no password and every connection from 127.0.0.1 or
the private Unix socket is trusted. ``fsync`` stays on because the suite tests durability;
only ``initdb`` runs with ``--no-sync`` (the empty cluster needs no crash safety).

``initdb`` and ``postgres`` refuse to run as root, and the tests and CI do run as root. In
that case the binaries run as the unprivileged system user ``mssante-test``, created with
``useradd --system`` when missing, and the temporary directory is given to that user. The
privilege drop is done by :mod:`subprocess` itself (``user=``/``group=``/
``extra_groups=``), which is what ``setpriv`` would do, without depending on PAM the way
``runuser`` does.

Binaries are looked for in ``$MSSANTE_PG_BIN``, then ``pg_config --bindir``, then the
highest version under ``/usr/lib/postgresql/*/bin``, then the ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

__all__ = [
    "SUPERUSER",
    "TEST_OS_USER",
    "PostgresError",
    "PostgresServer",
    "PostgresStartError",
    "find_pg_bin",
    "postgres_available",
]

SUPERUSER = "mssante"
TEST_OS_USER = "mssante-test"
HOST = "127.0.0.1"
DEFAULT_DBNAME = "postgres"

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_DBNAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_BIND_ERRORS = ("could not bind", "address already in use", "could not create any tcp/ip")
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 40

_user_lock = threading.Lock()


class PostgresError(RuntimeError):
    """The throwaway server could not be set up, started or used."""


class PostgresStartError(PostgresError):
    """The server did not start or did not accept connections in time."""


# -- discovery -----------------------------------------------------------------------------


def _has_server_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(directory: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: "15", "16", or "9.6" for old releases.
    parts = directory.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    output = result.stdout.strip()
    return Path(output) if result.returncode == 0 and output else None


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``."""
    candidates: list[Path] = []
    override = os.environ.get("MSSANTE_PG_BIN")
    if override:
        candidates.append(Path(override))
    bindir = _pg_config_bindir()
    if bindir is not None:
        candidates.append(bindir)
    if _DEBIAN_ROOT.is_dir():
        candidates.extend(sorted(_DEBIAN_ROOT.glob("*/bin"), key=_version_key, reverse=True))
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if _has_server_binaries(candidate):
            return candidate
    return None


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _test_user_exists() -> bool:
    try:
        pwd.getpwnam(TEST_OS_USER)
    except KeyError:
        return False
    return True


def postgres_available() -> bool:
    """Whether a throwaway server can be started on this machine."""
    if find_pg_bin() is None:
        return False
    if _running_as_root():
        return _test_user_exists() or shutil.which("useradd") is not None
    return True


def _ensure_test_user() -> pwd.struct_passwd:
    """The ``mssante-test`` system user, created when missing (root only)."""
    with _user_lock:
        try:
            return pwd.getpwnam(TEST_OS_USER)
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "useradd"
        command = [
            useradd,
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            TEST_OS_USER,
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresError(f"cannot create the user {TEST_OS_USER}: {exc}") from exc
        try:
            # Another process may have created it concurrently: look again either way.
            return pwd.getpwnam(TEST_OS_USER)
        except KeyError:
            raise PostgresError(
                f"cannot create the user {TEST_OS_USER} (exit {result.returncode}): "
                f"{result.stderr.strip()}"
            ) from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _conf_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# -- cluster -------------------------------------------------------------------------------


@dataclass
class _Cluster:
    """Everything needed to run the binaries and to clean up, without the server object.

    Kept apart so that a :func:`weakref.finalize` can stop a forgotten server at exit.
    """

    bin_dir: Path
    base: Path
    uid: int | None
    gid: int | None
    started: bool = False

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    def run(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        binary, *rest = args
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C",
            "LC_ALL": "C",
            "HOME": str(self.base),
            "TZ": "UTC",
        }
        command = [str(self.bin_dir / binary), *rest]
        try:
            if self.uid is None or self.gid is None:
                return subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                    cwd=self.base,
                    env=env,
                )
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=self.base,
                env=env,
                user=self.uid,
                group=self.gid,
                extra_groups=[],
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(f"{binary} timed out after {timeout:.0f} s") from exc
        except OSError as exc:
            raise PostgresError(f"cannot run {command[0]}: {exc}") from exc

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_tail(self, lines: int = _LOG_TAIL_LINES, since: int = 0) -> str:
        """The last ``lines`` lines of the server log, from byte ``since`` on."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty server log)"

    def postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first_line)
        except (OSError, IndexError, ValueError):
            return None

    def shutdown(self) -> None:
        """Stop the server if it runs, then delete the directory. Never raises."""
        if self.started:
            stopped = False
            for mode in ("fast", "immediate"):
                with contextlib.suppress(PostgresError):
                    result = self.run(
                        ["pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop"],
                        timeout=40,
                    )
                    if result.returncode == 0:
                        stopped = True
                        break
            if not stopped:
                pid = self.postmaster_pid()
                if pid is not None:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)


def _cleanup(cluster: _Cluster) -> None:
    cluster.shutdown()


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (see the module documentation).

    ``port`` pins the port (default: a free one); ``base_dir`` is where the temporary
    directory is created (its ancestors must be traversable by ``mssante-test`` when
    running as root); ``settings`` adds or overrides ``postgresql.conf`` parameters.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        base_dir: Path | None = None,
        port: int | None = None,
        start_timeout: float = 30.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._bin_dir = bin_dir
        self._base_dir = base_dir
        self._requested_port = port
        self._start_timeout = start_timeout
        self._settings = dict(settings or {})
        self._cluster: _Cluster | None = None
        self._finalizer: weakref.finalize[[_Cluster], PostgresServer] | None = None
        self._port: int | None = None

    # -- properties ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._cluster is not None and self._cluster.started

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None or not self.running:
            raise PostgresError("the server is not running")
        return self._port

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default ``postgres`` database."""
        return self.url_for(DEFAULT_DBNAME)

    @property
    def data_dir(self) -> Path:
        return self._require_cluster().data_dir

    @property
    def log_path(self) -> Path:
        return self._require_cluster().log_path

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of a database of this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = DEFAULT_DBNAME) -> str:
        """libpq connection string, for :func:`psycopg.connect`."""
        return f"host={HOST} port={self.port} user={SUPERUSER} dbname={dbname}"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Create and start the cluster; return ``self``."""
        if self._cluster is not None:
            raise PostgresError("the server was already started")
        bin_dir = self._bin_dir or find_pg_bin()
        if bin_dir is None:
            raise PostgresError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        uid: int | None = None
        gid: int | None = None
        if _running_as_root():
            account = _ensure_test_user()
            uid, gid = account.pw_uid, account.pw_gid
        base = Path(tempfile.mkdtemp(prefix="mssante-pg-", dir=self._base_dir))
        cluster = _Cluster(bin_dir=bin_dir, base=base, uid=uid, gid=gid)
        self._cluster = cluster
        self._finalizer = weakref.finalize(self, _cleanup, cluster)
        try:
            if uid is not None and gid is not None:
                os.chown(base, uid, gid)
            os.chmod(base, 0o700)
            self._initdb(cluster)
            self._start_postmaster(cluster)
            self._wait_ready(cluster)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and delete its directory. Idempotent."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._cluster = None
        self._port = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        self._check_dbname(name)
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, closing its connections first."""
        self._check_dbname(name)
        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    # -- internals -----------------------------------------------------------------------

    def _require_cluster(self) -> _Cluster:
        if self._cluster is None:
            raise PostgresError("the server is not running")
        return self._cluster

    @staticmethod
    def _check_dbname(name: str) -> None:
        if not _DBNAME_RE.fullmatch(name):
            raise ValueError(f"invalid database name {name!r} (use [a-z_][a-z0-9_]*)")
        if name in (DEFAULT_DBNAME, "template0", "template1"):
            raise ValueError(f"database {name!r} is reserved")

    def _execute(self, statement: sql.Composed) -> None:
        try:
            with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10) as conn:
                conn.execute(statement)
        except psycopg.Error as exc:
            raise PostgresError(f"{statement.as_string(None)} failed: {exc}") from exc

    def _initdb(self, cluster: _Cluster) -> None:
        result = cluster.run(
            [
                "initdb",
                "-D",
                str(cluster.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            timeout=120,
        )
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb failed (exit {result.returncode}):\n"
                f"{result.stdout.strip()}\n{result.stderr.strip()}"
            )
        settings = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(cluster.base),
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "max_connections": "200",
            **self._settings,
        }
        lines = [f"{name} = {_conf_value(value)}" for name, value in settings.items()]
        with (cluster.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# mssante throwaway test server\n" + "\n".join(lines) + "\n")
        # Only the private socket and the loopback address are trusted.
        with (cluster.data_dir / "pg_hba.conf").open("w") as hba:
            hba.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")

    def _start_postmaster(self, cluster: _Cluster) -> None:
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        timeout = max(1, round(self._start_timeout))
        for attempt in range(attempts):
            port = self._requested_port or _free_port()
            log_offset = cluster.log_size()
            result = cluster.run(
                [
                    "pg_ctl",
                    "-D",
                    str(cluster.data_dir),
                    "-l",
                    str(cluster.log_path),
                    "-o",
                    shlex.join(["-p", str(port)]),
                    "-w",
                    "-t",
                    str(timeout),
                    "start",
                ],
                timeout=timeout + 15,
            )
            # Whatever pg_ctl says, a postmaster may be running: let stop() handle it.
            cluster.started = True
            if result.returncode == 0:
                self._port = port
                return
            tail = cluster.log_tail(since=log_offset)
            lost_port_race = any(marker in tail.lower() for marker in _BIND_ERRORS)
            if lost_port_race and attempt + 1 < attempts:
                self._kill_postmaster(cluster)
                continue
            raise PostgresStartError(
                f"pg_ctl start failed (exit {result.returncode}) on port {port}: "
                f"{result.stderr.strip()}\n--- server log ({cluster.log_path}) ---\n{tail}"
            )

    @staticmethod
    def _kill_postmaster(cluster: _Cluster) -> None:
        pid = cluster.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            (cluster.data_dir / "postmaster.pid").unlink()

    def _wait_ready(self, cluster: _Cluster) -> None:
        deadline = time.monotonic() + self._start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.conninfo(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last_error = exc
                time.sleep(0.1)
        raise PostgresStartError(
            f"the server did not accept connections within {self._start_timeout:.0f} s "
            f"({last_error}):\n--- server log ({cluster.log_path}) ---\n{cluster.log_tail()}"
        )
