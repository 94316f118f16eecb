"""Reading the file: YAML with line numbers, ${VAR} interpolation, errors naming key and line."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trackline.config.airflow_conns import Connections, merge
from trackline.config.base import LocatedError
from trackline.config.connections import DuckDBWarehouse, SQLiteSource
from trackline.config.root import Config
from trackline.errors import ConfigError

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEYS = frozenset({"password", "access_key_id", "secret_access_key"})
_MAX_ERRORS = 5

Loc = tuple[Any, ...]


def _interpolate(value: Any, path: Loc, errors: list[tuple[Loc, str]], used: set[str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string value (shell semantics:
    ``:-`` also applies when VAR is set but empty). Values taken from the environment are
    added to `used`, so error messages can be scrubbed of them."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), errors, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), errors, used) for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            env = os.environ.get(var)
            if env:
                used.add(env)
                return env
            if default is not None:
                return default
            if env is not None:  # set but empty, no default
                return env
            errors.append((path, f"environment variable {var} is not set"))
            return ""

        return _ENV_RE.sub(repl, value)
    return value


def _literal_secrets(value: Any, out: set[str], key: Any = None) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _literal_secrets(v, out, k)
    elif isinstance(value, list):
        for v in value:
            _literal_secrets(v, out, key)
    elif isinstance(value, str) and key in _SECRET_KEYS and value:
        out.add(value)


def _scrub(message: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            message = message.replace(secret, "**********")
    return message


def _duplicate_keys(node: yaml.Node | None, path: Loc = ()) -> tuple[Loc, int] | None:
    """The first mapping key that appears twice (YAML would silently keep the last one)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    return (*path, k.value), k.start_mark.line + 1
                seen.add(k.value)
            found = _duplicate_keys(v, (*path, getattr(k, "value", "?")))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_keys(item, (*path, i))
            if found:
                return found
    return None


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """The line of the deepest key of `loc` that exists in the composed YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if getattr(k, "value", None) == part:
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _clean_loc(data: Any, loc: Loc) -> Loc:
    """Drop the parts pydantic adds that are not keys of the file: union tags
    (``sources.a.mysql.port``) and ``[key]`` markers for a bad dictionary key."""
    out: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict):
            if part in cur:
                cur = cur[part]
                out.append(part)
            elif part == "[key]" or (isinstance(part, str) and part in _UNION_TAGS):
                continue
            else:
                out.append(part)
                cur = None
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
            out.append(part)
        else:
            if part != "[key]":
                out.append(part)
            cur = None
    return tuple(out)


def _at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_config(path: str | Path, *, connections: Connections = None) -> Config:
    """Read, interpolate and validate a config file; every failure is a `ConfigError`.
    `connections` reads the Airflow connections the file names (`airflow_conns`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found (create one with `trackline init`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"config file {p} cannot be read: {reason}") from None
    return parse_config(text, source=str(p), base_dir=p.parent, connections=connections)


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    connections: Connections = None,
) -> Config:
    """Validate config text. `base_dir` (the config file's folder) anchors relative paths;
    `connections` reads the Airflow connections it names (None: outside Airflow, where a
    section naming one is an error; ``"defer"``: kept unread)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(
            f"{source}:{line}: the top level must be a mapping (sources:, warehouse:, …)"
        )
    dup = _duplicate_keys(node)
    if dup:
        loc, line = dup
        raise ConfigError(f"{source}:{line}: {_dotted(loc)}: key appears twice")
    env_errors: list[tuple[Loc, str]] = []
    secrets: set[str] = set()
    data = _interpolate(raw, (), env_errors, secrets)
    if not env_errors:
        merge(data, connections, env_errors)  # the passwords it adds are scrubbed below
    _literal_secrets(data, secrets)
    if env_errors:
        raise ConfigError(
            "\n".join(
                f"{source}:{_line_of(node, loc) or 1}: {_dotted(loc)}: {msg}"
                for loc, msg in env_errors[:_MAX_ERRORS]
            )
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        lines = []
        for err in errors[:_MAX_ERRORS]:
            loc = tuple(err["loc"])
            cause = (err.get("ctx") or {}).get("error")
            msg = err["msg"].removeprefix("Value error, ")
            if isinstance(cause, LocatedError):
                refs = [_clean_loc(data, (*loc, *r)) for r in cause.refs]
                msg = cause.with_lines([_line_of(node, r) for r in refs])
                loc = (*loc, *cause.loc)
            loc = _clean_loc(data, loc)
            if err["type"] == "invalid_type" and isinstance(_at(data, loc), dict):
                if "type" in _at(data, loc):
                    loc = (*loc, "type")
            line = _line_of(node, loc) or 1
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see `trackline init` for every key)"
            lines.append(f"{source}:{line}: {_dotted(loc)}: {_scrub(msg, secrets)}")
        if len(errors) > _MAX_ERRORS:
            lines.append(f"(and {len(errors) - _MAX_ERRORS} more)")
        raise ConfigError("\n".join(lines)) from None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


_UNION_TAGS = {"mysql", "sqlite", "duckdb", "postgres", "redshift"}


def _anchor(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_paths(config: Config, base: Path) -> Config:
    """Relative file paths in the config (given or default) are relative to the config file."""
    sources: dict[str, Any] = {
        name: src.model_copy(update={"path": _anchor(src.path, base)})
        if isinstance(src, SQLiteSource)
        else src
        for name, src in config.sources.items()
    }
    warehouse = config.warehouse
    if isinstance(warehouse, DuckDBWarehouse):
        warehouse = warehouse.model_copy(update={"path": _anchor(warehouse.path, base)})
    stage = config.stage
    if "://" not in stage.url:
        stage = stage.model_copy(update={"url": str(_anchor(Path(stage.url), base))})
    return config.model_copy(update={"sources": sources, "warehouse": warehouse, "stage": stage})
