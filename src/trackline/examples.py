"""The example config written by `trackline init` (kept valid by a test)."""

EXAMPLE_CONFIG = """\
# trackline config: the order-tracking pipeline plus one generic table.
# Secrets come from environment variables: ${VAR} or ${VAR:-default}.

sources:
  kuaisong:                       # production MySQL
    type: mysql
    host: ${KUAISONG_HOST:-127.0.0.1}
    port: ${KUAISONG_PORT:-3306}
    user: ${KUAISONG_USER:-trackline}
    password: ${KUAISONG_PASSWORD:-}
    database: ${KUAISONG_DATABASE:-kuaisong}  # or --source-db DB on every command
  uniods:                         # legacy MySQL DW (backfill / compare)
    type: mysql
    host: ${UNIODS_HOST:-127.0.0.1}
    user: ${UNIODS_USER:-trackline}
    password: ${UNIODS_PASSWORD:-}
    database: uniods

warehouse:                        # duckdb (embedded), postgres or redshift
  type: duckdb
  path: trackline.duckdb
  # type: postgres
  # host: 127.0.0.1
  # user: trackline
  # password: ${WAREHOUSE_PASSWORD}
  # database: analytics
  # type: redshift                # needs an s3:// stage
  # host: my-cluster.abc123.eu-west-1.redshift.amazonaws.com
  # user: trackline
  # password: ${REDSHIFT_PASSWORD}
  # database: analytics
  # iam_role: arn:aws:iam::123456789012:role/trackline-copy
  # json_as: super                # JSON columns as SUPER documents (default: varchar)

stage:
  url: ./stage                    # or s3://bucket/prefix (credentials from the AWS chain)
  retention_days: 7               # replay buffer

defaults:
  batch_size: 100000
  lag_seconds: 300                # upper bound = source clock - lag
  hold_ceiling_seconds: 3600      # longest an open write transaction may hold the bound
  lock_wait_margin_seconds: 60    # hold from this long before a transaction's InnoDB start
  zero_date: "null"               # 0000-00-00 -> NULL and report (or: error)

tables:
  - name: uni_tracking_info       # one row per order, updated in place
    source: kuaisong
    target_schema: settlement_public
    cdc: {strategy: hybrid, cursor: update_time, id: id}
    dist_key: order_id
    sort_key: [update_time, order_id]
  - name: ecs_order_info          # one row per order, written once
    source: kuaisong
    target_schema: settlement_public
    cdc: {strategy: hybrid, cursor: add_time, id: id}
    # ecs rows change after creation (partner_id, consignee) but have no update time. To
    # re-read, by order_id, the ecs row of every order uni_tracking_info changed in the cycle
    # (its mart row is then replaced when it differs), use instead:
    # cdc: {strategy: follow, cursor: add_time, id: id,
    #       follow: uni_tracking_info, follow_key: order_id}
    # Cost: one indexed lookup per changed order (IN-lists of 10,000 keys; the sync refuses to
    # start without an index on ecs_order_info(order_id)) plus one raw row per changed order.
    dist_key: order_id
  - name: uni_tracking_spath      # scan events, append-only
    source: kuaisong
    target_schema: settlement_public
    cdc: {strategy: hybrid, cursor: pathTime, id: id}
    # Events rewritten in place (is_updated = 1) are read again only by a modified-time
    # cursor; with the mart's `changes: newest` below (cost: each rewrite is one more raw row
    # and a keyed replace, probing the history period of its pathTime when it is archived):
    # cdc: {strategy: hybrid, cursor: time_modified, id: id}
    # Without a modified time: re-read all events of every order uni_tracking_info changed,
    # with the mart's `changes: follow` (cost: all events of each changed order are read and
    # loaded again each cycle, ~10 rows per changed order; index on order_id required):
    # cdc: {strategy: follow, cursor: pathTime, id: id,
    #       follow: uni_tracking_info, follow_key: order_id}
    dist_key: order_id
    sort_key: [pathTime, code, order_id]
  - name: settlement_claim_detail # a generic table, kept one row per key
    source: kuaisong
    target_schema: settlement_public
    cdc: {strategy: hybrid, cursor: update_at, id: ID}
    write_mode: merge
    primary_key: [ID]
  # Dimensions the marts join to: read whole every run (strategy full). scd2 keeps every
  # version (valid_from / valid_to / is_current); replace swaps the snapshot in atomically.
  # Both refuse a snapshot under half the size of the last one (shrink_guard: 0.5).
  - name: partners                # partner_id -> name, country
    source: kuaisong
    target_schema: settlement_dim
    cdc: {strategy: full}
    write_mode: scd2
    scd2: {natural_key: [partner_id], deletes: close}
  - name: staff                   # drivers and couriers (staff_id)
    source: kuaisong
    target_schema: settlement_dim
    cdc: {strategy: full}
    write_mode: scd2
    scd2: {natural_key: [staff_id]}
  - name: warehouses
    source: kuaisong
    target_schema: settlement_dim
    cdc: {strategy: full}
    write_mode: scd2
    scd2: {natural_key: [warehouse_id]}
  - name: status_codes            # labels of state, code and order_status
    source: kuaisong
    target_schema: settlement_dim
    cdc: {strategy: full}
    write_mode: replace
  - name: regions                 # province / city lookup
    source: kuaisong
    target_schema: settlement_dim
    cdc: {strategy: full}
    write_mode: replace

marts:
  - name: order_tracking
    key: order_id
    schema: settlement_ods
    retention_seconds: 15552000   # 6 months, measured on the data's own clock
    history_prefix: hist_
    exceptions_table: order_tracking_exceptions
    anchor:
      table: mart_uni_tracking_info
      source: uni_tracking_info
      time: update_time
      tie_breaker: id
      history_name: uti
      sort_key: [update_time, order_id]   # Redshift SORTKEY of the mart and its history
    followers:
      - table: mart_ecs_order_info
        source: ecs_order_info
        kind: one_per_key
        history_name: ecs
        time: add_time                # an ecs row whose order never got a uti row leaves by it
        on_reactivation: restore
        sort_key: [partner_id, add_time, order_id]
      - table: mart_uni_tracking_spath
        source: uni_tracking_spath
        kind: events
        time: pathTime
        event_key: [id]
        # Rewritten events (pick one, with the matching cdc above):
        # changes: newest             # upsert by event key, greatest time_modified wins
        # version: time_modified
        # changes: follow             # replace an order's events with each re-read
        # event_key: [order_id, traceSeq, pathTime]   # the key a rewrite keeps
        history_name: uts
        sort_key: [pathTime, code, order_id]

consolidations:                   # `trackline consolidate`: N inputs merged into one table by key
  - name: parcel_detail
    target_schema: settlement_public
    target_table: parcel_detail_tool
    key: [source_kind, event_id]  # one row per scan event of either table
    dist_key: order_id
    staging_retention_seconds: 604800   # processed staging rows kept 7 days, then purged
    inputs:                       # every input must produce the same columns and types
      # Each input has its own (time, id) cursor. Prefer a time the database stamps on
      # insert/update where the table has one: a scan written late with an old pathTime is
      # then still read. LEFT JOIN: a scan whose order row arrives later is not lost.
      - name: spath
        source: kuaisong
        query: >-
          SELECT s.id AS event_id, s.order_id, s.code, s.pathTime, u.state
          FROM uni_tracking_spath s LEFT JOIN uni_tracking_info u ON u.order_id = s.order_id
        cdc: {cursor: pathTime, id: event_id}
        constants: {source_kind: spath}
      - name: addon
        source: kuaisong
        query: >-
          SELECT a.id AS event_id, a.order_id, a.code, a.pathTime, u.state
          FROM uni_tracking_addon_spath a LEFT JOIN uni_tracking_info u ON u.order_id = a.order_id
        cdc: {cursor: pathTime, id: event_id}
        constants: {source_kind: addon}

compare:                          # `trackline compare --table uti|ecs|uts`: legacy DW vs the marts
  legacy: uniods                  # the sources: entry of the legacy DW
  sample: 10                      # sample keys shown per kind of difference
  tables:                         # gate: key gap <= count_gap, each column <= mismatch
    - name: uti
      legacy_table: dw_uni_tracking_info
      table: mart_uni_tracking_info   # a mart: its _hist view counts too (archived rows)
      key: [order_id]
      columns: [tno, state, second_delivery_sn, update_time]
      time: update_time           # --date / --since / --until filter on it
      newer_by: update_time       # keys the legacy DW saw change after trackline read them
      count_gap: 0.001            # 0.1 %
      mismatch: 0.01              # 1 % per column
    - name: ecs                   # gap 1: ecs rows changed after creation (no update time
      legacy_table: dw_ecs_order_info   # to read them by): they show as mismatches here
      table: mart_ecs_order_info
      key: [order_id]
      columns: [partner_id, extra_order_sn, zipcode, type, order_status, shipping_status]
      time: add_time
    - name: uts                   # gap 2: scan events updated in the legacy DW (is_updated = 1)
      legacy_table: dw_uni_tracking_spath   # show as mismatches, events only it has as
      table: mart_uni_tracking_spath        # missing in trackline
      key: [order_id, pathTime, code]
      columns: [traceSeq, staff_id, pathInfo]
      time: pathTime
      # normalise: {float_digits: 8, json_columns: [...]}  FLOAT/DOUBLE at 8 significant
      # digits; text columns holding JSON compared with their keys sorted

quality:
  freshness_seconds: 3600         # newest anchor row vs the source clock
  slow_cycle_seconds: 600
  future_seconds: 86400           # rows dated further ahead of the source clock: reported
  reconcile_tables: [settlement_claim_detail]  # missing keys fail `check`; deletions counted
  checks:                         # your own: a SELECT returning the offending rows
    - name: delivered_without_scan
      severity: warning
      key: order_id
      sql: >
        SELECT u.order_id FROM settlement_ods.mart_uni_tracking_info u
        WHERE u.state = 5 AND NOT EXISTS (SELECT 1 FROM settlement_ods.mart_uni_tracking_spath s
        WHERE s.order_id = u.order_id AND s.code = 500)
  alerts:
    log: true
    # webhook: {url: "${TRACKLINE_WEBHOOK_URL}"}
    # smtp: {host: smtp.example.com, user: alerts, password: "${SMTP_PASSWORD}",
    #        sender: trackline@example.com, recipients: [data-team@example.com]}

schedule:                         # `trackline run`
  cycle_minutes: 15
  checks_hour: 3                  # UTC
  maintenance_hour: 4
  consolidation_minutes: 60       # every consolidation, after the cycle, never beside it

backfill:                         # `trackline backfill`: history from the legacy DW
  source: uniods
  chunk: month                    # month | week | day of the legacy table's time column (UTC)
  batch_size: 500000              # rows per staged batch; a chunk commits whole
  workers: 2                      # tables at once
  tables:
    - table: ecs_order_info
      source_table: dw_ecs_order_info
    - table: uni_tracking_info
      source_table: dw_uni_tracking_info
      columns:                    # target column: SQL on the legacy row, in the target's type
        tno: "NULLIF(tno, '')"    # the DW stores '' for NULL
    - table: uni_tracking_spath
      source_table: dw_uni_tracking_spath
"""
