"""What a node hears from PostgreSQL without polling: LISTEN golemd_promise.
A promise completed on one node (its commit NOTIFYs, in the same
transaction) wakes the invocations waiting on it on every other node. One
thread with a connection of its own; it stops with the node."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import msgpack

log = logging.getLogger("golemd.cluster")
CHANNEL = "golemd_promise"


class PromiseListener:
    def __init__(self, url: str, loop: asyncio.AbstractEventLoop, heard: Callable[[str], None],
                 listening: Callable[[], None]) -> None:
        self.url = url
        self.loop = loop
        self.heard = heard
        self.listening = listening  # after each LISTEN: what completed while nobody listened
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="golemd-listen", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        import psycopg

        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, application_name="golemd-listen",
                                     connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.loop.call_soon_threadsafe(self.listening)
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.loop.call_soon_threadsafe(self.heard, note.payload)
            except Exception as exc:  # PostgreSQL restarting: listen again, then re-check (listening)
                log.warning("LISTEN %s: %s; listening again", CHANNEL, exc)
                self.stopping.wait(1.0)


def wake_waiters(durable: object, store: object, promise_id: str) -> None:
    """On the loop: a promise was completed somewhere; wake whoever waits on it here."""
    row = store.get_promise(promise_id)  # type: ignore[attr-defined]
    if row is not None and row["completed_at"] is not None:
        value = msgpack.unpackb(row["value"], raw=False, strict_map_key=False)
        durable.promise_completed(promise_id, value)  # type: ignore[attr-defined]


def recheck_waiters(durable: object, store: object) -> None:
    """On the loop, once listening: every promise waited on here, in case
    it was completed while no LISTEN was open."""
    for promise_id in list(durable.waits.promises):  # type: ignore[attr-defined]
        wake_waiters(durable, store, promise_id)
