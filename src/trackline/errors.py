"""Every error trackline raises on purpose.

    TracklineError                 root; `.retryable` tells the retry logic what to do
    ├── ConfigError                the YAML file or a CLI option is wrong (names key + line)
    ├── SourceError                the source database refused or failed
    │   └── SourceUnreachable      connection refused / timed out (retryable)
    ├── CdcError                   the cursor rules cannot be honoured (reset table, NULL cursor)
    ├── SchemaDriftError           the source schema changed in a way we will not guess about
    ├── StageError                 writing/reading the Parquet stage failed
    ├── WarehouseError             the warehouse refused a statement
    │   ├── RetryableWarehouseError  serialization conflict, dropped connection (retryable)
    │   └── LockBusy               another trackline holds the lock for this work
    ├── StateError                 the trackline state tables disagree with what we expect
    ├── MartError                  the mart engine refused to go on (e.g. unsafe trim)
    └── InjectedFault              raised by a TRACKLINE_FAIL_AT fault-injection point (tests)

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


class InjectedFault(TracklineError):
    """Raised at a named step when TRACKLINE_FAIL_AT names it (see `trackline.faults`)."""

    exit_code = 99
