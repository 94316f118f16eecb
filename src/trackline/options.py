"""Command-line options shared by the commands of several packages.

This module sits low (it needs only click, the config and the errors), so the packages'
`cli` modules (marts, quality, jobs, …) take their options from here instead of importing the
top-level `trackline.cli`, which registers them.

`pipeline_config` gives a command the loaded config with ``--source-db`` / ``--target-schema``
applied, so every command that reads or writes sync state (`sync`, `cycle`, `status`,
`check`, `reconcile`, `replay`, `reset`, …) addresses the same watermarks for the same
options: a source database's watermarks are its own (one target may be loaded from several).
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from trackline.config import Config, load_config
from trackline.errors import TracklineError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn a `TracklineError` into its one-line message and exit code (`--debug`: the
    traceback too); an interrupt (Ctrl-C, or SIGTERM through `interrupt_on_signals`) exits
    with its own code, 130 by default."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = (ctx.find_root().params or {}).get("debug", False)
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except TracklineError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            if as_json:  # a script reading stdout gets an answer too
                _json_outcome("error", str(exc), exc.exit_code, type(exc).__name__)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            # Interrupted: SIGTERM too (`interrupt_on_signals`); what committed stays (G3)
            reason = str(exc) or "received SIGINT"
            click.echo(
                f"interrupted ({reason}): committed work stays; run the command again to go "
                "on from it (`trackline status` shows each table's last run)",
                err=True,
            )
            code = getattr(exc, "exit_code", 130)
            if as_json:
                _json_outcome("interrupted", reason, code, type(exc).__name__)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def _json_outcome(status: str, message: str, code: int, kind: str) -> None:
    """What a `--json` command prints on stdout when it ends in an error or an interrupt
    (the text goes to stderr as without `--json`)."""
    import json

    click.echo(json.dumps({"status": status, "error": message, "kind": kind, "exit_code": code}))


config_option = click.option(
    "--config",
    "-c",
    "config_path",
    default="trackline.yml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The YAML config file.",
)
log_option = click.option(
    "--log-format",
    type=click.Choice(["auto", "plain", "json", "rich", "quiet"]),
    default="auto",
    show_default=True,
    help="Progress bars in a terminal, lines otherwise.",
)
override_options = [
    click.option(
        "--source-db",
        help="Read every table from this source database instead of the config's (each "
        "source database keeps its own watermarks: give the same value to every command).",
    ),
    click.option(
        "--target-schema",
        help="Load every table into this warehouse schema instead of the config's.",
    ),
]


def overrides(fn: F) -> F:
    """`--source-db` and `--target-schema`, passed as `source_db` and `target_schema`."""
    for opt in reversed(override_options):
        fn = opt(fn)
    return fn


def pipeline_config(fn: F) -> F:
    """`--config`, `--source-db` and `--target-schema`; the command receives `cfg`, the
    loaded config with the overrides applied. Put it below `handle_errors`, so a config
    error is reported like any other."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        config_path: Path,
        source_db: str | None,
        target_schema: str | None,
        **kwargs: Any,
    ) -> Any:
        return fn(*args, cfg=load(config_path, source_db, target_schema), **kwargs)

    return config_option(overrides(wrapper))  # type: ignore[return-value]


def load(config_path: Path, source_db: str | None, target_schema: str | None) -> Config:
    """The config at `config_path` with the overrides applied."""
    return load_config(config_path).overridden(source_db, target_schema)
