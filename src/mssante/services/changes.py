"""Change notifications for IDLE (RFC 2177) within one process and across processes.

A service that changes a folder calls `touched(conn, folder_id)` inside its transaction.
When the transaction commits, `Database` hands the folder ids to `publish`, which wakes the
sessions of this process that watch them. On PostgreSQL the same call also issues
`pg_notify` in the transaction, delivered at commit to every process sharing the database
(`LISTEN/NOTIFY`), so an IDLE client connected to another node hears of new mail too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Connection, text

log = logging.getLogger("mssante.changes")

CHANNEL = "mssante_changes"


class ChangeBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[int, set[asyncio.Queue[int]]] = defaultdict(set)
        self._loops: dict[asyncio.Queue[int], asyncio.AbstractEventLoop] = {}

    # -- producers (any thread, inside a transaction) -------------------------------------

    @staticmethod
    def touched(conn: Connection, folder_id: int) -> None:
        pending: set[int] = conn.info.setdefault("mssante_touched", set())
        pending.add(folder_id)
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": str(folder_id)})

    def publish(self, folder_ids: Iterable[int]) -> None:
        """Wake the watchers of these folders (called after commit, from any thread)."""
        with self._lock:
            targets = [
                (queue, self._loops[queue], fid)
                for fid in folder_ids
                for queue in self._watchers.get(fid, ())
            ]
        for queue, loop, fid in targets:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(queue.put_nowait, fid)

    # -- consumers (asyncio) -------------------------------------------------------------

    def watch(self, folder_id: int) -> asyncio.Queue[int]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        with self._lock:
            self._watchers[folder_id].add(queue)
            self._loops[queue] = asyncio.get_running_loop()
        return queue

    def unwatch(self, folder_id: int, queue: asyncio.Queue[int]) -> None:
        with self._lock:
            self._watchers.get(folder_id, set()).discard(queue)
            self._loops.pop(queue, None)

    async def listen_postgresql(self, url: str, stop: asyncio.Event) -> None:
        """Relay NOTIFY from other processes to this process's watchers."""
        import psycopg

        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    gen = conn.notifies()
                    async for note in gen:
                        with contextlib.suppress(ValueError):
                            self.publish([int(note.payload)])
                        if stop.is_set():
                            break
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect after a database restart
                log.warning("LISTEN connection lost; reconnecting in 1 s")
                await asyncio.sleep(1)
