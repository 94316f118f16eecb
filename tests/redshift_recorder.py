"""Every statement the Redshift adapter sends in compat mode, over the whole test session.

`conftest.redshift_statements` (session-scoped, autouse) wraps the adapter's driver hooks
(`_execute`, `_execute_count`, `_query`, and `_copy_manifest`, recorded as the COPY Redshift
would receive). Each statement PostgreSQL accepted is kept once per shape (generated names
folded, see `redshift_checks.shape`) with the test that first sent it. When the session ends,
each shape goes through `redshift_checks.redshift_problems`, and any finding fails the run:
checks, reconcile, replay, reset, maintenance and locks are covered as much as sync and marts,
whatever test drives them. Nothing is mocked: every statement still runs on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tests.redshift_checks import Sent, redshift_problems, shape
from trackline.errors import WarehouseError
from trackline.load.redshift import Redshift


class CompatStatements:
    def __init__(self) -> None:
        self.shapes: dict[tuple[str, bool, bool], tuple[Sent, str]] = {}
        self.count = 0
        self.paused = 0
        self.captures: list[list[Sent]] = []

    def add(self, sql: str, params: Sequence[Any], in_transaction: bool) -> None:
        if self.paused:
            return
        self.count += 1
        for c in self.captures:
            c.append(Sent(sql, tuple(params), in_transaction))
        key = (shape(sql), bool(params), in_transaction)
        if key not in self.shapes:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            self.shapes[key] = (Sent(sql, tuple(params), in_transaction), test)

    def problems(self) -> dict[str, tuple[str, list[str]]]:
        """SQL → (the test that sent it first, why Redshift would refuse it)."""
        out = {}
        for sent, test in self.shapes.values():
            found = redshift_problems(sent)
            if found:
                out[sent.sql] = (test, found)
        return out

    @staticmethod
    def problems_of(sent: list[Sent]) -> dict[str, list[str]]:
        """SQL → why Redshift would refuse it, for `sent` (one check per shape)."""
        shapes = {(shape(s.sql), bool(s.params), s.in_transaction): s for s in sent}
        return {s.sql: p for s in shapes.values() if (p := redshift_problems(s))}

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[Sent]]:
        """Every statement (of any shape) sent in compat mode during the block."""
        sent: list[Sent] = []
        self.captures.append(sent)
        try:
            yield sent
        finally:
            self.captures.remove(sent)

    @contextlib.contextmanager
    def unchecked(self) -> Iterator[None]:
        """Statements a test sends on purpose that Redshift would refuse (not trackline's)."""
        self.paused += 1
        try:
            yield
        finally:
            self.paused -= 1


STATEMENTS = CompatStatements()


def _recording(name: str) -> Callable[..., Any]:
    original = getattr(Redshift, name)

    def hook(self: Redshift, sql: str, params: Sequence[Any]) -> Any:
        result = original(self, sql, params)
        if self.compat:
            STATEMENTS.add(sql, params, self.in_transaction)
        return result

    hook.__wrapped__ = original  # type: ignore[attr-defined]
    return hook


def _recording_copy() -> Callable[..., Any]:
    original = Redshift._copy_manifest

    def hook(self: Redshift, target: str, names: list[str], manifest: str, **kw: Any) -> None:
        original(self, target, names, manifest, **kw)
        if self.compat:
            with contextlib.suppress(WarehouseError):  # a local stage has no S3 COPY form
                sql = self.copy_sql(target, names, manifest, **kw)
                STATEMENTS.add(sql, (), self.in_transaction)

    hook.__wrapped__ = original  # type: ignore[attr-defined]
    return hook


@contextlib.contextmanager
def recording() -> Iterator[CompatStatements]:
    hooks = {n: _recording(n) for n in ("_execute", "_execute_count", "_query")}
    hooks["_copy_manifest"] = _recording_copy()
    own = {n: Redshift.__dict__.get(n) for n in hooks}  # None: inherited from Postgres
    for n, h in hooks.items():
        setattr(Redshift, n, h)
    try:
        yield STATEMENTS
    finally:
        for n, f in own.items():
            if f is None:
                delattr(Redshift, n)
            else:
                setattr(Redshift, n, f)
