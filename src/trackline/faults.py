"""Fault injection: stop a command at a named step or at a warehouse statement, so tests can
prove G3.

Named steps: set ``TRACKLINE_FAIL_AT=<step>`` (comma-separated for several) and the step
runner raises `InjectedFault` when it reaches that point. ``<step>@<n>`` fails on the n-th time
the step is reached (1-based), so a test can kill the *second* batch of a sync.

Statements: set ``TRACKLINE_FAIL_AT_STATEMENT=<n>`` and the process dies right AFTER its n-th
warehouse statement (1-based, counted by the adapter base over every engine: queries, DML,
DDL, and each BEGIN and COMMIT) has run. A test that measures how many statements a command
issues (`statements()`) and kills it after each one in turn stops it between every two
statements, including between two commits that ought to be one: killed right after the first,
a rerun has to repair what the second would have written.

With ``TRACKLINE_FAIL_MODE=exit`` the process dies with ``os._exit`` instead, like a SIGKILL:
no ``finally`` block, no rollback handler runs. Otherwise the fault is raised, and for a
statement fault the process counts as dead from then on: every later warehouse statement
raises again (a rollback still runs, as the server does for a dropped connection), so no
cleanup code can write what a killed process never would.

Named steps (grep for ``checkpoint("``): sync.after_extract, sync.after_stage,
sync.before_commit, sync.after_commit, sync.after_widen, mart.after_widen, mart.after_insert,
mart.after_reactivate, mart.after_archive, mart.after_check, mart.before_commit,
migrate.before_commit, consolidate.after_read, consolidate.before_stage_commit,
consolidate.after_input (once per input), consolidate.after_delete,
consolidate.before_merge_commit, consolidate.after_merge_commit.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

from trackline.errors import InjectedFault

_hits: Counter[str] = Counter()
_lock = threading.Lock()
_statements = 0
_dead_after: int | None = None


def _die(message: str) -> None:
    if os.environ.get("TRACKLINE_FAIL_MODE") == "exit":
        os._exit(99)
    raise InjectedFault(message)


def checkpoint(step: str) -> None:
    spec = os.environ.get("TRACKLINE_FAIL_AT")
    if not spec:
        return
    _hits[step] += 1
    for item in spec.split(","):
        name, _, nth = item.strip().partition("@")
        if name != step:
            continue
        if nth and int(nth) != _hits[step]:
            continue
        _die(f"injected fault at step {step!r} (TRACKLINE_FAIL_AT)")


def before_statement() -> None:
    """Called by the warehouse adapter before each statement: a killed process sends none."""
    if _dead_after is not None:
        raise InjectedFault(
            f"the process was killed after warehouse statement {_dead_after} "
            "(TRACKLINE_FAIL_AT_STATEMENT)"
        )


def after_statement() -> None:
    """Called by the warehouse adapter after each statement ran: count it, and die after the
    one TRACKLINE_FAIL_AT_STATEMENT names."""
    global _statements, _dead_after
    with _lock:
        _statements += 1
        n = _statements
    target = os.environ.get("TRACKLINE_FAIL_AT_STATEMENT")
    if target and int(target) == n:
        _dead_after = n
        _die(f"injected fault after warehouse statement {n} (TRACKLINE_FAIL_AT_STATEMENT)")


def statements() -> int:
    """How many warehouse statements this process has run (since the last `reset`)."""
    return _statements


def reset() -> None:
    """Forget how often each step was reached and how many statements ran, and revive a
    process killed at a statement (tests running several commands in-process)."""
    global _statements, _dead_after
    _hits.clear()
    with _lock:
        _statements = 0
        _dead_after = None
