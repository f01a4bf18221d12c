"""The asynchronous client (httpx.AsyncClient): the same methods as :class:`Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

from mssante.client import _core, _transport
from mssante.client.errors import ConnectionFailed, error_from_response
from mssante.client.models import (
    Folder,
    Me,
    MessageDetail,
    MessageStatus,
    MessageSummary,
    Page,
    Patient,
    Subscription,
    Suggestion,
    WebhookDelivery,
)

T = TypeVar("T")

__all__ = ["AsyncClient"]


class AsyncClient:
    """The asynchronous twin of :class:`~mssante.client.Client` (same arguments, methods awaited).

    Authenticate with a bearer ``token`` (e.g. a Pro Santé Connect access token), or with the
    ``client_id``/``client_secret`` of an APP BAL: the client then asks ``POST /oauth/token``
    for an access token and renews it before it expires. ``verify`` is a CA file (PEM) for
    an operator whose certificate is not in the system store, or a bool.

    Calls that can safely be sent again (reads, and sends, which carry an Idempotency-Key)
    are retried ``retries`` times after a connection error or a 503 answer.
    Use as an async context manager, or await :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        verify: str | Path | bool = True,
        timeout: float = _transport.DEFAULT_TIMEOUT,
        retries: int = 3,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._tokens = _transport.TokenCache(token, client_id, client_secret, scope)
        self._lock = asyncio.Lock()
        self.retries = retries
        self._http = httpx.AsyncClient(
            **_transport.client_args(base_url, verify, timeout, headers), transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # -- plumbing -----------------------------------------------------------------------

    async def _token(self) -> str:
        async with self._lock:
            token = self._tokens.current()
            if token is not None:
                return token
            for attempt in range(self.retries + 1):
                try:
                    response = await self._http.post(
                        _transport.TOKEN_PATH, **self._tokens.request_args()
                    )
                except httpx.TransportError as exc:
                    if attempt >= self.retries:
                        raise ConnectionFailed(_unreachable(exc)) from exc
                    await asyncio.sleep(_transport.retry_delay(attempt, None))
                    continue
                if response.status_code == 503 and attempt < self.retries:
                    await asyncio.sleep(_transport.retry_delay(attempt, response))
                    continue
                return self._tokens.store(response)
            raise AssertionError("unreachable")

    async def _send(self, call: _core.Call[Any], stream: bool = False) -> httpx.Response:
        attempt = 0
        renewed = False
        while True:
            with ExitStack() as stack:
                args = call.request_args(stack)
                token = await self._token()
                args["headers"]["Authorization"] = f"Bearer {token}"
                request = self._http.build_request(call.method, call.path, **args)
                try:
                    response = await self._http.send(request, stream=stream)
                except httpx.TransportError as exc:
                    if not call.retry_transport or attempt >= self.retries:
                        raise ConnectionFailed(_unreachable(exc)) from exc
                    await asyncio.sleep(_transport.retry_delay(attempt, None))
                    attempt += 1
                    continue
            if response.status_code == 401 and self._tokens.renewable and not renewed:
                await response.aclose()
                self._tokens.forget()  # revoked or expired early: one new token
                renewed = True
                continue
            if response.status_code == 503 and attempt < self.retries:
                await response.aclose()
                await asyncio.sleep(_transport.retry_delay(attempt, response))
                attempt += 1
                continue
            if response.is_error:
                await response.aread()
                await response.aclose()
                raise error_from_response(response)
            return response

    async def _run(self, call: _core.Call[T]) -> T:
        return call.parse(await self._send(call))

    async def _download(self, path: str, dest: Path | IO[bytes]) -> int:
        call: _core.Call[None] = _core.Call("GET", path, lambda r: None, retry_transport=True)
        response = await self._send(call, stream=True)
        written = 0
        try:
            if isinstance(dest, Path):
                tmp = dest.with_name(dest.name + ".part")
                with tmp.open("wb") as out:
                    async for chunk in response.aiter_bytes(64 * 1024):
                        out.write(chunk)
                        written += len(chunk)
                tmp.replace(dest)
            else:
                async for chunk in response.aiter_bytes(64 * 1024):
                    dest.write(chunk)
                    written += len(chunk)
        except httpx.TransportError as exc:
            raise ConnectionFailed(_unreachable(exc)) from exc
        finally:
            await response.aclose()
        return written

    # -- the API ------------------------------------------------------------------------

    async def me(self) -> Me:
        """Who the token speaks for, and the BALs it may use."""
        return await self._run(_core.me())

    async def send(
        self,
        mailbox: str,
        to: Sequence[str] | str,
        subject: str,
        text: str = "",
        *,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        attachments: Iterable[_core.AttachmentLike] = (),
        documents: Iterable[_core.DocumentLike] = (),
        patient: Patient | Mapping[str, Any] | None = None,
        use_case: str | None = None,
        notify: Sequence[str] | None = None,
        read_receipt: bool = False,
        in_reply_to: str | None = None,
        idempotency_key: str | None = None,
    ) -> MessageStatus:
        """Send a message as ``mailbox``; answers its :class:`MessageStatus` (202).

        ``attachments``: paths (uploaded streamed, multipart), :class:`File` objects, or
        ``(filename, bytes, content_type)`` tuples. ``documents`` (CDA R2 or PDF) go into an
        IHE XDM package with the MSSanté headers; give the ``patient`` they are about.
        ``idempotency_key`` defaults to a fresh UUID: the retries of this call reuse it, so
        the message is never sent twice.
        """
        return await self._run(
            _core.send(
                mailbox,
                to,
                subject,
                text,
                cc=cc,
                bcc=bcc,
                attachments=attachments,
                documents=documents,
                patient=patient,
                use_case=use_case,
                notify=notify,
                read_receipt=read_receipt,
                in_reply_to=in_reply_to,
                idempotency_key=idempotency_key,
            )
        )

    async def list_page(
        self,
        mailbox: str,
        *,
        folder: str | None = None,
        unread: bool | None = None,
        since: datetime | str | None = None,
        patient_ins: str | None = None,
        document_type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """One page of messages, newest first, and the cursor of the next page."""
        return await self._run(
            _core.list_page(
                mailbox,
                folder=folder,
                unread=unread,
                since=since,
                patient_ins=patient_ins,
                document_type=document_type,
                limit=limit,
                cursor=cursor,
            )
        )

    async def list_messages(
        self,
        mailbox: str,
        *,
        folder: str | None = None,
        unread: bool | None = None,
        since: datetime | str | None = None,
        patient_ins: str | None = None,
        document_type: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[MessageSummary]:
        """Every matching message, newest first, following the cursors page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_page(
                mailbox,
                folder=folder,
                unread=unread,
                since=since,
                patient_ins=patient_ins,
                document_type=document_type,
                limit=page_size,
                cursor=cursor,
            )
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get_message(
        self, mailbox: str, message_id: str, *, peek: bool = False
    ) -> MessageDetail:
        """A message whole. Marks it read (unless ``peek``) and sends the read receipt the
        sender asked for, if any (RFC 8098)."""
        return await self._run(_core.get_message(mailbox, message_id, peek=peek))

    async def download_attachment(
        self, mailbox: str, message_id: str, index: int, dest: Path | IO[bytes]
    ) -> int:
        """Stream attachment ``index`` into ``dest`` (a path or a binary file); bytes written."""
        return await self._download(
            _core.part_path(mailbox, message_id, "attachments", index), dest
        )

    async def download_document(
        self, mailbox: str, message_id: str, index: int, dest: Path | IO[bytes]
    ) -> int:
        """Stream document ``index`` of the XDM package into ``dest``; bytes written."""
        return await self._download(_core.part_path(mailbox, message_id, "documents", index), dest)

    async def set_flags(
        self,
        mailbox: str,
        message_id: str,
        *,
        seen: bool | None = None,
        flagged: bool | None = None,
        add_flags: Sequence[str] = (),
        remove_flags: Sequence[str] = (),
    ) -> MessageSummary:
        """Change the flags of a message (IMAP flags, e.g. ``\\Seen``, ``\\Flagged``)."""
        return await self._run(
            _core.set_flags(
                mailbox,
                message_id,
                seen=seen,
                flagged=flagged,
                add_flags=add_flags,
                remove_flags=remove_flags,
            )
        )

    async def move(self, mailbox: str, message_id: str, folder: str) -> MessageSummary:
        """Move a message to ``folder``; the answer carries its new id."""
        return await self._run(_core.set_flags(mailbox, message_id, folder=folder))

    async def delete(self, mailbox: str, message_id: str) -> None:
        """Move a message to the Trash (from the Trash: remove it)."""
        await self._run(_core.delete(mailbox, message_id))

    async def folders(self, mailbox: str) -> list[Folder]:
        return await self._run(_core.folders(mailbox))

    async def status(self, mailbox: str, send_id: str) -> MessageStatus:
        """The delivery status of a sent message, per recipient."""
        return await self._run(_core.status(mailbox, send_id))

    async def wait_status(
        self,
        mailbox: str,
        send_id: str,
        *,
        until: frozenset[str] | None = None,
        timeout: float = 60.0,
        interval: float = 0.5,
    ) -> MessageStatus:
        """Poll :meth:`status` until every recipient's status is in ``until`` (default: a
        final status) or ``timeout`` seconds passed; answers the last status seen."""
        deadline = time.monotonic() + timeout
        while True:
            current = await self.status(mailbox, send_id)
            done = (
                current.final
                if until is None
                else all(r.status in until for r in current.recipients)
            )
            if done or time.monotonic() >= deadline:
                return current
            await asyncio.sleep(interval)

    async def subscribe(
        self,
        mailbox: str,
        url: str,
        events: Sequence[str] = ("message.received", "message.status"),
        *,
        secret: str | None = None,
    ) -> Subscription:
        """Subscribe ``url`` to the events of ``mailbox``; the answer holds the secret that
        signs the deliveries (shown only once)."""
        return await self._run(_core.subscribe(mailbox, url, events, secret))

    async def subscriptions(self, mailbox: str) -> list[Subscription]:
        return await self._run(_core.subscriptions(mailbox))

    async def unsubscribe(self, mailbox: str, subscription_id: str) -> None:
        await self._run(_core.unsubscribe(mailbox, subscription_id))

    async def deliveries(
        self,
        mailbox: str,
        subscription_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> list[WebhookDelivery]:
        """The delivery log of a subscription."""
        return await self._run(
            _core.deliveries(mailbox, subscription_id, limit=limit, cursor=cursor)
        )

    async def replay(self, mailbox: str, subscription_id: str, delivery_id: str) -> None:
        """Deliver an event again."""
        await self._run(_core.replay(mailbox, subscription_id, delivery_id))

    async def directory_search(self, query: str, **filters: str | int) -> list[Suggestion]:
        """Search the directory (Annuaire Santé) for recipients."""
        return await self._run(_core.directory_search(query, **filters))

    async def directory_suggest(self, query: str, **filters: str | int) -> list[Suggestion]:
        """Address suggestions for a compose form (as-you-type)."""
        return await self._run(_core.directory_suggest(query, **filters))


def _unreachable(exc: Exception) -> str:
    return f"Opérateur injoignable ({type(exc).__name__})."
