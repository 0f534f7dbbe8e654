"""Where a simulation's parts run: this machine's processes (`Local`), or the workers of a
Dask cluster (`Dask`). Either hands the results back in the parts' order, a bounded number
of parts ahead, so the run adds them up and arbitrates in population order as they come."""
from __future__ import annotations

import multiprocessing
import socket
import uuid
from collections import deque

from .evaluate import new_state, run_part

_job: list = []  # a local worker process's job, set once by the pool's initializer


def _init(job, fn) -> None:
    _job[:] = [job, fn]


def _run(part):
    return _job[1](_job[0], part)


class Local:
    """`workers` processes of this machine (forked; one: this process)."""

    remote = False

    def __init__(self, workers: int):
        self.workers = max(workers, 1)

    def map(self, job, items, fn=run_part, count: int | None = None):
        """`fn(job, item)` of each item, in order; an item is taken from `items` when it
        is sent (a simulation's part takes the totals of that moment). `count`: how many
        items there are, if known."""
        if self.workers == 1 or count is not None and count <= 1:
            if fn is run_part:
                state = new_state(job.catalogs, job.spaces, job.by)  # a run's own: a server runs several in threads
                fn = lambda job, item: run_part(job, item, state)  # noqa: E731
            for item in items:
                yield fn(job, item)
            return
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(min(self.workers, count or self.workers), initializer=_init, initargs=(job, fn)) as pool:
            pending: deque = deque()
            for item in items:  # about two parts per worker in flight, answers in order
                pending.append(pool.apply_async(_run, (item,)))
                while len(pending) > 2 * self.workers:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()


class Dask:
    """The workers of a Dask cluster: `address` its scheduler's (tcp://host:8786), or
    `local` for a cluster of `workers` processes on this machine. A worker lost while
    running a part makes the scheduler run the part again elsewhere; a part's result is the
    same wherever it runs, and a batch's rows answer from their first decision."""

    remote = True

    def __init__(self, address: str, workers: int = 0):
        try:
            from distributed import Client, LocalCluster  # noqa: PLC0415 - only when asked for
        except ImportError:
            raise ValueError("running on Dask needs its distributed package: pip install 'offerd[dask]'") from None
        self.cluster = None
        if address == "local":
            self.cluster = LocalCluster(n_workers=max(workers, 1) if workers else None, threads_per_worker=1,
                                        processes=True, dashboard_address="127.0.0.1:0", host="127.0.0.1")
            self.client = Client(self.cluster)
        else:
            reachable(address.removeprefix("tcp://"), "the Dask scheduler")
            try:
                self.client = Client(address, timeout=30)
            except (OSError, TimeoutError, ValueError) as e:
                raise ValueError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        self.workers = max(sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()), 1)

    def map(self, job, items, fn=run_part, count: int | None = None):
        """`fn(job, item)` of each item on the cluster, in order; the job sent once to each
        worker, an item taken from `items` when it is sent."""
        # the job goes with each part (a few dozen kB): data scattered to the workers is
        # lost with them when they die, and the parts that need it fail instead of running again
        run = uuid.uuid4().hex[:12]
        pending: deque = deque()
        window = 2 * self.workers + 2
        try:
            for i, item in enumerate(items):
                pending.append(self.client.submit(fn, job, item, key=f"offerd-{run}-{i}", pure=False))
                while len(pending) > window:
                    yield _result(pending.popleft())
            while pending:
                yield _result(pending.popleft())
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def reachable(target: str, what: str) -> None:
    """ValueError at once, in one line, if nothing listens at HOST:PORT (a typo, a cluster
    not started), rather than after a client's patient retries."""
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit() or "/" in target:
        return  # not HOST:PORT (a unix: target, a URL): the client says what it thinks
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise ValueError(f"nothing answers at {target} ({what}): {e.strerror or e}") from None


def _result(future):
    """A part's result; a part that killed its workers again and again stops the run."""
    try:
        return future.result()
    except Exception as e:
        if type(e).__name__ == "KilledWorker":
            raise ValueError(f"a part was running on every worker that died ({e}); "
                             "run the same command again") from None
        raise
