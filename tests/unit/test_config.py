"""The config file: what parses, what is refused, and how refusals point at the problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from trackline.config import (
    Config,
    DuckDBWarehouse,
    MySQLSource,
    PostgresWarehouse,
    SQLiteSource,
    load_config,
    parse_config,
)
from trackline.errors import ConfigError, TracklineError

SECRET = "Zq9-very-secret-pw-417"

FULL = """\
# trackline config used by the tests
sources:
  kuaisong:
    type: mysql
    host: ${KS_HOST:-10.0.0.5}
    port: 3307
    user: etl
    password: ${KS_PASSWORD}
    database: kuaisong
  uniods:
    type: mysql
    host: legacy-dw.internal
    user: reader
    password: ${UNIODS_PASSWORD:-}
    database: settlement_ods
    innodb_hold: false
warehouse:
  type: postgres
  host: wh.internal
  database: analytics
  password: ${WH_PASSWORD}
  lock_timeout_seconds: 30
stage:
  url: s3://tl-stage/prod
  endpoint_url: http://minio:9000
  region: us-east-1
  access_key_id: ${S3_KEY}
  secret_access_key: ${S3_SECRET}
  retention_days: 3
defaults:
  lag_seconds: 120
  batch_size: 50000
tables:
  - name: uni_tracking_info
    source: uniods
    cdc: {strategy: hybrid, cursor: update_time, id: id}
    write_mode: merge
    lookback_seconds: 600
    primary_key: [id]
  - name: ks_order
    source: kuaisong
    cdc:
      strategy: timestamp
      cursor: updated_at
    write_mode: merge
  - name: ks_scan_event
    source: kuaisong
    cdc: {strategy: id, id: id}
  - name: ks_city
    source: kuaisong
    cdc: {strategy: full}
  - name: ks_order_with_city
    source: kuaisong
    query: SELECT o.id, o.updated_at, c.name FROM ks_order o JOIN ks_city c ON c.id = o.city_id
    cdc: {strategy: hybrid, cursor: updated_at, id: id}
    target_schema: ods
marts:
  - name: order_tracking
    key: order_id
    schema: settlement_ods
    retention_seconds: 86400
    anchor:
      table: mart_uni_tracking_info
      source: uni_tracking_info
      time: update_time
    followers:
      - table: mart_scan_event
        source: ks_scan_event
        kind: events
        time: scan_time
        history_name: scan
      - table: mart_order
        source: ks_order
        kind: one_per_key
        history_name: ord
"""

MINIMAL = """\
sources:
  kuaisong:
    type: mysql
    database: kuaisong
tables:
  - name: orders
    cdc: {strategy: id, id: id}
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KS_HOST", "UNIODS_PASSWORD", "TL_UNSET_VAR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KS_PASSWORD", SECRET)
    monkeypatch.setenv("WH_PASSWORD", "wh-" + SECRET)
    monkeypatch.setenv("S3_KEY", "AKIA" + SECRET)
    monkeypatch.setenv("S3_SECRET", "s3-" + SECRET)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the `occurrence`-th line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not in the test text"
    return hits[occurrence - 1]


def config_error(text: str, source: str = "cfg.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source=source)
    message = str(info.value)
    assert SECRET not in message
    return message


# --------------------------------------------------------------------------- valid configs


def test_full_config_parses() -> None:
    cfg = parse_config(FULL, source="trackline.yaml")
    assert isinstance(cfg, Config)

    ks, uniods = cfg.sources["kuaisong"], cfg.sources["uniods"]
    assert isinstance(ks, MySQLSource) and isinstance(uniods, MySQLSource)
    assert (ks.host, ks.port, ks.user, ks.database) == ("10.0.0.5", 3307, "etl", "kuaisong")
    assert ks.password.get_secret_value() == SECRET
    assert (uniods.host, uniods.port, uniods.database) == (
        "legacy-dw.internal",
        3306,
        "settlement_ods",
    )
    assert uniods.password.get_secret_value() == ""
    assert uniods.innodb_hold is False

    assert isinstance(cfg.warehouse, PostgresWarehouse)
    assert cfg.warehouse.database == "analytics"
    assert cfg.warehouse.password.get_secret_value() == "wh-" + SECRET
    assert cfg.warehouse.lock_timeout_seconds == 30

    assert cfg.stage.url == "s3://tl-stage/prod"
    assert cfg.stage.endpoint_url == "http://minio:9000"
    assert cfg.stage.access_key_id is not None and cfg.stage.secret_access_key is not None
    assert cfg.stage.secret_access_key.get_secret_value() == "s3-" + SECRET
    assert cfg.stage.retention_days == 3
    assert (cfg.defaults.lag_seconds, cfg.defaults.batch_size) == (120, 50000)

    uti = cfg.table("uni_tracking_info")
    assert (uti.cdc.strategy, uti.cdc.cursor, uti.cdc.id) == ("hybrid", "update_time", "id")
    assert (uti.write_mode, uti.lookback_seconds, uti.primary_key) == ("merge", 600, ["id"])
    assert uti.target == "uni_tracking_info"
    assert cfg.source_for(uti) == ("uniods", uniods)

    order = cfg.table("ks_order")
    assert (order.cdc.strategy, order.cdc.cursor, order.cdc.id) == ("timestamp", "updated_at", None)
    assert cfg.source_for(order) == ("kuaisong", ks)

    scans = cfg.table("ks_scan_event")
    assert (scans.cdc.strategy, scans.write_mode, scans.target) == (
        "id",
        "append",
        "ks_scan_event_raw",
    )

    city = cfg.table("ks_city")
    assert (city.cdc.strategy, city.write_mode, city.target) == ("full", "replace", "ks_city")

    joined = cfg.table("ks_order_with_city")
    assert joined.query is not None and joined.query.startswith("SELECT o.id")
    assert joined.target_schema == "ods"

    (group,) = cfg.marts
    assert (group.name, group.key, group.schema_, group.retention_seconds) == (
        "order_tracking",
        "order_id",
        "settlement_ods",
        86400,
    )
    assert group.anchor.source == "uni_tracking_info"
    assert [(f.table, f.kind, f.source) for f in group.followers] == [
        ("mart_scan_event", "events", "ks_scan_event"),
        ("mart_order", "one_per_key", "ks_order"),
    ]


def test_unknown_table_lookup_is_a_config_error() -> None:
    cfg = parse_config(FULL)
    with pytest.raises(ConfigError, match="nope"):
        cfg.table("nope")


def test_minimal_config_defaults() -> None:
    cfg = parse_config(MINIMAL)
    assert isinstance(cfg.warehouse, DuckDBWarehouse)
    assert cfg.stage.url == "./stage"
    (table,) = cfg.tables
    assert cfg.source_for(table)[0] == "kuaisong"  # the only source needs no `source:`
    assert table.target == "orders_raw"


def test_duckdb_warehouse_and_sqlite_source() -> None:
    cfg = parse_config(
        textwrap.dedent(
            """\
            sources:
              demo: {type: sqlite, path: /data/demo.db}
            warehouse: {type: duckdb, path: /data/wh.duckdb, lock_timeout_seconds: 2}
            """
        )
    )
    assert isinstance(cfg.sources["demo"], SQLiteSource)
    assert cfg.sources["demo"].path == Path("/data/demo.db")
    assert isinstance(cfg.warehouse, DuckDBWarehouse)
    assert cfg.warehouse.path == Path("/data/wh.duckdb")


def test_type_may_be_left_out() -> None:
    """`type:` defaults to mysql for a source and duckdb for the warehouse."""
    cfg = parse_config("sources:\n  s: {database: d}\nwarehouse: {path: /x/wh.duckdb}\n")
    assert isinstance(cfg.sources["s"], MySQLSource)
    assert isinstance(cfg.warehouse, DuckDBWarehouse)
    assert cfg.warehouse.path == Path("/x/wh.duckdb")


def test_empty_file_needs_sources() -> None:
    message = config_error("")
    assert message.startswith("cfg.yaml:1: sources:")


# --------------------------------------------------------------------------- where errors point


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("tables:", "tabels:", "tabels"),
        ("    port: 3307", "    prot: 3307", "sources.kuaisong.prot"),
        ("  lock_timeout_seconds: 30", "  lock_timeout: 30", "warehouse.lock_timeout"),
        ("  retention_days: 3", "  retention_day: 3", "stage.retention_day"),
        ("      cursor: updated_at", "      cursr: updated_at", "tables[1].cdc.cursr"),
        ("    lookback_seconds: 600", "    look_back: 600", "tables[0].look_back"),
        ("      time: update_time", "      tme: update_time", "marts[0].anchor.tme"),
        ("        history_name: ord", "        history: ord", "marts[0].followers[1].history"),
    ],
)
def test_unknown_key_names_path_and_line(old: str, new: str, path: str) -> None:
    text = FULL.replace(old, new)
    assert text != FULL
    message = config_error(text, source="conf/trackline.yaml")
    line = line_of(text, new.strip())
    assert f"conf/trackline.yaml:{line}: {path}: unknown key" in message


def test_unknown_key_in_a_source_named_like_a_type() -> None:
    """A source called `mysql` must not be confused with the union tag pydantic reports."""
    text = "sources:\n  mysql:\n    type: mysql\n    database: d\n    hots: x\n"
    assert "cfg.yaml:5: sources.mysql.hots: unknown key" in config_error(text)


def test_several_errors_are_all_reported() -> None:
    text = FULL.replace("    port: 3307", "    prot: 3307").replace("  region:", "  regoin:")
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, 'prot:')}: sources.kuaisong.prot" in message
    assert f"cfg.yaml:{line_of(text, 'regoin:')}: stage.regoin" in message


def test_wrong_value_type_names_key_and_line() -> None:
    text = FULL.replace("    port: 3307", "    port: [3307]")
    assert f"cfg.yaml:{line_of(text, 'port: [3307]')}: sources.kuaisong.port:" in config_error(text)


def test_unknown_source_type_names_type_key() -> None:
    text = FULL.replace("    type: mysql", "    type: oracle", 1)
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, 'type: oracle')}: sources.kuaisong.type:" in message
    assert "mysql" in message and "sqlite" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("sources:\n  a: {type: mysql\n", 3),  # unclosed flow mapping
        ("sources:\n  a:\n    type: mysql\n   database: x\n", 4),  # bad indentation
        ("sources:\n  a:\n\ttype: mysql\n", 3),  # tab
        ('sources:\n  a:\n    database: "x\n', 4),  # unterminated string
    ],
)
def test_malformed_yaml_names_line(text: str, line: int) -> None:
    message = config_error(text)
    assert message.startswith(f"cfg.yaml:{line}: malformed YAML")


def test_top_level_must_be_a_mapping() -> None:
    assert config_error("- a\n- b\n").startswith("cfg.yaml:1:")


def test_duplicate_key_rejected_with_line() -> None:
    text = MINIMAL + "tables:\n  - name: other\n    cdc: {strategy: full}\n"
    message = config_error(text)
    assert message.startswith(f"cfg.yaml:{line_of(text, 'tables:', 2)}: tables: key appears twice")


def test_errors_are_config_errors_with_exit_code_2() -> None:
    with pytest.raises(TracklineError) as info:
        parse_config("nonsense: 1\n")
    assert isinstance(info.value, ConfigError)
    assert info.value.exit_code == 2
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --------------------------------------------------------------------------- ${VAR} interpolation


def test_env_var_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(FULL)
    assert cfg.sources["kuaisong"].host == "10.0.0.5"  # ${KS_HOST:-10.0.0.5}, unset

    monkeypatch.setenv("KS_HOST", "db7.internal")
    monkeypatch.setenv("UNIODS_PASSWORD", "u-pw")
    cfg = parse_config(FULL)
    assert cfg.sources["kuaisong"].host == "db7.internal"
    uniods = cfg.sources["uniods"]
    assert isinstance(uniods, MySQLSource)
    assert uniods.password.get_secret_value() == "u-pw"


def test_empty_env_var_takes_the_default_like_a_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KS_HOST", "")
    assert parse_config(FULL).sources["kuaisong"].host == "10.0.0.5"


def test_env_var_inside_a_string_and_as_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_DC", "eu1")
    monkeypatch.setenv("TL_PORT", "3310")
    cfg = parse_config(
        "sources:\n"
        "  s:\n"
        "    host: db.${TL_DC}.${TL_ZONE:-example}.com\n"
        "    port: ${TL_PORT}\n"
        "    database: d\n"
    )
    src = cfg.sources["s"]
    assert isinstance(src, MySQLSource)
    assert (src.host, src.port) == ("db.eu1.example.com", 3310)


def test_env_value_is_not_parsed_as_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KS_PASSWORD", "a: b # {c} 'd\"")
    cfg = parse_config(FULL)
    assert cfg.sources["kuaisong"].password.get_secret_value() == "a: b # {c} 'd\""  # type: ignore[union-attr]


def test_missing_env_var_names_key_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WH_PASSWORD")
    message = config_error(FULL)
    line = line_of(FULL, "${WH_PASSWORD}")
    assert f"cfg.yaml:{line}: warehouse.password:" in message
    assert "WH_PASSWORD" in message
    for value in (SECRET, "wh-", "s3-", "AKIA"):
        assert value not in message


def test_missing_env_var_in_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINIMAL.replace(
        "tables:",
        "tables:\n  - name: t2\n    primary_key: [id, '${TL_UNSET_VAR}']\n"
        "    cdc: {strategy: full}",
    )
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, 'TL_UNSET_VAR')}: tables[0].primary_key[1]:" in message
    assert "TL_UNSET_VAR" in message


# --------------------------------------------------------------------------- secrets


def test_secrets_never_in_repr() -> None:
    cfg = parse_config(FULL)
    for text in (repr(cfg), str(cfg), repr(cfg.sources), repr(cfg.warehouse), repr(cfg.stage)):
        assert SECRET not in text
    assert "**********" in repr(cfg.sources["kuaisong"])


def test_secret_not_in_error_elsewhere_in_file() -> None:
    text = FULL.replace("    port: 3307", "    port: many")
    assert "sources.kuaisong.port" in config_error(text)


def test_literal_password_not_in_any_error() -> None:
    text = FULL.replace("${KS_PASSWORD}", f'"{SECRET}"').replace("user: etl", "user: [etl]")
    assert "sources.kuaisong.user" in config_error(text)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    database: kuaisong", "    database: ${KS_PASSWORD}"),  # secret in an identifier
        ("    type: mysql", "    type: ${KS_PASSWORD}"),  # secret as the union tag
        ("    port: 3307", "    port: ${KS_PASSWORD}"),  # secret as a number
        ("    port: 3307", '    port: "${KS_PASSWORD}"'),
        ("  retention_days: 3", "  retention_days: ${S3_SECRET}"),
    ],
)
def test_env_secret_used_in_the_wrong_place_is_not_echoed(old: str, new: str) -> None:
    text = FULL.replace(old, new, 1)
    assert text != FULL
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, new.strip())}:" in message
    assert "s3-" not in message


def test_secret_not_in_malformed_yaml_error() -> None:
    text = f"sources:\n  a:\n    password: {SECRET}\n    database: x: y\n"
    assert config_error(text).startswith("cfg.yaml:4: malformed YAML")


# --------------------------------------------------------------------------- identifiers


BAD_IDENTIFIERS = ["ord'ers", "orders;drop", "my orders", "my-orders", 'or"ders', "1orders", ""]


@pytest.mark.parametrize("bad", BAD_IDENTIFIERS)
@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("tables:\n  - name: {q}\n    cdc: {{strategy: full}}\n", "tables[0].name"),
        (
            "tables:\n  - name: t\n    target_schema: {q}\n    cdc: {{strategy: full}}\n",
            "tables[0].target_schema",
        ),
        (
            "tables:\n  - name: t\n    target_table: {q}\n    cdc: {{strategy: full}}\n",
            "tables[0].target_table",
        ),
        (
            "tables:\n  - name: t\n    cdc:\n      strategy: timestamp\n      cursor: {q}\n",
            "tables[0].cdc.cursor",
        ),
        (
            "tables:\n  - name: t\n    primary_key:\n      - id\n      - {q}\n"
            "    cdc: {{strategy: full}}\n",
            "tables[0].primary_key[1]",
        ),
        ("state_schema: {q}\n", "state_schema"),
    ],
)
def test_bad_identifier_rejected_naming_key(template: str, path: str, bad: str) -> None:
    quoted = '"' + bad.replace('"', '\\"') + '"'
    tail = template.format(q=quoted)
    text = "sources:\n  ks:\n    database: kuaisong\n" + tail
    message = config_error(text)
    last_line = [ln for ln in tail.splitlines() if quoted in ln][0]
    assert f"cfg.yaml:{line_of(text, last_line)}: {path}:" in message
    assert "plain identifier" in message


@pytest.mark.parametrize("bad", ["ks-prod", "k s", "k;s", "k's"])
def test_bad_source_name_rejected(bad: str) -> None:
    message = config_error(f'sources:\n  "{bad}":\n    database: kuaisong\n')
    assert message.startswith(f"cfg.yaml:2: sources.{bad}:")
    assert "plain identifier" in message


def test_bad_mart_schema_and_source_database_rejected() -> None:
    text = FULL.replace("    schema: settlement_ods", "    schema: settlement-ods").replace(
        "    database: kuaisong", "    database: kuai song"
    )
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, 'settlement-ods')}: marts[0].schema:" in message
    assert f"cfg.yaml:{line_of(text, 'kuai song')}: sources.kuaisong.database:" in message


def test_plain_identifiers_accepted() -> None:
    text = MINIMAL.replace("name: orders", "name: _Orders_2024$x")
    assert parse_config(text).tables[0].name == "_Orders_2024$x"


# --------------------------------------------------------------------------- table rules


@pytest.mark.parametrize(
    ("cdc", "needs"),
    [
        ("{strategy: hybrid, id: id}", "cursor"),
        ("{cursor: update_time, id: id, strategy: hybrid}", None),
        ("{strategy: hybrid, cursor: update_time}", "id"),
        ("{strategy: timestamp}", "cursor"),
        ("{strategy: id}", "id"),
        ("{cursor: update_time}", "id"),  # hybrid is the default strategy
    ],
)
def test_strategy_needs_its_columns(cdc: str, needs: str | None) -> None:
    text = MINIMAL.replace("{strategy: id, id: id}", cdc)
    if needs is None:
        parse_config(text)
        return
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, 'cdc:')}: tables[0].cdc:" in message
    assert f"`{needs}`" in message


def test_table_needs_cdc() -> None:
    text = "sources:\n  ks: {database: k}\ntables:\n  - name: t\n"
    assert "cfg.yaml:4: tables[0].cdc: Field required" in config_error(text)


def test_unknown_strategy_rejected() -> None:
    text = MINIMAL.replace("strategy: id", "strategy: binlog")
    assert f"cfg.yaml:{line_of(text, 'binlog')}: tables[0].cdc.strategy:" in config_error(text)


@pytest.mark.parametrize("mode", ["append", "replace", None])
def test_lookback_needs_merge(mode: str | None) -> None:
    extra = "    lookback_seconds: 60\n" + (f"    write_mode: {mode}\n" if mode else "")
    text = MINIMAL + extra
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, '- name: orders')}: tables[0]:" in message
    assert "write_mode: merge" in message


def test_lookback_with_merge_accepted() -> None:
    cfg = parse_config(MINIMAL + "    lookback_seconds: 60\n    write_mode: merge\n")
    assert cfg.tables[0].lookback_seconds == 60


def test_negative_numbers_rejected() -> None:
    text = MINIMAL + "    lookback_seconds: -1\n    write_mode: merge\n"
    assert f"cfg.yaml:{line_of(text, 'lookback')}: tables[0].lookback_seconds:" in config_error(
        text
    )


def test_table_with_unknown_source_rejected() -> None:
    text = FULL.replace(
        "    source: kuaisong\n    cdc: {strategy: id",
        "    source: kuaisong2\n    cdc: {strategy: id",
    )
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, 'source: kuaisong2')}: tables[2].source:" in message
    assert "'kuaisong2'" in message and "kuaisong" in message and "uniods" in message


def test_table_without_source_when_several_rejected() -> None:
    text = FULL.replace(
        "    source: kuaisong\n    cdc: {strategy: full}", "    cdc: {strategy: full}"
    )
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, '- name: ks_city')}: tables[3]:" in message
    assert "source" in message


def test_duplicate_table_names_rejected() -> None:
    text = FULL.replace("- name: ks_city", "- name: ks_order")
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, '- name: ks_order', 2)}: tables[3].name:" in message


def test_two_entries_writing_one_target_are_refused_naming_both() -> None:
    """A `query:` entry writing the table another entry writes (the obvious way to build a
    union) would share that table's watermark: the second entry loads nothing older than the
    first one's cursor. Refused at load, with both entries and their lines."""
    text = FULL.replace(
        "    target_schema: ods\n", "    target_schema: public\n    target_table: ks_order\n"
    )
    message = config_error(text)
    second, first = line_of(text, "- name: ks_order_with_city"), line_of(text, "- name: ks_order")
    assert message.startswith(f"cfg.yaml:{line_of(text, 'target_table: ks_order')}: ")
    assert f"tables[4] ('ks_order_with_city', line {second})" in message
    assert f"tables[1] ('ks_order', line {first})" in message
    assert "both load public.ks_order" in message and "consolidation job" in message


def test_same_table_name_in_two_schemas_is_two_targets() -> None:
    text = FULL.replace(
        "    target_schema: ods\n", "    target_schema: ods\n    target_table: ks_order\n"
    )
    cfg = parse_config(text)
    assert [(t.target_schema, t.target) for t in cfg.tables][1::3] == [
        ("public", "ks_order"),
        ("ods", "ks_order"),
    ]
    # an append entry's default target is `<name>_raw`
    two = (
        MINIMAL + "  - name: copy\n    cdc: {strategy: id, id: id}\n    target_table: orders_raw\n"
    )
    assert "both load public.orders_raw" in config_error(two)


def test_overrides_apply_to_every_table_and_are_checked() -> None:
    """--source-db / --target-schema (Config.overridden): every table moves; the option must
    be a plain identifier; moving two same-named targets into one schema is refused."""
    text = FULL.replace(
        "    target_schema: ods\n", "    target_schema: ods\n    target_table: ks_order\n"
    )
    cfg = parse_config(text)
    moved = cfg.overridden("shard_2", None)
    assert {t.source_db for t in moved.tables} == {"shard_2"}
    assert [t.target_schema for t in moved.tables] == [t.target_schema for t in cfg.tables]
    assert cfg.overridden(None, None) is cfg
    with pytest.raises(ConfigError, match="--source-db: 'a;b' is not a plain identifier"):
        cfg.overridden("a;b", None)
    with pytest.raises(ConfigError, match="with --target-schema x: .*both load x.ks_order"):
        cfg.overridden(None, "x")


def test_mart_refers_to_unknown_table() -> None:
    text = FULL.replace("        source: ks_scan_event", "        source: ks_scans")
    message = config_error(text)
    assert f"cfg.yaml:{line_of(text, 'source: ks_scans')}: marts[0].followers[0].source:" in message


def test_events_follower_needs_time() -> None:
    text = FULL.replace("        time: scan_time\n", "")
    message = config_error(text)
    assert (
        f"cfg.yaml:{line_of(text, '- table: mart_scan_event')}: marts[0].followers[0]:" in message
    )


# --------------------------------------------------------------------------- files and paths


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_relative_paths_resolved_against_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_file = _write(
        tmp_path / "conf" / "trackline.yaml",
        textwrap.dedent(
            """\
            sources:
              demo: {type: sqlite, path: data/demo.db}
              abs: {type: sqlite, path: /srv/abs.db}
            warehouse: {type: duckdb, path: ../wh/warehouse.duckdb}
            stage: {url: stage-files}
            """
        ),
    )
    monkeypatch.chdir(tmp_path)  # the process runs somewhere else than the config
    cfg = load_config(Path("conf") / "trackline.yaml")
    conf = cfg_file.parent.resolve()
    demo = cfg.sources["demo"]
    assert isinstance(demo, SQLiteSource) and demo.path == conf / "data" / "demo.db"
    assert cfg.sources["abs"].path == Path("/srv/abs.db")  # type: ignore[union-attr]
    assert isinstance(cfg.warehouse, DuckDBWarehouse)
    assert cfg.warehouse.path == tmp_path.resolve() / "wh" / "warehouse.duckdb"
    assert cfg.stage.url == str(conf / "stage-files")


def test_default_paths_are_also_next_to_the_config(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path / "c" / "t.yaml", MINIMAL))
    assert isinstance(cfg.warehouse, DuckDBWarehouse)
    assert cfg.warehouse.path == (tmp_path / "c" / "trackline.duckdb").resolve()
    assert cfg.stage.url == str((tmp_path / "c" / "stage").resolve())


def test_s3_stage_url_and_absolute_paths_untouched(tmp_path: Path) -> None:
    text = MINIMAL + "warehouse: {path: /abs/wh.duckdb}\nstage: {url: 's3://b/p'}\n"
    cfg = load_config(_write(tmp_path / "t.yaml", text))
    assert cfg.warehouse.path == Path("/abs/wh.duckdb")  # type: ignore[union-attr]
    assert cfg.stage.url == "s3://b/p"


def test_env_var_path_resolved_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_WH_NAME", "prod.duckdb")
    cfg = load_config(_write(tmp_path / "t.yaml", MINIMAL + "warehouse: {path: '${TL_WH_NAME}'}\n"))
    assert cfg.warehouse.path == tmp_path.resolve() / "prod.duckdb"  # type: ignore[union-attr]


def test_parse_without_base_dir_keeps_relative_paths() -> None:
    cfg = parse_config(MINIMAL + "warehouse: {path: wh.duckdb}\n")
    assert cfg.warehouse.path == Path("wh.duckdb")  # type: ignore[union-attr]


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)  # a directory
    bad = _write(tmp_path / "bad.yaml", MINIMAL + "  oops: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(f"{bad}:")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "quality: {reconcile_tables: [nope]}",
            r"quality\.reconcile_tables\[0\]: 'nope' is not a table",
        ),
        (
            "quality: {reconcile_tables: [orders]}",
            r"reconcile_tables\[0\]: table 'orders' has write_mode 'append'",
        ),
    ],
)
def test_reconcile_tables_must_be_merge_tables_of_the_config(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(MINIMAL + extra + "\n")
    merged = MINIMAL.replace(
        "cdc: {strategy: id, id: id}",
        "cdc: {strategy: id, id: id}\n    write_mode: merge\n    primary_key: [id]",
    )
    cfg = parse_config(merged + "quality: {reconcile_tables: [orders]}\n")
    assert cfg.quality.reconcile_tables == ["orders"]


@pytest.mark.parametrize(
    "host", ["db@evil.example/x", "db host", "db?ssl=false", "db#1", "db:3307", "::1"]
)
def test_a_mysql_host_that_would_change_the_readers_url_is_refused(host: str) -> None:
    """The host goes into the data reader's connection URL: '@', '/', '?', '#', ':' or a
    space there would change what it connects to (or how); IPv6 goes in brackets."""
    text = MINIMAL.replace("    database: kuaisong", f"    host: '{host}'\n    database: kuaisong")
    message = config_error(text)
    assert "sources.kuaisong.host" in message


@pytest.mark.parametrize(
    "host", ["db.example.com", "10.0.0.7", "[::1]", "[2001:db8::7]", "my-db_2"]
)
def test_ordinary_hosts_are_accepted(host: str) -> None:
    text = MINIMAL.replace("    database: kuaisong", f"    host: '{host}'\n    database: kuaisong")
    assert parse_config(text).sources["kuaisong"].host == host  # type: ignore[union-attr]


def test_python_dash_m_trackline_runs_the_cli() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "trackline", "--help"], capture_output=True, text=True, check=True
    )
    assert "trackline" in out.stdout and "sync" in out.stdout
