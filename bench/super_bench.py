"""What JSON columns stored as Redshift SUPER cost per batch, as ratios to the Parquet write
every batch pays anyway.

One batch of N rows shaped like a scan event with a JSON document (id, order_id, pathTime,
doc ~ 180 bytes of JSON: an object with a nested array). Steps, interleaved over `--repeat`
rounds in this one process (all are CPU-bound library calls; no server is involved):

- reference: the stage's write of every batch (`trackline.stage.parquet.write`: Parquet 1.0,
  snappy, INT96 timestamps);
- stage with JSON type: the same write through `trackline.stage.parquet_form` (the document
  column as Parquet's JSON logical type, which COPY loads into SUPER);
- SUPER checks: `Redshift.copy_ready` on the marked batch (every document's size, at most
  16 MB, and validity, DuckDB's vectorised `json_valid`);
- VARCHAR checks: `Redshift.copy_ready` on the same batch unmarked (the 65,535-byte limit).

    .venv/bin/python bench/super_bench.py                 # 1,000,000 rows, 3 rounds
    .venv/bin/python bench/super_bench.py --rows 200000 --repeat 5

Prints seconds per step (median of the rounds) and each step's median ratio to the reference
of the same round. Machine load moves absolute times; read the ratios.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable

import pyarrow as pa

from trackline.config import RedshiftWarehouse
from trackline.extract.types import json_field
from trackline.load.redshift import Redshift
from trackline.stage import parquet, parquet_form


def batch(rows: int, marked: bool) -> pa.Table:
    ids = pa.array(range(rows), pa.int64())
    docs = pa.array(
        [
            f'{{"code": {200 + i % 7}, "site": "S{i % 977}", "staff": {i % 5003}, '
            f'"route": [{i % 31}, {i % 17}, "hub-{i % 13}"], "note": "派送中 {i}", '
            f'"ok": {"true" if i % 3 else "false"}, "weight": {i % 1000 / 10}}}'
            for i in range(rows)
        ]
    )
    doc = json_field("doc") if marked else pa.field("doc", pa.string())
    schema = pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("order_id", pa.int64()),
            pa.field("pathTime", pa.int64()),
            doc,
        ]
    )
    return pa.Table.from_arrays(
        [ids, pa.array([i // 7 for i in range(rows)], pa.int64()), ids, docs], schema=schema
    )


def write(table: pa.Table) -> int:
    buf = io.BytesIO()
    parquet.write(table, buf)
    return len(buf.getvalue())


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    plain, marked = batch(args.rows, False), batch(args.rows, True)
    rs = Redshift(RedshiftWarehouse(host="h", user="u", iam_role="default", json_as="super"))
    steps: dict[str, Callable[[], object]] = {
        "reference": lambda: write(plain),
        "stage with JSON type": lambda: write(parquet_form(marked)),
        "SUPER checks": lambda: rs.copy_ready(marked, "bench"),
        "VARCHAR checks": lambda: rs.copy_ready(plain, "bench"),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeat):
        for name, fn in steps.items():
            times[name].append(timed(fn))
    ref = times["reference"]
    print(f"{args.rows:,} rows, doc column {plain.column('doc').nbytes / args.rows:.0f} B/row, "
          f"{args.repeat} rounds, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| step | seconds (median) | ratio to reference (median) |")
    print("| --- | ---: | ---: |")
    for name, ts in times.items():
        ratio = statistics.median(t / r for t, r in zip(ts, ref, strict=True))
        print(f"| {name} | {statistics.median(ts):.3f} | {ratio:.2f} |")
    sizes = (write(plain), write(parquet_form(marked)))
    print(f"Parquet bytes: plain {sizes[0]:,}, JSON type {sizes[1]:,}")


if __name__ == "__main__":
    main()
