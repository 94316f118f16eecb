"""Every error trackline raises on purpose.

    TracklineError                 root; `.retryable` tells the retry logic what to do
    ├── ConfigError                the YAML file or a CLI option is wrong (names key + line)
    ├── SourceError                the source database refused or failed
    │   ├── SourceUnreachable      connection refused / timed out (retryable)
    │   └── SourceTimeout          a read ran past the source's read/stream timeout
    ├── CdcError                   the cursor rules cannot be honoured (reset table, NULL cursor)
    ├── SchemaDriftError           the source schema changed in a way we will not guess about
    ├── StageError                 writing/reading the Parquet stage failed
    ├── WarehouseError             the warehouse refused a statement
    │   ├── RetryableWarehouseError  serialization conflict, dropped connection (retryable)
    │   └── LockBusy               another trackline holds the lock for this work
    ├── StateError                 the trackline state tables disagree with what we expect
    ├── MartError                  the mart engine refused to go on (e.g. unsafe trim)
    ├── DimensionError             a replace / scd2 load refused (shrunken snapshot, bad keys)
    ├── BackfillRefused            a backfill or handoff that would load twice or skip rows
    ├── ChunkCountMismatch         a backfill chunk's loaded rows differ from the legacy count
    └── InjectedFault              raised by a TRACKLINE_FAIL_AT fault-injection point (tests)

    KeyboardInterrupt
    └── Interrupted                a stop asked from outside: SIGINT/SIGTERM, a job time limit
        └── JobTimeout             `trackline run` ended a job that ran past its time limit

`Interrupted` is no `TracklineError` on purpose: code that handles a failing table or check
(`except TracklineError`, `except Exception`) must not swallow a stop request.

Only the CLI turns these into exit codes and one-line messages.
"""

from __future__ import annotations


class TracklineError(Exception):
    """Root of trackline's errors. `retryable` marks transient failures."""

    retryable: bool = False
    exit_code: int = 1


class ConfigError(TracklineError):
    exit_code = 2


class SourceError(TracklineError):
    pass


class SourceUnreachable(SourceError):
    retryable = True


class SourceTimeout(SourceError):
    """A source statement was ended by its time limit (a lock held too long, a hung read).
    Retryable: the next cycle reads again from the last committed batch."""

    retryable = True


class CdcError(TracklineError):
    pass


class SchemaDriftError(TracklineError):
    pass


class StageError(TracklineError):
    pass


class WarehouseError(TracklineError):
    pass


class RetryableWarehouseError(WarehouseError):
    retryable = True


class LockBusy(WarehouseError):
    exit_code = 75  # EX_TEMPFAIL: try again later


class StateError(TracklineError):
    pass


class MartError(TracklineError):
    pass


class DimensionError(TracklineError):
    """A `replace` or `scd2` table refused its snapshot; the table was left as it was."""


class BackfillRefused(TracklineError):
    """A backfill or handoff refused before writing anything (overlapping ranges, an
    incremental sync already past the handoff point, chunks not done)."""


class ChunkCountMismatch(TracklineError):
    """A backfill chunk loaded another number of rows than the legacy side counts: it was
    rolled back (and is retried)."""


class InjectedFault(TracklineError):
    """Raised at a named step when TRACKLINE_FAIL_AT names it (see `trackline.faults`)."""

    exit_code = 99


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (a signal, or a time limit). Runs record it with `status`
    and re-raise it; the CLI exits with `exit_code` and says why."""

    status = "interrupted"

    def __init__(self, reason: str, exit_code: int = 130) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.reason


class JobTimeout(Interrupted):
    """A job of `trackline run` ran past `schedule.job_timeout_minutes`: a failure."""

    status = "failed"
