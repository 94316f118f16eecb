"""Fault injection: stop a command at a named step, so tests can prove G3.

Set ``TRACKLINE_FAIL_AT=<step>`` (comma-separated for several) and the step runner raises
`InjectedFault` when it reaches that point. ``<step>@<n>`` fails on the n-th time the step is
reached (1-based), so a test can kill the *second* batch of a sync. With
``TRACKLINE_FAIL_MODE=exit`` the process dies with ``os._exit`` instead, like a SIGKILL: no
``finally`` block, no rollback handler runs.

Named steps (grep for ``checkpoint("``): sync.after_extract, sync.after_stage,
sync.before_commit, sync.after_commit, sync.after_widen, mart.after_widen, mart.after_insert,
mart.after_reactivate, mart.after_archive, mart.after_check, mart.before_commit,
migrate.before_commit.
"""

from __future__ import annotations

import os
from collections import Counter

from trackline.errors import InjectedFault

_hits: Counter[str] = Counter()


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
        if os.environ.get("TRACKLINE_FAIL_MODE") == "exit":
            os._exit(99)
        raise InjectedFault(f"injected fault at step {step!r} (TRACKLINE_FAIL_AT)")


def reset() -> None:
    """Forget how often each step was reached (tests running several commands in-process)."""
    _hits.clear()
