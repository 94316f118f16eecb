"""Shared helpers of the benchmarks: run a step in its own process, measure it, print tables.

Every measured step runs in a SEPARATE child process started by the parent. The child reports
its own peak RSS (VmHWM of /proc/self/status, reset by exec, unlike ``ru_maxrss``, which Linux
carries over from the parent across fork + exec), the parent adds wall time and the child's CPU
time from ``os.wait4``. The child prints one JSON line prefixed with ``@@RESULT`` carrying its
own wall and CPU time of the work (interpreter start and imports excluded).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_TAG = "@@RESULT "


@dataclass
class Measured:
    name: str
    result: dict[str, Any]
    wall: float
    """Seconds from process start to exit (interpreter start and imports included)."""
    peak_rss_mb: float
    cpu: float = 0.0
    """User + system CPU seconds of the child (all its threads): less sensitive than wall
    time to other processes on a shared machine."""
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def work_cpu(self) -> float:
        """CPU seconds of the work alone when the child reported them, else of the process."""
        return float(self.result.get("cpu", self.cpu))

    @property
    def seconds(self) -> float:
        """The child's own timing of the work (what the ratios use)."""
        return float(self.result.get("seconds", self.wall))


def run_child(
    name: str, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 900
) -> Measured:
    """Run argv in a child process, return its @@RESULT payload, wall time and peak RSS."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RuntimeError(f"{name}: timed out after {timeout:.0f}s")
            time.sleep(0.02)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
    if proc.returncode != 0 or not result:
        sys.stderr.write(stdout[-4000:])
        sys.stderr.write(stderr[-4000:])
        raise RuntimeError(f"{name}: child exited with {proc.returncode}")
    # The child's own high-water resident set is VmHWM from its /proc/self/status, read by the
    # child itself: wait4's ru_maxrss is NOT usable here, because Linux keeps the maximum across
    # fork + exec, so a child would report at least the parent's size at the fork. The child
    # adds its own children's peak (e.g. a worker process) in the result line.
    peak = max(
        float(result.get("vm_hwm_mb", usage.ru_maxrss / 1024)),
        float(result.get("children_peak_rss_mb", 0.0)),
    )
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(name, result, wall, peak, cpu, stderr[-2000:])


def server_cpu_seconds(names: tuple[str, ...] = ("mariadbd", "mysqld")) -> float | None:
    """User + system CPU seconds so far of the local database server's processes (all their
    threads), read from /proc/<pid>/stat; None when no such process is visible (a remote or
    containerised server). The difference around a step is what the server spent on it (and
    on whatever else it served meanwhile: on a shared machine, other sessions' queries)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, found = 0.0, False
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() not in names:
                continue
            # the fields after the parenthesised command: state is field 3, utime 14, stime 15
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total if found else None


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def vm_hwm_mb() -> float:
    """This process's peak resident set (VmHWM), in MiB; 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def report(payload: dict[str, Any]) -> None:
    """Child side: print the result line (adds this process's peak RSS and its children's)."""
    import resource

    payload["vm_hwm_mb"] = vm_hwm_mb()
    # Linux reports ru_maxrss in KiB.
    payload["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(RESULT_TAG + json.dumps(payload, default=str), flush=True)


def machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "?"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, Python {platform.python_version()}"
    )


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join([line, sep, *body])
