"""dlt's best configuration for this job, run by sync_bench.py in dlt's OWN venv.

`sql_table` with the connectorx backend in streaming mode (``return_type: arrow_stream``, so
memory stays bounded, batch 100k), items written as Parquet and loaded into DuckDB. This file
must not import trackline: it runs under bench/.venv-dlt/bin/python.

argv: mysql_url database table duckdb_path pipelines_dir batch_size
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def main() -> None:
    url, database, table, duck_path, pipelines_dir, batch = sys.argv[1:7]
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ["DLT_TELEMETRY_DISABLED"] = "1"
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    t_import = time.monotonic()
    import dlt
    from dlt.sources.sql_database import sql_table

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    source = sql_table(
        credentials=url.replace("mysql://", "mysql+pymysql://", 1),
        schema=database,
        table=table,
        backend="connectorx",
        chunk_size=int(batch),
        reflection_level="minimal",
        backend_kwargs={"conn": url, "return_type": "arrow_stream", "batch_size": int(batch)},
    )
    pipeline = dlt.pipeline(
        pipeline_name="tl_bench_dlt",
        destination=dlt.destinations.duckdb(duck_path),
        dataset_name="raw",
        pipelines_dir=pipelines_dir,
    )
    info = pipeline.run(source, loader_file_format="parquet", write_disposition="append")
    seconds = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
    import duckdb

    with duckdb.connect(duck_path, read_only=True) as con:
        rows = con.execute(f"SELECT COUNT(*) FROM raw.{table}").fetchone()[0]  # type: ignore[index]
    ru = resource.getrusage
    with open("/proc/self/status") as f:
        hwm = next(int(x.split()[1]) / 1024 for x in f if x.startswith("VmHWM:"))
    print(
        "@@RESULT "
        + json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "import_seconds": t0 - t_import,
                "rows": rows,
                "dlt": dlt.__version__,
                "failed_jobs": info.has_failed_jobs,
                "vm_hwm_mb": hwm,
                "children_peak_rss_mb": ru(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
