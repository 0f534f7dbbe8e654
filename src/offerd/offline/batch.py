"""Outbound batches: recorded decisions for a whole population (an e-mail, SMS or mail
campaign), resumable after an interruption without deciding a contact twice.

Each decision is recorded with a note, in the same transaction: the row's line and what
it proposed. Running the same batch again (same population file, catalog, spaces and
time) skips the rows that have a note, so a contact is decided once whatever happened; the
output file is written at the end from the notes, in the population's order, so it is
complete and has each contact once."""
from __future__ import annotations

import asyncio
import csv
import datetime
import fcntl
import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from queue import Empty

from ..lang.catalog import Catalog
from ..lang.values import check_attributes
from ..process import die_with
from ..engine import Engine, EngineError, Request
from ..store import Store, StoreError
from . import population
from .population import BadRow

IN_FLIGHT = 256  # decisions waiting for the group commit at once: they share transactions


@dataclass
class BatchResult:
    decided: int  # by this run
    resumed: int  # decided by an earlier run of the same batch
    bad: list[str]
    propositions: int
    seconds: float


def job_key(catalog: Catalog, spaces: list[str], path: str, at: datetime.datetime, context: dict) -> bytes:
    """The notes' prefix: the same batch run again finds the notes of the last run."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    ident = json.dumps([catalog.hash, spaces, digest, at.isoformat(), sorted((k, repr(v)) for k, v in context.items())])
    return b"batch:" + hashlib.sha256(ident.encode()).digest()[:12] + b":"


def run(data: str, catalog: Catalog, spaces: list[str], path: str, at: datetime.datetime, out: str,
        context: dict | None = None, progress=None, workers: int = 1, durability: str = "fast") -> BatchResult:
    """Decide and record the population into the store under `data`, then write `out`.
    With several workers, each process takes every n-th row (caps hold across processes:
    the store re-checks them in each transaction). A batch's durability is `fast` by
    default and the store is synced before the output is written: an OS crash mid-way
    loses some decisions together with their notes, and the rerun decides those again."""
    unknown = [s for s in spaces if s not in catalog.spaces]
    if unknown:
        raise ValueError(f"no space {unknown[0]!r} in the catalog; spaces: {', '.join(sorted(catalog.spaces))}")
    population.check_columns(path, catalog)  # a bad CSV column: refused before any process starts
    if context:  # a bad --context is the whole run's mistake, not each row's (InputError is a ValueError)
        check_attributes(catalog.context, context, "context", catalog.domains)
    db = os.path.join(data, "db")
    prefix = job_key(catalog, spaces, path, at, context or {})
    os.makedirs(data, exist_ok=True)
    lock = open(os.path.join(data, f"batch-{prefix[6:18].hex()}.lock"), "w")
    try:  # two runs of one batch at once could both decide a contact: the second is refused
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StoreError(f"this batch is running already (its lock: {lock.name})") from None
    try:
        return _run(db, catalog, spaces, path, at, out, context, progress, workers, durability, prefix)
    finally:
        lock.close()


def _run(db, catalog, spaces, path, at, out, context, progress, workers, durability, prefix) -> BatchResult:
    started = time.perf_counter()
    with open(path, "rb") as f:
        total = sum(1 for _ in f)
    if workers <= 1:
        with Store(db, durability=durability) as store:
            parts = [asyncio.run(_decide(store, catalog, spaces, path, at, context or {}, prefix, (0, 1),
                                         lambda n: progress and progress(n, total, time.perf_counter() - started)))]
    else:
        parts = _fork(db, durability, catalog, spaces, path, at, context or {}, prefix, workers, total, progress, started)
    with Store(db, durability=durability) as store:
        store.env.sync(True)  # everything decided is on disk before the output says so
        propositions = _write(store, prefix, out)
    if progress:
        progress(total, total, time.perf_counter() - started)
    return BatchResult(sum(p[0] for p in parts), sum(p[1] for p in parts), [b for p in parts for b in p[2]],
                       propositions, time.perf_counter() - started)


def _fork(db, durability, catalog, spaces, path, at, context, prefix, workers, total, progress, started):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    parent = os.getpid()

    def child(k: int) -> None:
        die_with(parent)
        try:
            with Store(db, durability=durability) as store:  # opened in this process, after the fork
                part = asyncio.run(_decide(store, catalog, spaces, path, at, context, prefix, (k, workers),
                                           lambda n: queue.put(("progress", k, n))))
            queue.put(("done", k, part))
        except BaseException as e:
            queue.put(("error", k, f"{type(e).__name__}: {e}"))

    procs = [ctx.Process(target=child, args=(k,)) for k in range(workers)]
    for proc in procs:
        proc.start()
    parts, counts, errors = {}, [0] * workers, []
    checked = time.monotonic()
    while len(parts) + len(errors) < workers:
        try:
            kind, k, value = queue.get(timeout=1.0)
        except Empty:
            kind = None
        if kind is None or time.monotonic() - checked >= 1.0:  # at least once a second, busy or not
            checked = time.monotonic()
            dead = [k for k, proc in enumerate(procs) if proc.exitcode not in (None, 0)
                    and k not in parts and k not in {e[0] for e in errors}]
            if dead:  # died without a word (killed, out of memory): it may have died holding the
                # queue's lock, on which the others would then wait forever; they stop too, and
                # the rerun resumes everyone
                errors += [(k, f"process {k} ended with code {procs[k].exitcode}") for k in dead]
                for proc in procs:
                    if proc.exitcode is None:
                        proc.kill()
                break
        if kind is None:
            continue
        if kind == "progress":
            counts[k] = value
            if progress:
                progress(sum(counts), total, time.perf_counter() - started)
        elif kind == "done":
            parts[k] = value
        else:
            errors.append((k, value))
    for proc in procs:
        proc.join()
    if errors:
        raise StoreError(f"a batch process failed: {errors[0][1]}; run the same command again to resume")
    return list(parts.values())


def _write(store: Store, prefix: bytes, out: str) -> int:
    """The output, whole, from the notes; the number of propositions."""
    propositions = 0
    tmp = out + ".part"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f) if out.endswith(".csv") else None
        if writer:  # a row per proposition; a contact that got none has one row without an offer
            writer.writerow(["line", "id", "space", "offer", "proposition", "content"])
        for _, value in store.notes(prefix):  # big-endian line numbers: population order, streamed
            entry = json.loads(value)
            propositions += len(entry["propositions"])
            if writer is None:
                f.write(json.dumps(entry, separators=(",", ":")) + "\n")
                continue
            for p in entry["propositions"] or [None]:
                writer.writerow([entry["line"], entry["id"]] + ([p["space"], p["offer"], p["id"],
                                                                  json.dumps(p["content"], sort_keys=True)] if p else ["", "", "", ""]))
    os.replace(tmp, out)
    return propositions


async def _decide(store, catalog, spaces, path, at, context, prefix, part, progress) -> tuple[int, int, list[str]]:
    """Decide this process's share of the rows (line % n == k); (decided, resumed, bad rows)."""
    k, n = part
    engine = Engine(store, catalog)
    for s in spaces:
        engine.space(s)  # an unknown space is refused before anything is decided
    done = {int.from_bytes(key[len(prefix):], "big") for key in store.notes(prefix, values=False)}
    bad, decided, resumed = [], 0, 0
    window = asyncio.Semaphore(IN_FLIGHT)
    failures: list[BaseException] = []
    rows = population.read(path, catalog)

    def note_for(line: int, contact: str):
        def note(picks, ids):  # runs in the store's writer, in the decision's transaction
            kept = [{"space": s, "offer": o, "content": c, "id": i.hex()}
                    for (s, o, c), i in zip(picks, ids) if i is not None]
            return prefix + line.to_bytes(8, "big"), json.dumps({"line": line, "id": contact, "propositions": kept}).encode()
        return note

    async def one(row):
        nonlocal decided
        try:
            own = {**context, **row.context} if row.context else context  # the row's context values win
            request = Request(tuple(spaces), row.contact_id, attributes=row.attributes, context=own, time=at)
            note = note_for(row.line, row.contact_id)
            decision = await engine.decide_async(request, note=note)
            if not any(p.id for r in decision.spaces for p in r.proposals):  # nothing recorded: the note alone
                key, value = note([], [])
                await store.put_note_async(key, value)
            decided += 1
        except EngineError as e:  # this row's request is refused (say, an id too long): a bad row
            bad.append(f"line {row.line}: {e}")
        except Exception as e:  # a store failure: stop scheduling, report it
            failures.append(e)
        finally:
            window.release()

    tasks, seen = set(), 0
    for row in rows:
        if row.line % n != k:
            continue
        if isinstance(row, BadRow):
            bad.append(str(row))
            continue
        if row.line in done:
            resumed += 1
            continue
        if failures:
            break
        await window.acquire()
        task = asyncio.create_task(one(row))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        seen += 1
        if progress and seen % 1024 == 0:
            progress((decided + resumed) * n)  # about: the other processes go at the same pace
    await asyncio.gather(*tasks)
    if failures:
        raise failures[0]
    return decided, resumed, bad
