"""The legacy side of one table's chunks, read a step ahead of the loader.

A thread of its own runs, for each chunk in turn, the chunk's COUNT (with its key range) and
its streaming read, and hands the loader the chunk's head (the count, the SELECT, the batch
size) and then its batches through a bounded queue. While the loader appends a chunk's last
batches, checks its counts and commits it, the thread already counts the next chunk and reads
its first batches: the legacy COUNT and the first read no longer wait for the commit, nor the
commit for them. Memory stays bounded: the queue holds at most `PREFETCH` items (batches of
at most the batch size), and the thread blocks on it.

Nothing read ahead is ever loaded out of turn. The loader asks for a chunk (`open`); the
thread's queue answers it only when its next item is that chunk's head and the chunk before
was taken whole. Any other ask (a retry after a count mismatch, a transaction run again, a
feed left half-read) stops the thread, drops what it read, and starts it again at that chunk:
a fresh COUNT and a fresh read, exactly as a chunk run on its own.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from trackline.backfill.chunks import Chunk

log = logging.getLogger(__name__)

PREFETCH = 3
"""Items (chunk heads, batches, chunk ends) the reader holds ahead of the loader."""


@dataclass(frozen=True)
class Head:
    """What the loader needs of a chunk before its rows: the legacy count, the SELECT that
    reads it and the batch size it is read in."""

    chunk: Chunk
    expected: int
    sql: str
    batch_size: int
    pieces: tuple[str, ...] = ()
    """The same rows as `sql` in primary-key ranges of at most a batch each, read one after
    another (empty: `sql` is read as one stream)."""


Plan = Callable[[Chunk], Head]
"""Counts a chunk on the legacy side and says how it is read."""
Stream = Callable[[Head], Iterator[pa.RecordBatch | pa.Table]]
"""Opens the chunk's streaming read."""


class ChunkReader:
    """Reads `chunks` in order, a step ahead (see the module). Used by one loader thread."""

    def __init__(self, chunks: list[Chunk], plan: Plan, stream: Stream, name: str) -> None:
        self.chunks = chunks
        self.plan = plan
        self.stream = stream
        self.name = name
        self._run: _Run | None = None
        self._next: int | None = None
        """The chunk number whose head the running thread delivers next, when the chunk
        before it was taken whole (else None: the next `open` restarts the thread)."""

    def open(self, chunk: Chunk) -> tuple[Head, Iterator[pa.RecordBatch | pa.Table]]:
        """The chunk's head and its batches (read once: a second `open` of the same chunk
        reads it again from the legacy side)."""
        if self._run is None or self._next != chunk.no:
            self._restart(chunk)
        run = self._run
        assert run is not None
        self._next = None
        kind, value = run.get()
        if kind != "head" or value.chunk.no != chunk.no:  # pragma: no cover - by construction
            raise AssertionError(f"reader out of step: {kind} for chunk {chunk.no}")
        return value, self._rows(run, chunk)

    def _rows(self, run: _Run, chunk: Chunk) -> Iterator[pa.RecordBatch | pa.Table]:
        while True:
            kind, value = run.get()
            if kind == "rows":
                yield value
            elif kind == "end":
                if run is self._run:
                    self._next = value
                return
            else:  # pragma: no cover - by construction
                raise AssertionError(f"reader out of step: {kind} in chunk {chunk.no}")

    def _restart(self, chunk: Chunk) -> None:
        self.close()
        at = next(i for i, c in enumerate(self.chunks) if c.no == chunk.no)
        self._run = _Run(self.chunks[at:], self.plan, self.stream, self.name)

    def close(self) -> None:
        """Stop the thread (it closes its read) and drop what it read ahead."""
        if self._run is not None:
            self._run.stop()
            self._run = None
        self._next = None


class _Run:
    """One reading thread, from one chunk on."""

    def __init__(self, chunks: list[Chunk], plan: Plan, stream: Stream, name: str) -> None:
        self.q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=PREFETCH)
        self.halt = threading.Event()
        self.thread = threading.Thread(
            target=self._read, args=(chunks, plan, stream), name=f"legacy-{name}", daemon=True
        )
        self.thread.start()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self.halt.is_set():
            try:
                self.q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, chunks: list[Chunk], plan: Plan, stream: Stream) -> None:
        # The next chunk's COUNT runs (on the source's metadata connection) while this
        # chunk's rows are read (on connectorx's): the server's time for it leaves the path.
        ahead = ThreadPoolExecutor(1, thread_name_prefix=f"{self.thread.name}-count")
        try:
            counted = [ahead.submit(plan, c) for c in chunks[:1]]
            for i in range(len(chunks)):
                if self.halt.is_set():
                    return
                head = counted.pop().result()
                counted += [ahead.submit(plan, c) for c in chunks[i + 1 : i + 2]]
                if not self._put(("head", head)):
                    return
                batches = stream(head)
                try:
                    for b in batches:
                        if not self._put(("rows", b)):
                            return
                finally:
                    # closed here, in the thread that read it (a cursor may be bound to it)
                    close = getattr(batches, "close", None)
                    if close is not None:
                        try:
                            close()
                        except Exception as exc:  # noqa: BLE001 - the chunk's fate is decided
                            log.warning("closing the legacy read failed: %s", exc)
                following = chunks[i + 1].no if i + 1 < len(chunks) else None
                if not self._put(("end", following)):
                    return
        except BaseException as exc:  # handed to the loader, which raises it
            self._put(("error", exc))
        finally:
            ahead.shutdown(wait=True, cancel_futures=True)

    def get(self) -> tuple[str, Any]:
        while True:
            try:
                kind, value = self.q.get(timeout=0.2)
            except queue.Empty:
                if not self.thread.is_alive() and self.q.empty():
                    raise RuntimeError("the legacy reader stopped without a word") from None
                continue
            if kind == "error":
                raise value
            return kind, value

    def stop(self) -> None:
        self.halt.set()
        while self.thread.is_alive():
            try:
                while True:
                    self.q.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.1)
