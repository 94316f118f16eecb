"""The staged files as COPY input, for engines that load from them (Redshift).

- `manifest_urls` / `staged_footer`: what a COPY manifest lists, and the schema, row count
  and layout its Parquet files hold (read from the footers, not the data);
- `write_transient` / `discard`: a batch that is not what was staged (filtered after staging,
  values cut, types cast) is written under ``<stage>/_trackline_tmp/`` with a manifest of its
  own, loaded, and deleted. A leftover (a crash in between) is pruned with the stage.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from trackline.errors import StageError, WarehouseError
from trackline.extract.types import is_json
from trackline.stage import arrow_schema, parquet, parquet_form

if TYPE_CHECKING:
    from trackline.stage import Stage

TRANSIENT_PREFIX = "_trackline_tmp"


def columns(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    """What COPY by position depends on: names and types, in order (not nullability; whether
    text is a JSON document is `json_names`)."""
    return [(f.name, f.type) for f in schema]


def json_names(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if is_json(f)]


def _path(stage: Stage, uri: str) -> str:
    return uri.removeprefix(stage.scheme)


def manifest_urls(stage: Stage, manifest: str) -> list[str]:
    try:
        doc = json.loads(stage.read_bytes(manifest))
        return [str(e["url"]) for e in doc["entries"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageError(f"cannot read the COPY manifest {manifest}: {exc}") from None


@dataclass(frozen=True)
class Footer:
    """What a manifest's Parquet footers say (read from the footers, not the data)."""

    schema: pa.Schema
    rows: int
    layout_problems: tuple[str, ...]
    """How the files differ from the staged layout (`trackline.stage.parquet`), e.g. staged by
    an earlier version: nothing when they are in it."""


def staged_schema(stage: Stage, manifest: str) -> tuple[pa.Schema, int]:
    """The schema the manifest's files share, and their total row count."""
    footer = staged_footer(stage, manifest)
    return footer.schema, footer.rows


def staged_footer(stage: Stage, manifest: str) -> Footer:
    schema: pa.Schema | None = None
    rows = 0
    problems: list[str] = []
    for url in manifest_urls(stage, manifest):
        try:
            with stage.fs.open_input_file(_path(stage, url)) as f:
                meta = parquet.open_file(f)
                file_schema = arrow_schema(parquet.arrow_schema(meta))
                rows += meta.metadata.num_rows
                problems += [p for p in parquet.layout_problems(meta.metadata) if p not in problems]
        except (OSError, pa.ArrowInvalid) as exc:
            raise StageError(f"cannot read staged file {url}: {exc}") from None
        if schema is not None and columns(schema) != columns(file_schema):
            raise WarehouseError(f"{manifest}: its files do not share one schema")
        schema = file_schema
    if schema is None:
        raise StageError(f"the COPY manifest {manifest} lists no files")
    return Footer(schema, rows, tuple(problems))


def write_transient(stage: Stage, data: pa.Table) -> tuple[str, list[str]]:
    """Write `data` + a COPY manifest (with ``meta.content_length``); return the manifest URI
    and the URIs to `discard` once loaded."""
    base = stage.uri(f"{stage.root}/{TRANSIENT_PREFIX}/{uuid.uuid4().hex}")
    data_uri, manifest_uri = f"{base}.parquet", f"{base}.manifest"
    buf = io.BytesIO()
    parquet.write(parquet_form(data), buf)
    payload = buf.getvalue()
    meta = {"content_length": len(payload), "record_count": data.num_rows}
    manifest = {"entries": [{"url": data_uri, "mandatory": True, "meta": meta}]}
    _write(stage, data_uri, payload)
    _write(stage, manifest_uri, json.dumps(manifest).encode())
    return manifest_uri, [data_uri, manifest_uri]


def discard(stage: Stage, uris: list[str]) -> None:
    for uri in uris:
        with contextlib.suppress(OSError):
            stage.fs.delete_file(_path(stage, uri))


def _write(stage: Stage, uri: str, payload: bytes) -> None:
    path = _path(stage, uri)
    try:
        if not stage.is_s3:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with stage.fs.open_output_stream(path) as out:  # S3: one PUT or a multipart upload
            out.write(payload)
    except OSError as exc:
        raise StageError(f"cannot write {uri}: {exc}") from None
