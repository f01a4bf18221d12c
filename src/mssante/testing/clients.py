"""Small helpers for tests, the demo and integrators: seed mailboxes, send, wait."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from mssante.domain.mailboxes import MailboxSpec, MailboxType
from mssante.services.mailboxes import MailboxService


def seed_professional_mailbox(
    mailboxes: MailboxService,
    address: str,
    rpps: str,
    password: str,
    *,
    family_name: str = "Martin",
    given_name: str = "Camille",
    profession: str = "Médecin",
) -> None:
    """A professional (idNat_PS = 8 + RPPS) and their PER mailbox with a password."""
    id_nat_ps = "8" + rpps
    mailboxes.create_professional(id_nat_ps, family_name, given_name, profession)
    mailboxes.create_mailbox(
        MailboxSpec(address=address, type=MailboxType.PER, id_nat_ps=id_nat_ps),
        password=password,
    )


def seed_structure_mailbox(
    mailboxes: MailboxService,
    address: str,
    id_nat_struct: str,
    structure_name: str,
    password: str,
    *,
    type: MailboxType = MailboxType.ORG,
    responsible: str = "Directrice",
    create_structure: bool = True,
) -> None:
    if create_structure:
        mailboxes.create_structure(id_nat_struct, structure_name)
    mailboxes.create_mailbox(
        MailboxSpec(
            address=address,
            type=type,
            id_nat_struct=id_nat_struct,
            responsible=responsible,
            description=structure_name,
        ),
        password=password,
    )


def make_message(
    sender: str,
    recipients: Sequence[str],
    subject: str = "Test MSSante",
    body: str = "Bonjour,\n\nMessage de test.\n",
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def submit(
    host: str,
    port: int,
    ca_file: Path,
    login: str,
    password: str,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
    *,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
    timeout: float = 30,
) -> dict[str, tuple[int, bytes]]:
    """Blocking submission over STARTTLS + AUTH (run it in a thread from async code)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with smtplib.SMTP(host, port, timeout=timeout) as client:
        client.starttls(context=context)
        client.login(login, password)
        return client.sendmail(
            sender,
            list(recipients),
            data,
            mail_options=list(mail_options),
            rcpt_options=list(rcpt_options),
        )


async def wait_for(
    predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05
) -> object:
    """Poll `predicate` (run in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)
