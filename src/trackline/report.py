"""Progress reporting, injected into the core (never `print` in library code).

`RichReporter` draws a progress bar per table in a terminal, `LogReporter` writes plain or
JSON lines (for logs and schedulers), `NullReporter` keeps tests quiet.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Protocol, TextIO


class Reporter(Protocol):
    def event(self, kind: str, message: str, **fields: Any) -> None: ...
    def progress(
        self, task: str, advance: int, total: int | None = None, unit: str = "rows"
    ) -> None: ...
    def close(self) -> None: ...


class NullReporter:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def event(self, kind: str, message: str, **fields: Any) -> None:
        self.events.append((kind, message, fields))

    def progress(
        self, task: str, advance: int, total: int | None = None, unit: str = "rows"
    ) -> None:
        return None

    def close(self) -> None:
        return None


class LogReporter:
    def __init__(self, fmt: str = "plain", stream: TextIO | None = None) -> None:
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()  # tables synced in parallel report from their threads

    def event(self, kind: str, message: str, **fields: Any) -> None:
        if self.fmt == "json":
            line = json.dumps(
                {
                    "ts": round(time.time(), 3),
                    "level": _level(kind),
                    "event": kind,
                    "message": message,
                    **fields,
                },
                default=str,
            )
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"{time.strftime('%H:%M:%S')} {_level(kind):7} {message}" + (
                f"  [{extra}]" if extra else ""
            )
        with self._lock:
            print(line, file=self.stream, flush=True)

    def progress(
        self, task: str, advance: int, total: int | None = None, unit: str = "rows"
    ) -> None:
        return None

    def close(self) -> None:
        return None


def _level(kind: str) -> str:
    if kind in ("warning", "drift", "hold"):
        return "warning"
    if kind in ("error", "failed"):
        return "error"
    return "info"


class RichReporter:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[done]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.bars.start()

    def event(self, kind: str, message: str, **fields: Any) -> None:
        style = {"warning": "yellow", "error": "red", "failed": "red", "drift": "yellow"}.get(
            kind, "dim"
        )
        self.bars.console.print(f"[{style}]{message}[/{style}]", highlight=False)

    def progress(
        self, task: str, advance: int, total: int | None = None, unit: str = "rows"
    ) -> None:
        if task not in self.tasks:
            self.tasks[task] = self.bars.add_task(task, total=total, unit=unit, done="")
        tid = self.tasks[task]
        self.bars.update(tid, advance=advance, total=total)
        done = next(int(t.completed) for t in self.bars.tasks if t.id == tid)
        self.bars.update(tid, done=progress_text(done, total, unit))

    def close(self) -> None:
        self.bars.stop()


def progress_text(done: int, total: int | None, unit: str) -> str:
    """`12 of 240 days` when the total is known (the demo's overall progress), else `12 days`."""
    return f"{done:,} of {total:,} {unit}" if total else f"{done:,} {unit}"


def make_reporter(fmt: str | None) -> Reporter:
    """`auto`: rich bars on a terminal, plain lines otherwise."""
    if fmt in (None, "auto"):
        return RichReporter() if sys.stderr.isatty() else LogReporter("plain")
    if fmt == "rich":
        return RichReporter()
    if fmt == "quiet":
        return NullReporter()
    return LogReporter(fmt)
