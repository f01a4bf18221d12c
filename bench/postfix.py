"""A private Postfix instance in a temporary directory, the reference of `make bench`.

Started with `postfix -c DIR start` (as root) from a `main.cf`/`master.cf` written here:
smtpd on 127.0.0.1:PORT only, no chroot, its own `queue_directory` and `data_directory`,
and every recipient of the test domain delivered by the `virtual` agent to one maildir
under the same directory. Messages therefore take Postfix's real durable path: `cleanup`
fsyncs the queue file before smtpd answers 250, `qmgr` schedules, `virtual` writes and
fsyncs the maildir file. Postfix settings are the defaults otherwise (`in_flow_delay = 1s`
included: Postfix slows down smtpd when delivery lags behind acceptance). STARTTLS is
offered (`smtpd_tls_security_level = may`) with a certificate of the demo CA, and a client
certificate is requested and verified, like mssante's inbound listener does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX = "/usr/sbin/postfix"
HOSTNAME = "mx.postfix-bench.test"

MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_available() -> str | None:
    """None when Postfix can be used here, else the reason it cannot."""
    for tool in (POSTFIX, SMTP_SOURCE):
        if not os.access(tool, os.X_OK):
            return f"{tool} not found (Debian package postfix not installed)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root to start"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix system user"
    return None


def postfix_version() -> str:
    result = subprocess.run(
        ["/usr/sbin/postconf", "-d", "-h", "mail_version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


class PostfixInstance:
    def __init__(
        self,
        base: Path,
        *,
        port: int,
        domain: str,
        cert_file: Path,
        key_file: Path,
        ca_file: Path,
    ) -> None:
        self.base = base
        self.port = port
        self.domain = domain
        self.etc = base / "etc"
        self.maildir = base / "mail" / "inbox"
        self.log_file = base / "maillog"
        self.cert_file, self.key_file, self.ca_file = cert_file, key_file, ca_file
        self.started = False

    def settings(self) -> dict[str, str]:
        b = self.base
        return {
            "compatibility_level": "3.6",
            "queue_directory": str(b / "queue"),
            "data_directory": str(b / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": HOSTNAME,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_base": str(b / "mail"),
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "message_size_limit": str(50 * 1024 * 1024),
            "virtual_mailbox_limit": "0",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(b),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(self.cert_file),
            "smtpd_tls_key_file": str(self.key_file),
            "smtpd_tls_CAfile": str(self.ca_file),
            "smtpd_tls_ask_ccert": "yes",
            "smtpd_tls_protocols": ">=TLSv1.2",
            "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
            "smtpd_tls_received_header": "yes",
        }

    def start(self, cpus: set[int] | None = None) -> None:
        for sub in ("etc", "queue", "data", "mail"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)  # virtual delivers as nobody under base/mail
        os.chown(self.base / "mail", 65534, 65534)
        os.chown(self.base / "data", pwd.getpwnam("postfix").pw_uid, -1)
        main_cf = "".join(f"{k} = {v}\n" for k, v in self.settings().items())
        (self.etc / "main.cf").write_text(main_cf)
        (self.etc / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        result = subprocess.run(
            [POSTFIX, "-c", str(self.etc), "start"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        if result.returncode != 0:
            output = (result.stderr + result.stdout).strip()
            raise RuntimeError(f"postfix start failed (exit {result.returncode}): {output}")
        self.started = True

    def delivered(self) -> int:
        try:
            return sum(1 for _ in (self.maildir / "new").iterdir())
        except FileNotFoundError:
            return 0

    def wait_delivered(self, count: int, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.delivered() >= count:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                [POSTFIX, "-c", str(self.etc), "stop"],
                capture_output=True,
                check=False,
                timeout=60,
            )
            self.started = False
            time.sleep(0.5)
        shutil.rmtree(self.base, ignore_errors=True)


def smtp_source(
    host: str, port: int, *, sessions: int, messages: int, length: int, sender: str, to: str
) -> tuple[float, int, str]:
    """Run smtp-source with persistent sessions (-d); (wall seconds, exit status, stderr)."""
    command = [
        SMTP_SOURCE,
        "-d",
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(length),
        "-f",
        sender,
        "-t",
        to,
        "-M",
        "loadgen.bench.test",
        f"{host}:{port}",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    return time.perf_counter() - start, result.returncode, result.stderr.strip()[-500:]
