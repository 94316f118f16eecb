"""Shared pieces of the config models: identifiers, the strict base model, located errors."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,126}$")


def check_identifier(value: str) -> str:
    """Accept plain SQL identifiers only: letters, digits, `_`, `$`; not starting with a digit."""
    if not IDENT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a plain identifier (letters, digits, '_' and '$' only, "
            "starting with a letter or '_', at most 127 characters)"
        )
    return value


Ident = Annotated[str, AfterValidator(check_identifier)]


class LocatedError(ValueError):
    """A validation failure found above the key it is about; `loc` names that key.

    A failure about several keys (two entries in conflict) lists the others in `refs` and
    marks in `message` where each one's file line goes: ``{0}``, ``{1}``… The loader, which
    knows the lines, fills them in (`with_lines`); without it they read as nothing."""

    def __init__(
        self,
        loc: tuple[str | int, ...],
        message: str,
        refs: tuple[tuple[str | int, ...], ...] = (),
    ) -> None:
        super().__init__(message.format(*([""] * len(refs))))
        self.loc = loc
        self.refs = refs
        self.template = message

    def with_lines(self, lines: list[int | None]) -> str:
        return self.template.format(*[f", line {n}" if n else "" for n in lines])


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- connections
