"""A population split into parts that processes read on their own: JSON Lines files cut at
line starts into byte ranges, CSV files whole, Parquet files by row group. A part numbers its
rows from 1; the run turns those into the population's lines, which count through the files
in the order given (a folder's or a pattern's files by name), as if they were one file.

Paths are local, or URLs (`s3://...`, `gs://...`) read through fsspec, the filesystem layer
Dask uses, with the package of that store installed (s3fs, gcsfs)."""
from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass
from typing import Iterator

from .population import BadRow, _row, check_columns, check_header, read_csv_stream

PART_BYTES = 16 << 20  # a JSON Lines part: about 80,000 rows of 200 bytes, a few seconds of work
KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Part:
    path: str
    kind: str  # jsonl, csv, parquet
    start: int = 0  # jsonl: the byte range [start, end) whose lines start in it; parquet: the row group
    end: int = 0
    size: int = 0  # bytes of the file this part covers (progress)
    file_size: int = 0  # the file's, when it was cut: a file that changes during a run stops it

    def __str__(self) -> str:
        return os.path.basename(self.path)


def _remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _fs(path: str):
    import fsspec  # noqa: PLC0415 - only for URLs

    return fsspec.core.url_to_fs(path)[0]


def files(paths: list[str]) -> list[str]:
    """The population's files in order: each path a file, a folder (its population files by
    name) or a glob pattern (matches by name); ValueError if one names nothing."""
    out: list[str] = []
    for path in paths:
        if _remote(path):
            fs = _fs(path)
            protocol = path.split("://", 1)[0]
            if not any(c in path for c in "*?[") and not fs.isdir(path):
                out.append(path)
                continue
            found = sorted(fs.glob(path)) if any(c in path for c in "*?[") else sorted(fs.find(path))
            found = [f if "://" in f else f"{protocol}://{f}" for f in found]
        else:
            path = path.removeprefix("file://")
            if any(c in path for c in "*?["):
                found = sorted(glob.glob(path))
            elif os.path.isdir(path):
                found = sorted(os.path.join(path, f) for f in os.listdir(path))
            elif os.path.exists(path):
                out.append(path)  # a file named: read whatever its name (JSON Lines unless .csv or .parquet)
                continue
            else:
                raise ValueError(f"{path}: no such file or folder")
        found = [f for f in found if kind(f) is not None]
        if not found:
            raise ValueError(f"{path}: no population files (.jsonl, .csv, .parquet) there")
        out += found
    twice = [f for f in dict.fromkeys(out) if out.count(f) > 1]
    if twice:  # its contacts would be decided twice in a simulation, and once in a batch
        raise ValueError(f"{twice[0]} is in the population twice (named twice, or named and in a folder named)")
    return out


def kind(path: str) -> str | None:
    return KINDS.get(os.path.splitext(path)[1].lower())


def split(paths: list[str], catalog, part_bytes: int = PART_BYTES) -> list[Part]:
    """The parts of the population's files, in population order. A CSV file's header is
    checked here: a bad column would make every row bad."""
    parts: list[Part] = []
    for path in files(paths):
        k = kind(path) or "jsonl"  # a single file of another name: JSON Lines, as `simulate` always read it
        size = _size(path)
        if k == "csv":
            if _remote(path):
                with open_file(path) as raw:
                    check_header(io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=""),
                                 path, catalog)
            else:
                check_columns(path, catalog)
            parts.append(Part(path, "csv", size=size, file_size=size))
        elif k == "parquet":
            groups = parquet_file(path).metadata.num_row_groups
            parts += [Part(path, "parquet", g, size=size // max(groups, 1), file_size=size) for g in range(groups)]
        else:
            cuts = list(range(0, size, part_bytes)) or [0]
            parts += [Part(path, "jsonl", a, min(a + part_bytes, size), min(part_bytes, size - a), size) for a in cuts]
    return parts


def _size(path: str) -> int:
    return _fs(path).size(path) if _remote(path) else os.path.getsize(path)


def open_file(path: str):
    return _fs(path).open(path, "rb") if _remote(path) else open(path, "rb")


def parquet_file(path: str):
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415 - Parquet only
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pyarrow: pip install 'offerd[parquet]'") from None
    try:
        return pq.ParquetFile(open_file(path))
    except Exception as e:  # pyarrow's own errors: a file that is not Parquet
        raise ValueError(f"{path}: not a readable Parquet file: {e}") from None


def read(part: Part, catalog) -> tuple[Iterator, list[int]]:
    """(items, lines): the part's rows, each (line, text) for JSON Lines (parsed by the
    caller) or a Row or BadRow, lines numbered from 1 in the part; `lines` holds, once the
    items are read, the part's number of lines."""
    lines = [0]
    now = _size(part.path)
    if now != part.file_size:  # rows added or removed since the run began would be missed or counted twice
        raise ValueError(f"{part.path} changed during the run ({part.file_size:,} bytes, now {now:,}): "
                         "run it again on a file that stays as it is")
    if part.kind == "jsonl":
        return _jsonl(part, lines), lines
    if part.kind == "csv":
        return _csv(part, catalog, lines), lines
    return _parquet_rows(part, catalog, lines), lines


def _jsonl(part: Part, lines: list[int]) -> Iterator[tuple[int, str | BadRow]]:
    """The lines that start in [start, end): a line that began before `start` is the
    previous part's, whole."""
    with open_file(part.path) as f:
        f.seek(max(part.start - 1, 0))
        if part.start > 0:
            f.readline()  # the byte before `start` ends a line, or this finishes the previous part's line
        at = f.tell()
        n = 0
        while at < part.end:
            raw = f.readline()
            if not raw:
                break
            at += len(raw)
            n += 1
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield n, BadRow(n, f"not UTF-8: {e.reason} at byte {e.start + 1}")
        lines[0] = n


def _csv(part: Part, catalog, lines: list[int]):
    with open_file(part.path) as raw:  # surrogateescape: a field that is not UTF-8 makes only its row bad
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        yield from read_csv_stream(text, catalog, lines)


def _parquet_rows(part: Part, catalog, lines: list[int]):
    table = parquet_file(part.path).read_row_group(part.start)
    n = 0
    for n, record in enumerate(table.to_pylist(), 1):
        values = {k: v for k, v in record.items() if v is not None}  # a null is absent, as an empty CSV field
        if isinstance(values.get("id"), int) and not isinstance(values["id"], bool):
            values["id"] = str(values["id"])  # an integer id column: ids are strings, as in CSV
        yield _row(n, values, catalog.contact, False, catalog.domains, catalog.context)
    lines[0] = n
