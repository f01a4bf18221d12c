"""IMAP test helpers (not collected): a throwaway Dovecot, clients, and the server targets.

:class:`DovecotServer` runs Debian's Dovecot (``dovecot-imapd``) as a foreground subprocess
(``dovecot -F -c CONF``) from a configuration written in a fresh temporary directory: it
listens on 127.0.0.1 only, on two free ports (IMAP with STARTTLS, and IMAPS), never on
143/993. The certificate comes from a :class:`mssante.pki.DemoCA`. When the tests run as
root, mail processes and Dovecot's internal processes run as the unprivileged system user
``mssante-test`` (created when missing, as :mod:`mssante.testing.postgres` does), and the
temporary directory is given to that user.

:class:`ImapTarget` is what the IMAP test modules are written against: where to connect,
the CA to trust, and how to create a login with a password. :func:`dovecot_target` and
:func:`mssante_target` build one for each server; the latter skips the test while
mssante's IMAP server is not wired into :class:`~mssante.runtime.Operator` yet
(``operator.imap`` / ``operator.imaps`` endpoints).

:class:`RawImap` is a wire-level client: it sends exact command lines (synchronising
literals wait for the server's continuation, ``{n+}`` literals do not), and returns the
untagged and tagged responses, literals included, for :mod:`imap_conversation` to
normalise.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest

from mssante.domain.identifiers import luhn_check_digit
from mssante.pki import DemoCA, DistinguishedName
from mssante.testing.postgres import TEST_OS_USER

HOST = "127.0.0.1"
# Dovecot counts a connection whose client and server addresses are equal as secured and
# then allows plaintext LOGIN without TLS; plaintext tests connect from another loopback
# address so that the server sees a remote client, as it would in production.
PLAINTEXT_SOURCE = ("127.0.0.2", 0)
DOVECOT_BIN = "dovecot"
_START_TIMEOUT = 20.0
_PORT_ATTEMPTS = 3
_user_lock = threading.Lock()

# Logins used by every IMAP test module (hosted domain of the ALPHA operator in conftest).
CAMILLE = "camille.martin@alpha.mssante.fr"
LEA = "lea.dubois@alpha.mssante.fr"
HUGO = "hugo.bernard@alpha.mssante.fr"
ORG_BAL = "secretariat.cardio@alpha.mssante.fr"
ORG_ID_NAT_STRUCT = "1750000028"  # "1" + a FINESS number (Luhn-valid)
SHARED_PREFIX = "Partages"  # mssante's shared namespace (mailstore.SHARED_PREFIX)
DEFAULT_FOLDERS = ("INBOX", "Sent", "Drafts", "Trash", "Archive")
SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Archive": "\\Archive"}


class DovecotError(RuntimeError):
    """The throwaway Dovecot could not be configured or started."""


def dovecot_available() -> bool:
    """``dovecot`` and its ``imap`` binary are installed (Debian: dovecot-imapd)."""
    binary = shutil.which(DOVECOT_BIN) or (
        "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
    )
    return binary is not None and os.access("/usr/lib/dovecot/imap", os.X_OK)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ensure_test_user() -> pwd.struct_passwd:
    """The unprivileged ``mssante-test`` system user (created when missing, root only)."""
    with _user_lock:
        try:
            return pwd.getpwnam(TEST_OS_USER)
        except KeyError:
            pass
        command = [
            shutil.which("useradd") or "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            TEST_OS_USER,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        try:
            return pwd.getpwnam(TEST_OS_USER)
        except KeyError:
            raise DovecotError(
                f"cannot create the user {TEST_OS_USER} (exit {result.returncode}): "
                f"{result.stderr.strip()}"
            ) from None


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


# -- Dovecot -------------------------------------------------------------------------------

_CONFIG = """\
# Throwaway Dovecot for mssante's IMAP tests (tests/imap_reference.py). Not for production.
protocols = imap
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
instance_name = mssante-test-{port}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
first_valid_gid = {gid}

ssl = required
ssl_cert = <{root}/tls/server.pem
ssl_key = <{root}/tls/server.key
ssl_min_protocol = TLSv1.2

auth_mechanisms = {mechanisms}
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {root}/users
}}
{token_passdb}userdb {{
  driver = passwd-file
  args = username_format=%Lu {root}/users
}}

mail_location = maildir:{root}/mail/%Lu
mail_fsync = never
mail_plugins = $mail_plugins quota
plugin {{
  quota = count:User quota
  quota_rule = *:storage=1G
  quota_vsizes = yes
  quota_max_mail_size = 25M
}}

namespace inbox {{
  type = private
  separator = /
  prefix =
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}
{shared}
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
  mail_max_userip_connections = 50
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""

# Bearer tokens, only to check the test clients' XOAUTH2/OAUTHBEARER scripts: Dovecot's
# oauth2 mechanisms hand the token to the passdbs as a password, and this one holds one
# opaque token per login (not a token validation: that is mssante's job).
_TOKEN_PASSDB = """\
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {root}/tokens
}}
"""

# An ORG BAL as Dovecot can model it: a public namespace whose \\Seen flags are private to
# each user (INDEXPVT), named like mssante's shared namespace.
_SHARED_NAMESPACE = """\
namespace org{index} {{
  type = public
  separator = /
  prefix = {prefix}/
  location = maildir:{root}/shared/{address}:INDEXPVT={root}/private/%Lu/{address}
  subscriptions = no
  list = yes
}}
"""


@dataclass
class DovecotServer:
    """A running Dovecot on 127.0.0.1; use as a context manager or call start()/stop().

    ``users`` maps logins to passwords; ``shared`` lists ORG BAL addresses exposed to every
    user under ``Partages/<address>/`` (with an ``INBOX`` folder) with per-user ``\\Seen``;
    ``tokens`` adds the XOAUTH2 and OAUTHBEARER mechanisms, checked against the opaque
    tokens given by :meth:`token_for`.
    """

    users: Mapping[str, str] = field(default_factory=dict)
    shared: Sequence[str] = ()
    tokens: bool = False
    host: str = HOST
    root: Path = field(init=False)
    ca_file: Path = field(init=False)
    imap_port: int = field(init=False, default=0)
    imaps_port: int = field(init=False, default=0)
    _process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _uid: int = field(init=False, default=0)
    _gid: int = field(init=False, default=0)
    _users: dict[str, str] = field(init=False, default_factory=dict)
    _tokens: dict[str, str] = field(init=False, default_factory=dict)
    _generation: int = field(init=False, default=0)
    _user: str = field(init=False, default="")
    _group: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mssante-dovecot-"))
        self.ca_file = self.root / "tls" / "ca.pem"
        self._users = dict(self.users)

    # -- configuration ---------------------------------------------------------------------

    def _identity(self) -> tuple[str, str, int, int]:
        if os.geteuid() == 0:
            entry = _ensure_test_user()
        else:
            entry = pwd.getpwuid(os.geteuid())
        group = _group_name(entry.pw_gid)
        return entry.pw_name, group, entry.pw_uid, entry.pw_gid

    def _write_users(self) -> None:
        lines = [
            f"{login.lower()}:{{PLAIN}}{password}:{self._uid}:{self._gid}::"
            f"{self.root}/home/{login.lower()}::"
            for login, password in self._users.items()
        ]
        for login in self._users:
            self._create_maildir(login.lower())
        self._replace(self.root / "users", lines)
        if self.tokens:
            self._replace(
                self.root / "tokens",
                [
                    f"{login.lower()}:{{PLAIN}}{token}:{self._uid}:{self._gid}::"
                    f"{self.root}/home/{login.lower()}::"
                    for login, token in self._tokens.items()
                ],
            )

    def _replace(self, target: Path, lines: Sequence[str]) -> None:
        tmp = target.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, target)  # Dovecot re-reads the file when its mtime changes
        # Make sure the mtime moves even within the same second as the previous write.
        self._generation += 1
        stamp = time.time() + self._generation
        os.utime(target, (stamp, stamp))

    def token_for(self, login: str) -> str:
        """An opaque bearer token for ``login`` (``tokens=True``), made on first use."""
        if not self.tokens:
            raise DovecotError("start DovecotServer(tokens=True) for token logins")
        if login not in self._tokens:
            self._tokens[login] = "tok-" + secrets.token_urlsafe(24)
            if self._user:  # already prepared: Dovecot re-reads the file
                self._write_users()
        return self._tokens[login]

    def _create_maildir(self, login: str) -> None:
        """INBOX and the four special-use folders, on disk (Maildir++ layout).

        Dovecot's ``auto = subscribe`` only creates a folder when it is first opened, and
        until then a RENAME onto it succeeds; mssante creates them with the mailbox.
        """
        base = self.root / "mail" / login
        if base.exists():
            return
        for folder in ("", *(f".{name}" for name in DEFAULT_FOLDERS[1:])):
            for sub in ("cur", "new", "tmp"):
                (base / folder / sub).mkdir(parents=True, exist_ok=True)
            if folder:
                (base / folder / "maildirfolder").touch()
        (self.root / "home" / login).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and self._uid:
            _chown_tree(base, self._uid, self._gid)
            _chown_tree(self.root / "home" / login, self._uid, self._gid)

    def add_user(self, login: str, password: str) -> None:
        self._users[login] = password
        if self._user:  # already prepared: Dovecot re-reads the file
            self._write_users()

    def _prepare(self) -> None:
        """Directories, certificate, users and ORG maildirs (once per server)."""
        self._user, self._group, self._uid, self._gid = self._identity()
        (self.root / "tls").mkdir(parents=True, exist_ok=True)
        for sub in ("mail", "home", "shared", "private", "state"):
            (self.root / sub).mkdir(exist_ok=True)
        ca = DemoCA.create("mssante IMAP test CA")
        ca.write_cert(self.ca_file)
        leaf = ca.issue(
            DistinguishedName("localhost"), dns_names=("localhost",), ip_addresses=(HOST,)
        )
        leaf.write(self.root / "tls" / "server.pem", self.root / "tls" / "server.key")
        for address in self.shared:
            for folder in ("", ".INBOX"):
                for sub in ("cur", "new", "tmp"):
                    (self.root / "shared" / address / folder / sub).mkdir(parents=True)
            (self.root / "shared" / address / ".INBOX" / "maildirfolder").touch()
        self._write_users()
        if os.geteuid() == 0:
            _chown_tree(self.root, self._uid, self._gid)
            os.chown(self.root / "tls" / "server.key", 0, 0)  # read by the master (root)
            os.chown(self.root / "state", 0, 0)  # the master's

    def _configure(self) -> Path:
        """The configuration file, on two new free ports."""
        self.imap_port, self.imaps_port = _two_free_ports()
        shared = "".join(
            _SHARED_NAMESPACE.format(
                index=i, prefix=f"{SHARED_PREFIX}/{address}", root=self.root, address=address
            )
            for i, address in enumerate(self.shared)
        )
        config = _CONFIG.format(
            host=self.host,
            root=self.root,
            port=self.imap_port,
            user=self._user,
            group=self._group,
            uid=self._uid,
            gid=self._gid,
            imap_port=self.imap_port,
            imaps_port=self.imaps_port,
            shared=shared,
            mechanisms="plain login xoauth2 oauthbearer" if self.tokens else "plain login",
            token_passdb=_TOKEN_PASSDB.format(root=self.root) if self.tokens else "",
        )
        path = self.root / "dovecot.conf"
        path.write_text(config, encoding="utf-8")
        if os.geteuid() == 0:
            os.chown(path, 0, 0)
        return path

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> DovecotServer:
        """Start Dovecot and wait until both ports answer (new ports if one was taken)."""
        if not dovecot_available():
            raise DovecotError("dovecot is not installed (Debian package dovecot-imapd)")
        self._prepare()
        for attempt in range(_PORT_ATTEMPTS):
            try:
                self._launch(self._configure())
                return self
            except DovecotError as exc:
                if "in use" not in str(exc) or attempt + 1 == _PORT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _launch(self, config: Path) -> None:
        binary = shutil.which(DOVECOT_BIN) or "/usr/sbin/dovecot"
        self._process = subprocess.Popen(
            [binary, "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                stdout = self._process.stdout
                output = stdout.read().decode(errors="replace") if stdout else ""
                self._process = None
                raise DovecotError(f"dovecot exited at start:\n{output}\n{self.log_tail()}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(f"dovecot did not accept connections\n{self.log_tail()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        for port in (self.imap_port, self.imaps_port):
            try:
                with socket.create_connection((self.host, port), timeout=1) as sock:
                    if port == self.imap_port:
                        sock.settimeout(2)
                        if not sock.recv(200).startswith(b"* OK"):
                            return False
            except OSError:
                return False
        return True

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> DovecotServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.cleanup()


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _two_free_ports() -> tuple[int, int]:
    first = free_port()
    while True:
        second = free_port()
        if second != first:
            return first, second


# -- targets -------------------------------------------------------------------------------


@dataclass
class ImapTarget:
    """An IMAP server under test, as the test modules see it.

    ``add_user(login, password)`` creates a mailbox with the five default folders and a
    password login (blocking; call it from a worker thread on mssante). ``add_org(address,
    members)`` creates an ORG BAL shared by ``members`` (already created logins) and returns
    the IMAP name of its INBOX as members see it. ``token_for(login)`` mints a bearer token
    (mssante only; ``None`` when the server has no token login).
    """

    name: str
    host: str
    imap_port: int  # STARTTLS
    imaps_port: int  # implicit TLS
    ca_file: Path
    add_user: Callable[[str, str], None]
    add_org: Callable[[str, Sequence[str]], str] | None = None
    token_for: Callable[[str], str] | None = None
    deliver: Callable[[str, bytes], None] | None = None  # SMTP delivery to a mailbox
    log_tail: Callable[[], str] = lambda: ""

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@contextlib.contextmanager
def dovecot_target(shared: Sequence[str] = (), *, tokens: bool = False) -> Iterator[ImapTarget]:
    """A running Dovecot as an :class:`ImapTarget` (skips when Dovecot is not installed).

    ``shared``: ORG BAL addresses to model (see :class:`DovecotServer`); ``tokens``: accept
    the opaque tokens of ``token_for`` with XOAUTH2/OAUTHBEARER, to check client scripts.
    """
    if not dovecot_available():
        pytest.skip("dovecot-imapd is not installed (scripts/install-system-deps.sh test)")
    with DovecotServer(shared=shared, tokens=tokens) as server:

        def add_org(address: str, members: Sequence[str]) -> str:
            if address not in server.shared:
                raise ValueError(f"start the Dovecot target with shared=[{address!r}]")
            return f"{SHARED_PREFIX}/{address}/INBOX"

        yield ImapTarget(
            name="dovecot",
            host=server.host,
            imap_port=server.imap_port,
            imaps_port=server.imaps_port,
            ca_file=server.ca_file,
            add_user=server.add_user,
            add_org=add_org,
            token_for=server.token_for if tokens else None,
            log_tail=server.log_tail,
        )


_rpps_counter = iter(range(1, 10**6))


def _next_rpps() -> str:
    payload = f"1{next(_rpps_counter) + 200000:09d}"
    return payload + luhn_check_digit(payload)


@contextlib.asynccontextmanager
async def mssante_target(
    root: Path, database_url: str = "", *, with_tokens: bool = False
) -> AsyncIterator[ImapTarget]:
    """mssante's operator ALPHA with its IMAP listeners, as an :class:`ImapTarget`.

    The contract expected from mssante (skipped until it holds): after
    ``await Operator.start()``, ``operator.imap`` is an ``Endpoint(host, port)`` speaking
    IMAP with STARTTLS and ``operator.imaps`` one speaking IMAP over implicit TLS, both on
    127.0.0.1 with ephemeral ports when built by ``LocalTrustSpace.create``; logins are the
    mailbox addresses, created with ``seed_professional_mailbox`` (PER) and
    ``seed_structure_mailbox`` + ``MailboxService.add_member`` (ORG); the IMAP name of
    another mailbox's folder is ``Partages/<address>/<folder>``. Tokens: the operator is
    configured with the demo PSC provider (``identity=``) and accepts
    ``AUTHENTICATE XOAUTH2`` / ``OAUTHBEARER`` with its access tokens.
    """
    from mssante.domain.mailboxes import MailboxType
    from mssante.testing.clients import (
        seed_professional_mailbox,
        seed_structure_mailbox,
        submit,
    )
    from mssante.testing.trust_space import LocalTrustSpace, OperatorSpec

    alpha = OperatorSpec("alpha.mssante.fr", "Operateur Alpha", "1750000028", "Paris (75)")
    provider = None
    identity = None
    professionals: dict[str, str] = {}  # login -> idNat_PS
    if with_tokens:
        from mssante.identity.demo_provider import DemoProfessional, DemoProvider, generate_key

        people = []
        for login in (CAMILLE, LEA, HUGO):
            rpps = _next_rpps()
            professionals[login] = "8" + rpps
            given, family = login.split("@")[0].split(".")
            people.append(DemoProfessional("8" + rpps, given.title(), family.title(), "Médecin"))
        provider = DemoProvider(
            people, {"mssante-mail": ("mail-secret", ["http://127.0.0.1/cb"])},
            signing_key=generate_key(),
        )  # fmt: skip
        await provider.start(allow_demo=True)
        identity = provider.settings_for("mssante-mail", "mail-secret")
    space = LocalTrustSpace.create(root, [alpha], database_urls=[database_url], identity=identity)
    await space.start()
    try:
        operator = space["alpha.mssante.fr"].operator
        assert operator is not None
        imap = getattr(operator, "imap", None)
        imaps = getattr(operator, "imaps", None)
        if imap is None or imaps is None:
            pytest.skip("mssante IMAP server not available yet (operator.imap/operator.imaps)")
        services = operator.services
        passwords: dict[str, str] = {}

        def add_user(login: str, password: str) -> None:
            rpps = professionals.get(login, "8" + _next_rpps())[1:]
            local = login.split("@")[0].split(".")
            seed_professional_mailbox(
                services.mailboxes, login, rpps, password,
                given_name=local[0].title(), family_name=local[-1].title(),
            )  # fmt: skip
            passwords[login] = password

        def add_org(address: str, members: Sequence[str]) -> str:
            seed_structure_mailbox(
                services.mailboxes, address, ORG_ID_NAT_STRUCT, "Secretariat cardiologie",
                secrets_password(), type=MailboxType.ORG,
            )  # fmt: skip
            for member in members:
                services.mailboxes.add_member(address, member)
            return f"{SHARED_PREFIX}/{address}/INBOX"

        def token_for(login: str) -> str:
            assert provider is not None, "start mssante_target(with_tokens=True)"
            return str(provider.mint_access_token(professionals[login]))

        def deliver(login: str, data: bytes) -> None:
            assert operator is not None and operator.submission is not None
            sender = next(iter(passwords))
            submit(
                HOST, operator.submission.port, space.ca_file, sender, passwords[sender],
                sender, [login], data,
            )  # fmt: skip

        yield ImapTarget(
            name="mssante",
            host=imap.host,
            imap_port=imap.port,
            imaps_port=imaps.port,
            ca_file=space.ca_file,
            add_user=add_user,
            add_org=add_org,
            token_for=token_for if with_tokens else None,
            deliver=deliver,
        )
    finally:
        await space.stop()
        if provider is not None:
            await provider.stop()


def secrets_password() -> str:
    return secrets.token_urlsafe(16)


# -- clients -------------------------------------------------------------------------------


def connect(
    host: str, port: int, ca_file: Path, starttls: bool = True, timeout: float = 30
) -> imaplib.IMAP4:
    """An imaplib client over STARTTLS (``port`` = IMAP port) or implicit TLS (IMAPS)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if starttls:
        client = imaplib.IMAP4(host, port, timeout=timeout)
        client.starttls(ssl_context=context)
        return client
    return imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)


class ImapProtocolError(RuntimeError):
    """The server closed the connection or sent something unparseable."""


@dataclass
class Reply:
    """What came back for one command: untagged/continuation lines, then the tagged one.

    Each line is the raw response with literals inlined as bytes (``{n}\\r\\n`` kept, so
    the line re-parses unambiguously).
    """

    tag: str
    untagged: list[bytes]
    tagged: bytes | None  # None: connection closed before the tagged response (LOGOUT ok)

    @property
    def status(self) -> str | None:
        if self.tagged is None:
            return None
        parts = self.tagged.split(b" ", 2)
        return parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else None


_LITERAL_AT_END = re.compile(rb"[~]?\{(\d+)(\+?)\}\r\n$")


class RawImap:
    """A wire-level IMAP client on one connection (socket + ssl).

    ``implicit_tls=True`` wraps the socket at once (IMAPS); otherwise :meth:`starttls`
    upgrades it after a tagged OK to STARTTLS. ``source_address`` binds the client side,
    e.g. to :data:`PLAINTEXT_SOURCE` so that Dovecot does not treat a plaintext loopback
    connection as secured (it does when the client and server addresses are equal).
    """

    def __init__(
        self, host: str, port: int, ca_file: Path, *, implicit_tls: bool = False,
        timeout: float = 30, source_address: tuple[str, int] | None = None,
    ) -> None:  # fmt: skip
        self.host = host
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.sock: socket.socket = socket.create_connection(
            (host, port), timeout=timeout, source_address=source_address
        )
        if implicit_tls:
            self.sock = self.context.wrap_socket(self.sock, server_hostname="localhost")
        self._buffer = b""
        self.greeting = self.read_response()
        self.closed = False

    # -- reading ---------------------------------------------------------------------------

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ImapProtocolError("connection closed by the server")
        self._buffer += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line + b"\r\n"

    def _exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_response(self) -> bytes:
        """One complete response, literals inlined, trailing CRLF removed."""
        out = b""
        while True:
            line = self._line()
            out += line
            match = _LITERAL_AT_END.search(line)
            if match is None:
                return out[:-2]
            out += self._exact(int(match.group(1)))

    def pending(self, timeout: float) -> bool:
        """Whether a response starts within ``timeout`` seconds."""
        if self._buffer:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(30)
        if not chunk:
            raise ImapProtocolError("connection closed by the server")
        self._buffer += chunk
        return True

    # -- commands --------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, tag: str, line: bytes | str) -> Reply:
        """Send one command (``line``: after the tag, without the final CRLF, literals
        inline as ``{n}\\r\\n<n bytes>``) and wait for
        its tagged response. Synchronising literals wait for ``+``; a tagged answer to the
        literal (refused) ends the command."""
        raw = line.encode() if isinstance(line, str) else line
        data = tag.encode() + b" " + raw + b"\r\n"
        untagged: list[bytes] = []
        pieces = _split_literals(data)
        for index, (piece, sync) in enumerate(pieces):
            self._send(piece)
            if sync and index + 1 < len(pieces):
                while True:
                    response = self.read_response()
                    if response.startswith(b"+"):
                        break
                    if response.startswith(tag.encode() + b" "):
                        return Reply(tag, untagged, response)
                    untagged.append(response)
        return self.collect(tag, untagged)

    def collect(self, tag: str, untagged: list[bytes] | None = None) -> Reply:
        untagged = [] if untagged is None else untagged
        prefix = tag.encode() + b" "
        while True:
            try:
                response = self.read_response()
            except (ImapProtocolError, OSError):
                self.closed = True
                return Reply(tag, untagged, None)
            if response.startswith(prefix):
                return Reply(tag, untagged, response)
            untagged.append(response)

    def starttls(self, tag: str) -> Reply:
        reply = self.command(tag, b"STARTTLS")
        if reply.status == "OK":
            if self._buffer:
                raise ImapProtocolError("plaintext data after STARTTLS (injection)")
            self.sock = self.context.wrap_socket(self.sock, server_hostname="localhost")
        return reply

    def idle_start(self, tag: str) -> bytes:
        """Send IDLE and wait for the continuation; returns it (or a tagged refusal)."""
        self._send(tag.encode() + b" IDLE\r\n")
        return self.read_response()

    def idle_wait(self, predicate: Callable[[bytes], bool], timeout: float) -> list[bytes]:
        """Untagged responses during IDLE until one satisfies ``predicate`` or timeout."""
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.pending(left):
                return seen
            response = self.read_response()
            seen.append(response)
            if predicate(response):
                return seen

    def idle_done(self, tag: str, untagged: list[bytes]) -> Reply:
        self._send(b"DONE\r\n")
        return self.collect(tag, list(untagged))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed = True

    def __enter__(self) -> RawImap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_literals(data: bytes) -> list[tuple[bytes, bool]]:
    """Cut a command after each literal marker: (piece, wait for ``+`` before the next?).

    A piece ends with ``{n}\\r\\n`` (synchronising) or ``{n+}\\r\\n`` (LITERAL+); the
    literal's ``n`` bytes start the next piece and are not searched for markers.
    """
    pieces: list[tuple[bytes, bool]] = []
    position = search_from = 0
    while True:
        match = _LITERAL_MARKER.search(data, search_from)
        if match is None:
            pieces.append((data[position:], False))
            return pieces
        pieces.append((data[position : match.end()], match.group(2) != b"+"))
        position = match.end()
        search_from = position + int(match.group(1))


_LITERAL_MARKER = re.compile(rb"\{(\d+)(\+?)\}\r\n")
