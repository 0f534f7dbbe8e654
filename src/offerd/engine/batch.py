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
import hashlib
import json
import os
import time
from dataclasses import dataclass

from ..lang.catalog import Catalog
from ..store.keys import U64
from ..store.lmdb_store import Store
from . import population
from .decide import Engine
from .model import Request
from .population import BadRow

IN_FLIGHT = 256  # decisions waiting for the group commit at once: they share transactions


@dataclass
class BatchResult:
    decided: int  # by this run
    resumed: int  # decided by an earlier run of the same batch
    bad: list[str]
    propositions: int
    seconds: float


def job_key(catalog: Catalog, spaces: list[str], path: str, at: datetime.datetime) -> bytes:
    """The notes' prefix: the same batch run again finds the notes of the last run."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    ident = json.dumps([catalog.hash, spaces, digest, at.isoformat()])
    return b"batch:" + hashlib.sha256(ident.encode()).digest()[:12] + b":"


def run(store: Store, catalog: Catalog, spaces: list[str], path: str, at: datetime.datetime, out: str,
        context: dict | None = None, progress=None) -> BatchResult:
    return asyncio.run(_run(store, catalog, spaces, path, at, out, context or {}, progress))


async def _run(store, catalog, spaces, path, at, out, context, progress) -> BatchResult:
    engine = Engine(store, catalog)
    for s in spaces:
        engine.space(s)  # an unknown space is refused before anything is decided
    prefix = job_key(catalog, spaces, path, at)
    done = {U64.unpack(k[len(prefix):])[0] for k in store.notes(prefix, values=False)}
    started, bad, decided = time.perf_counter(), [], 0
    window = asyncio.Semaphore(IN_FLIGHT)
    failures: list[BaseException] = []
    with open(path, "rb") as f:
        total = sum(1 for _ in f)
    rows = population.read(path, catalog)

    def note_for(line: int, contact: str):
        def note(picks, ids):  # runs in the store's writer, in the decision's transaction
            kept = [{"space": s, "offer": o, "content": c, "id": i.hex()}
                    for (s, o, c), i in zip(picks, ids) if i is not None]
            return prefix + U64.pack(line), json.dumps({"line": line, "id": contact, "propositions": kept}).encode()
        return note

    async def one(row):
        nonlocal decided
        try:
            request = Request(tuple(spaces), row.contact_id, attributes=row.attributes, context=context, time=at)
            note = note_for(row.line, row.contact_id)
            decision = await engine.decide_async(request, note=note)
            if not any(p.id for r in decision.spaces for p in r.proposals):  # nothing recorded: the note alone
                key, value = note([], [])
                await store.put_note_async(key, value)
            decided += 1
        except Exception as e:  # a store failure: stop scheduling, report it
            failures.append(e)
        finally:
            window.release()

    tasks = set()
    for i, row in enumerate(rows):
        if isinstance(row, BadRow):
            bad.append(str(row))
            continue
        if row.line in done or failures:
            continue
        await window.acquire()
        task = asyncio.create_task(one(row))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if progress and i % 256 == 0:
            progress(i, total, time.perf_counter() - started)
    await asyncio.gather(*tasks)
    if failures:
        raise failures[0]
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
    if progress:
        progress(total, total, time.perf_counter() - started)
    return BatchResult(decided, len(done), bad, propositions, time.perf_counter() - started)
