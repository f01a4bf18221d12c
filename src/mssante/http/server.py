"""Run the HTTP application with uvicorn on the current asyncio loop (next to SMTP and IMAP).

``start_http`` binds the socket itself (uvicorn would call ``sys.exit`` on a bind failure,
which would end the whole loop), leaves the process's signal handlers alone, and returns once
the server accepts connections. With ``ssl_certfile``/``ssl_keyfile`` it serves HTTPS with the
same hardened context as the mail listeners (:func:`mssante.tls.server_context`: TLS 1.2
minimum, AEAD ECDHE suites only, R7).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from mssante.tls import server_context

__all__ = ["HttpServer", "start_http", "stop_http"]

StrPath = str | os.PathLike[str]


class HttpServer(uvicorn.Server):
    """uvicorn inside someone else's loop: no signal handlers, the serving task kept here."""

    task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn before capture_signals existed
        return None


def _ssl_factory(
    certfile: StrPath, keyfile: StrPath, min_version: str
) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        ctx = server_context(certfile, keyfile, min_version=min_version)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    return factory


async def start_http(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_certfile: StrPath | None = None,
    ssl_keyfile: StrPath | None = None,
    ssl_min_version: str = "1.2",
    graceful_shutdown: float = 5.0,
) -> tuple[HttpServer, int]:
    """Serve ``app`` on ``host:port`` (0: any free port); returns the server and its port."""
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ValueError("ssl_certfile and ssl_keyfile go together")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    options: dict[str, Any] = {}
    if ssl_certfile is not None and ssl_keyfile is not None:
        options["ssl_certfile"] = ssl_certfile
        options["ssl_keyfile"] = ssl_keyfile
        options["ssl_context_factory"] = _ssl_factory(ssl_certfile, ssl_keyfile, ssl_min_version)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the process's logging configuration
        log_level="warning",
        access_log=False,  # an access log would be one more place for a stray credential
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(graceful_shutdown),
        **options,
    )
    server = HttpServer(config)
    try:
        config.load()  # TLS errors (bad key, bad file) surface here, before serving
    except BaseException:
        sock.close()
        raise
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http-{host}:{port}")
    server.task = task
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises what stopped it
            raise RuntimeError("the HTTP server stopped during startup")
        await asyncio.sleep(0.01)
    bound_port = int(server.servers[0].sockets[0].getsockname()[1])
    return server, bound_port


async def stop_http(server: HttpServer) -> None:
    """Stop accepting, let requests in flight finish (within the graceful delay)."""
    server.should_exit = True
    task = server.task
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.task = None
