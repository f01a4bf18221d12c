"""A failure inside the server becomes `451 4.3.0` with an error id that is in the log,
never the exception text; nothing is stored and the server keeps serving."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import smtplib

import pytest

from mssante.testing.clients import make_message, seed_professional_mailbox, submit
from mssante.testing.trust_space import LocalTrustSpace

PASSWORD = "un mot de passe assez long"


async def test_storage_failure_gives_451_with_error_id(
    trust_space: LocalTrustSpace, caplog: pytest.LogCaptureFixture
) -> None:
    a = trust_space["alpha.mssante.fr"].operator
    assert a and a.submission
    sender = "camille.martin@alpha.mssante.fr"
    other = "claire.petit@alpha.mssante.fr"
    await asyncio.to_thread(
        seed_professional_mailbox, a.services.mailboxes, sender, "10000000017", PASSWORD
    )
    await asyncio.to_thread(
        seed_professional_mailbox,
        a.services.mailboxes,
        other,
        "10000000025",
        PASSWORD,
        family_name="Petit",
        given_name="Claire",
    )
    blob_root = a.config.blob_root
    # Break the blob store: its root becomes a plain file.
    shutil.rmtree(blob_root, ignore_errors=True)
    blob_root.write_bytes(b"not a directory")
    caplog.set_level(logging.ERROR, logger="mssante.smtp")
    data = make_message(sender, [other], subject="will fail")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await asyncio.to_thread(
            submit,
            "127.0.0.1",
            a.submission.port,
            trust_space.ca_file,
            sender,
            PASSWORD,
            sender,
            [other],
            data,
        )
    assert info.value.smtp_code == 451
    text = info.value.smtp_error.decode()
    assert text.startswith("4.3.0")
    match = re.search(r"id ([0-9a-f]{12})", text)
    assert match, text
    assert "Errno" not in text and "Traceback" not in text and "Directory" not in text
    assert any(match.group(1) in r.getMessage() for r in caplog.records)
    assert a.services.store.list(other) == []
    # Repaired: the same server accepts the next message.
    blob_root.unlink()
    await asyncio.to_thread(
        submit,
        "127.0.0.1",
        a.submission.port,
        trust_space.ca_file,
        sender,
        PASSWORD,
        sender,
        [other],
        make_message(sender, [other], subject="works"),
    )
    assert len(a.services.store.list(other)) == 1
