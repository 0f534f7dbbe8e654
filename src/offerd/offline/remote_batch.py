"""Outbound batches against a server or a cluster (`offerd batch --server`): workers (this
machine's processes, or a Dask cluster's) read parts of the population and send their rows,
grouped by owning shard, in DecideBatch calls; each contact is decided and recorded on its
shard, its row marked with a BatchRow, so whatever is sent again (a part rerun after a worker
died, a batch run again after any failure) gets its first answer back and is never decided
twice. The output is written from the answers, in the population's order."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from dataclasses import dataclass, field

from ..cluster.routing import shard_of
from ..lang.catalog import Catalog
from ..lang.values import check_attributes
from . import parts, population
from .population import BadRow

CALL_ROWS = 500  # decisions per DecideBatch call (the API takes 1,000)
IN_FLIGHT = 4  # calls a worker has waiting at once
RETRIED = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}  # a shard down or busy: sent again


class BatchError(Exception):
    """The batch stopped; what it decided stays decided, and running it again resumes it."""


@dataclass(frozen=True)
class RemoteJob:
    """What every part of a batch needs: sent once to each worker."""

    target: str  # the server's or the cluster balancer's address
    tls: dict  # Client's TLS keyword arguments (files: they must be readable where the workers run)
    catalog: Catalog  # the live version (rows are typed by its schemas)
    spaces: list[str]
    time_us: int
    context: dict
    job: bytes  # 12 bytes naming the batch (its rows: the file's index and the line in the file)
    shards: int  # the cluster's shards (rows grouped by owner); 1: the receiving shard passes them on
    retry_for: float  # seconds a row is sent again while its shard is down, before the batch stops


@dataclass
class PartOutcome:
    lines: int
    rows: list = field(default_factory=list)  # (line in the part, contact id, propositions), in line order
    bad: list = field(default_factory=list)  # BadRow, lines of the part
    decided: int = 0
    resumed: int = 0  # answered from an earlier run (replayed)


def job_id(catalog: Catalog, spaces: list[str], digests: list[str], at: datetime.datetime, context: dict) -> bytes:
    """The batch's name: the same inputs (the files' contents too) name the same batch,
    however it is cut into parts."""
    ident = json.dumps([catalog.hash, spaces, digests, at.isoformat(), sorted((k, repr(v)) for k, v in context.items())])
    return hashlib.sha256(ident.encode()).digest()[:12]


def scan(path: str, cuts: list[int]) -> tuple[str, dict[int, int]]:
    """A file's SHA-256, and for each cut (a byte offset where a JSON Lines part starts),
    the lines that start before it: the lines of the file's parts before that one."""
    digest, before, newlines, pos = hashlib.sha256(), {0: 0}, 0, 0
    todo, i = sorted(c for c in cuts if c > 0), 0
    with parts.open_file(path) as f:
        while block := f.read(1 << 20):
            digest.update(block)
            end = pos + len(block)
            while i < len(todo) and todo[i] - 1 < end:  # a line starts at a cut if the byte before ends one
                before[todo[i]] = 1 + newlines + block.count(b"\n", 0, todo[i] - 1 - pos)
                i += 1
            newlines += block.count(b"\n")
            pos = end
    if i < len(todo):  # cut past the end: the file shrank since it was cut
        raise ValueError(f"{path} changed during the run (now {pos:,} bytes): run it again on a file that stays "
                         "as it is")
    return digest.hexdigest(), before


def _places(todo: list) -> tuple[list[str], list[tuple[int, int]]]:
    """The files' digests, and per part (its file's index, the lines of that file before it)."""
    files = list(dict.fromkeys(p.path for p in todo))
    digests, before = [], {}
    for k, path in enumerate(files):
        mine = [p for p in todo if p.path == path]
        if mine[0].kind == "parquet":
            meta = parts.parquet_file(path).metadata
            rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            digest, lines = scan(path, [])[0], {g: sum(rows[:g]) for g in range(len(rows))}
        else:
            digest, lines = scan(path, [p.start for p in mine])
        digests.append(digest)
        before.update({(path, p.start): (k, lines[p.start]) for p in mine})
    return digests, [before[(p.path, p.start)] for p in todo]


_clients: dict = {}  # per worker process: a client per (target, TLS, catalog), made and checked on first use


def _client(job: RemoteJob):
    from ..client import Client  # noqa: PLC0415 - gRPC only in the processes that call

    key = (job.target, tuple(sorted(job.tls.items())), job.catalog.hash)  # the live version checked per batch
    client = _clients.get(key)
    if client is None:
        client = Client(job.target, timeout=30, **job.tls)
        live = _call(client.schema, job).catalog
        if live != job.catalog.hash:
            client.close()
            raise BatchError(f"{job.target} serves catalog {live[:12]}, not {job.catalog.hash[:12]} (the batch's): "
                             "deploy or activate it first")
        while len(_clients) >= 4:  # a long-lived Dask worker serves batch after batch
            _clients.pop(next(iter(_clients))).close()
        _clients[key] = client
    return client


def _call(fn, job: RemoteJob, *args):
    """`fn(*args)`, again while the server is unavailable, for `retry_for` seconds."""
    import grpc  # noqa: PLC0415 - gRPC only in the processes that call: the run forks them first

    deadline, pause = time.monotonic() + job.retry_for, 0.1
    while True:
        try:
            return fn(*args)
        except grpc.RpcError as e:
            if e.code().name not in RETRIED or time.monotonic() + pause > deadline:
                raise BatchError(f"{job.target}: {e.code().name}: {e.details()}") from None
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def send_part(job: RemoteJob, part, file_index: int, before: int) -> PartOutcome:
    """Decide and record a part's rows on their shards; their answers, in line order. A
    row is named by its file and its line there (`before` + its line in the part), so a
    rerun names it the same whatever the parts."""
    from ..client import decide_request  # noqa: PLC0415
    from ..v1 import offerd_pb2 as pb  # noqa: PLC0415

    client = _client(job)
    catalog = job.catalog
    items, lines = parts.read(part, catalog)
    row_job = job.job + file_index.to_bytes(4, "big")
    out = PartOutcome(0)
    todo: list[tuple[int, str, pb.DecideRequest]] = []
    for item in items:
        if part.kind == "jsonl":
            line, text = item
            item = text if isinstance(text, BadRow) else population.parse_json_line(
                line, text, catalog.contact, catalog.domains, catalog.context)
            if item is None:
                continue
        if isinstance(item, BadRow):
            out.bad.append(item)
            continue
        own = {**job.context, **item.context} if item.context else job.context
        request = decide_request(job.spaces, item.contact_id, attributes=item.attributes, context=own)
        request.time_us = job.time_us
        request.batch.CopyFrom(pb.BatchRow(job=row_job, line=before + item.line))
        todo.append((item.line, item.contact_id, request))
    out.lines = lines[0]
    answers: dict[int, tuple] = {}
    deadline, pause = time.monotonic() + job.retry_for, 0.1
    while todo:
        todo = _send(client, job, todo, answers, out)
        if todo:
            if time.monotonic() + pause > deadline:
                raise BatchError(f"{len(todo):,} rows of {part} could not be decided for {job.retry_for:.0f} s "
                                 f"(their shard is down?); run the same command again to resume")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
    out.rows = [answers[line] for line in sorted(answers)]
    return out


def _send(client, job: RemoteJob, todo: list, answers: dict, out: PartOutcome) -> list:
    """One pass over the rows: the rows to send again (their shard unavailable)."""
    import grpc  # noqa: PLC0415
    from ..client import route  # noqa: PLC0415
    from ..v1 import offerd_pb2 as pb  # noqa: PLC0415

    groups: dict[int, list] = {}
    for entry in todo:
        groups.setdefault(shard_of(entry[1], job.shards) if job.shards > 1 else 0, []).append(entry)
    calls = [rows[i:i + CALL_ROWS] for rows in groups.values() for i in range(0, len(rows), CALL_ROWS)]
    again: list = []
    waiting: list = []

    def finish(rows, future):
        try:
            replies = future.result().replies
        except grpc.RpcError as e:
            if e.code().name not in RETRIED:
                raise BatchError(f"{job.target}: {e.code().name}: {e.details()}") from None
            again.extend(rows)
            return
        for (line, contact, _), reply in zip(rows, replies):
            if reply.HasField("error"):
                if reply.error.code in RETRIED:
                    again.append((line, contact, _))
                else:
                    out.bad.append(BadRow(line, f"{reply.error.code}: {reply.error.message}"))
                continue
            d = reply.decision
            if d.catalog != job.catalog.hash and not d.replayed:  # a row answered again is as it was decided
                raise BatchError(f"the live catalog changed to {d.catalog[:12]} during the batch "
                                 f"(from {job.catalog.hash[:12]}): activate it again to finish this batch")
            props = [{"space": s.space, "offer": p.offer, "content": dict(p.content), "id": p.id}
                     for s in d.spaces for p in s.propositions if p.id]
            answers[line] = (line, contact, props)
            if d.replayed:
                out.resumed += 1
            else:
                out.decided += 1

    for rows in calls:
        request = pb.DecideBatchRequest(requests=[r for _, _, r in rows])
        waiting.append((rows, client.decisions.DecideBatch.future(request, timeout=60, metadata=route(rows[0][1]))))
        if len(waiting) >= IN_FLIGHT:
            finish(*waiting.pop(0))
    for rows, future in waiting:
        finish(rows, future)
    return again


@dataclass
class RemoteResult:
    decided: int
    resumed: int
    bad: list[str]
    propositions: int
    seconds: float


def run(target: str, catalog: Catalog, spaces: list[str], paths: list[str], at: datetime.datetime, out: str,
        engine, context: dict | None = None, progress=None, shards: int = 1, tls: dict | None = None,
        retry_for: float = 60.0, part_bytes: int = parts.PART_BYTES) -> RemoteResult:
    """Decide and record the population on `target`'s live catalog (which must be
    `catalog`), through `engine`'s workers; then `out` (JSON Lines, or CSV by its name) has
    every row's propositions in the population's order. `part_bytes` may change between
    runs of a batch: its rows are named by their file and line."""
    from .engines import reachable

    started = time.perf_counter()
    reachable(target, "the server")
    unknown = [s for s in spaces if s not in catalog.spaces]
    if unknown:
        raise ValueError(f"no space {unknown[0]!r} in the catalog; spaces: {', '.join(sorted(catalog.spaces))}")
    context = check_attributes(catalog.context, context, "context", catalog.domains) if context else {}
    todo = parts.split(paths, catalog, part_bytes)
    files = list(dict.fromkeys(p.path for p in todo))
    digests, places = _places(todo)  # one read of each file
    job = RemoteJob(target, tls or {}, catalog, list(spaces), int(round(at.timestamp() * 1e6)), context,
                    job_id(catalog, spaces, digests, at, context), shards, retry_for)
    size = sum(p.size for p in todo) or 1
    done_bytes, offset, path, file_start, result = 0, 0, None, 0, RemoteResult(0, 0, [], 0, 0.0)
    tmp = out + ".part"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = _writer(f, out)
        items = ((part, *place) for part, place in zip(todo, places))
        for part, outcome in zip(todo, engine.map(job, items, _task, count=len(todo))):
            if part.path != path:
                path, file_start = part.path, offset
            for bad in outcome.bad:
                where = f" ({os.path.basename(path)}, line {bad.line + offset - file_start})" if len(files) > 1 else ""
                result.bad.append(f"line {bad.line + offset}: {bad.problem}{where}")
            for line, contact, props in outcome.rows:
                writer(line + offset, contact, props)
                result.propositions += len(props)
            result.decided += outcome.decided
            result.resumed += outcome.resumed
            offset += outcome.lines
            done_bytes += part.size
            if progress:
                done = result.decided + result.resumed + len(result.bad)
                progress(done, round(done * size / done_bytes) if done_bytes else None, time.perf_counter() - started)
    os.replace(tmp, out)
    result.seconds = time.perf_counter() - started
    if progress:
        done = result.decided + result.resumed + len(result.bad)
        progress(done, done, result.seconds)
    return result


def _task(job: RemoteJob, item) -> PartOutcome:
    return send_part(job, *item)


def _writer(f, out: str):
    """A row's output line(s): JSON Lines as `offerd batch` writes them, or CSV."""
    if out.endswith(".csv"):
        import csv  # noqa: PLC0415

        w = csv.writer(f)
        w.writerow(["line", "id", "space", "offer", "proposition", "content"])

        def row(line, contact, props):
            for p in props or [None]:
                w.writerow([line, contact] + ([p["space"], p["offer"], p["id"], json.dumps(p["content"], sort_keys=True)]
                                              if p else ["", "", "", ""]))
        return row

    def line_json(line, contact, props):
        f.write(json.dumps({"line": line, "id": contact, "propositions": props}, separators=(",", ":")) + "\n")
    return line_json
