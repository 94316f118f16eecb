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
    """A validation failure found above the key it is about; `loc` names that key."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- connections
