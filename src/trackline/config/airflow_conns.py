"""Airflow connections named by the config (``airflow_conn_id:``), merged into it at load time.

A MySQL source, a PostgreSQL or Redshift warehouse and the stage may name an Airflow
connection instead of (or besides) giving their host, user and password::

    warehouse:
      type: postgres
      airflow_conn_id: trackline_warehouse   # host, port, login, password, schema from it

Inside an Airflow task (`trackline.airflow`) the loader asks Airflow for the connection and
fills the section's keys from it; a key the section sets itself (non-empty) wins, so one
connection can serve several pipelines with their own `database`. A MySQL source's
`database` always comes from the file. Outside Airflow there is no connection to read, and
loading such a config is an error naming the key (give the values with ``${VAR}``
references instead). The DAG processor builds the DAGs with the lookup deferred
(``connections="defer"``): it needs the config's shape, not its credentials.

This module does not import Airflow: `trackline.airflow` passes the lookup in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from trackline.errors import ConfigError

ConnectionLookup = Callable[[str], Mapping[str, Any] | None]
"""A connection id → its fields (``host``, ``port``, ``login``, ``password``, ``schema``,
``extra``: a dict), or None when no such connection is defined."""

Connections = ConnectionLookup | Literal["defer"] | None
"""What the loader is given: a lookup (inside an Airflow task); ``"defer"``: validate without
reading any connection, each section keeping its `airflow_conn_id` (DAG parsing); None:
outside Airflow, where a section naming a connection is an error."""

KEY = "airflow_conn_id"

# A connection's fields (``extra.NAME``: a key of its extra JSON) → the section's keys.
DATABASE_FIELDS = {
    "host": "host",
    "port": "port",
    "login": "user",
    "password": "password",
    "schema": "database",
}
S3_FIELDS = {  # Airflow's AWS connection: the key pair as login/password, the rest as extras
    "login": "access_key_id",
    "password": "secret_access_key",
    "extra.region_name": "region",
    "extra.endpoint_url": "endpoint_url",
}
# A source's `database` is not taken from the connection: it is required in the file, since the
# DAGs are built from the file alone (the DAG processor reads no connection) and other keys
# build on it (a table's `source_db`, the backfill's and compare's legacy databases).
SOURCE_FIELDS = {k: v for k, v in DATABASE_FIELDS.items() if k != "schema"}
SOURCE_TYPES = {"mysql": SOURCE_FIELDS}  # a section's `type:` → the fields it takes
WAREHOUSE_TYPES = {"postgres": DATABASE_FIELDS, "redshift": DATABASE_FIELDS}

Loc = tuple[Any, ...]


def sections(data: dict[str, Any]) -> list[tuple[Loc, dict[str, Any], dict[str, str]]]:
    """Every section of the raw config that may name a connection: (its key path, the
    section, the connection fields it takes). Types without credentials (SQLite, DuckDB)
    have none: an `airflow_conn_id` there is rejected as an unknown key."""
    out: list[tuple[Loc, dict[str, Any], dict[str, str]]] = []
    sources = data.get("sources")
    if isinstance(sources, dict):
        for name, src in sources.items():
            if isinstance(src, dict) and src.get("type", "mysql") in SOURCE_TYPES:
                out.append((("sources", name), src, SOURCE_TYPES[src.get("type", "mysql")]))
    wh = data.get("warehouse")
    if isinstance(wh, dict) and wh.get("type", "duckdb") in WAREHOUSE_TYPES:
        out.append((("warehouse",), wh, WAREHOUSE_TYPES[wh.get("type", "duckdb")]))
    stage = data.get("stage")
    if isinstance(stage, dict):
        out.append((("stage",), stage, S3_FIELDS))
    return out


def _field(conn: Mapping[str, Any], name: str) -> Any:
    if name.startswith("extra."):
        extra = conn.get("extra")
        return extra.get(name.removeprefix("extra.")) if isinstance(extra, Mapping) else None
    return conn.get(name)


def merge(
    data: dict[str, Any],
    lookup: Connections,
    errors: list[tuple[Loc, str]],
) -> None:
    """Fill each section that names a connection from it, in place (`data` is the config
    after ``${VAR}`` interpolation), and drop its `airflow_conn_id`. Problems go to `errors`
    as (key path, message); no message holds a value read from a connection."""
    for loc, section, fields in sections(data):
        conn_id = section.get(KEY)
        if conn_id is None:  # absent, or null (a config written from a model dump)
            continue
        where = (*loc, KEY)
        if not isinstance(conn_id, str) or not conn_id.strip():
            errors.append((where, "must be the id of an Airflow connection"))
            continue
        if isinstance(lookup, str):  # "defer"
            continue
        if lookup is None:
            errors.append(
                (
                    where,
                    f"{conn_id!r} is an Airflow connection, read only inside the tasks of "
                    "trackline.airflow's DAGs; outside Airflow, give this section's "
                    f"{', '.join(sorted(set(fields.values())))} itself (secrets as ${{VAR}} "
                    "environment references) and remove the key",
                )
            )
            continue
        conn = lookup(conn_id)
        if conn is None:
            env = f"AIRFLOW_CONN_{conn_id.upper()}"  # Airflow's own spelling of the name
            errors.append(
                (
                    where,
                    f"the Airflow connection {conn_id!r} is not defined (define it in the "
                    f"Airflow UI, with `airflow connections add {conn_id} …`, or as the "
                    f"environment variable {env} on the workers)",
                )
            )
            continue
        for name, key in fields.items():
            value = _field(conn, name)
            if value is None or value == "" or section.get(key) not in (None, ""):
                continue  # the connection leaves it empty, or the section sets it itself
            section[key] = value
        del section[KEY]


def refuse_unread(what: str, config: Any) -> None:
    """Raise `ConfigError` when `config` (a source, warehouse or stage section) still names
    an Airflow connection: its credentials were never read (a config loaded with
    ``connections="defer"``, or built in code), so connecting would use the defaults."""
    conn_id = getattr(config, KEY, None)
    if conn_id:
        raise ConfigError(
            f"{what}.{KEY}: the Airflow connection {conn_id!r} was not read (only the tasks "
            "of trackline.airflow's DAGs read it, when they load the config)"
        )
