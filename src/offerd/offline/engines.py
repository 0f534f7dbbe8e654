"""Where a simulation's parts run: this machine's processes (`Local`), or the workers of a
Dask cluster (`Dask`). Either hands the results back in the parts' order, a bounded number
of parts ahead, so the run adds them up and arbitrates in population order as they come."""
from __future__ import annotations

import multiprocessing
from collections import deque

from .evaluate import Job, new_state, run_part

_job: list = []  # a local worker process's job, set once by the pool's initializer


def _init(job: Job) -> None:
    _job[:] = [job]


def _run(part):
    return run_part(_job[0], part)


class Local:
    """`workers` processes of this machine (forked; one: this process)."""

    remote = False

    def __init__(self, workers: int):
        self.workers = max(workers, 1)

    def map(self, job: Job, parts: list):
        if self.workers == 1 or len(parts) <= 1:
            state = new_state(job.catalogs, job.spaces, job.by)  # a run's own: a server runs several in threads
            for part in parts:
                yield run_part(job, part, state)
            return
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(self.workers, len(parts)), initializer=_init, initargs=(job,)) as pool:
            pending: deque = deque()
            for part in parts:  # about two parts per worker in flight, answers in order
                pending.append(pool.apply_async(_run, (part,)))
                while len(pending) > 2 * self.workers:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()
