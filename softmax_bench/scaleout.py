"""Where the audit's cases and the exhaustive sweep's chunks run: on this machine (the default), or
as tasks on a Dask cluster (``dask.distributed``, an optional extra: ``pip install
'softmax-bench[dask]'``).

- :func:`executor` gives a ``concurrent.futures`` executor: a local process pool, or the Dask
  client's executor (its futures are ``concurrent.futures`` ones, so one loop serves both);
- :class:`FutureWorker` runs the audit's case tasks on such an executor behind the interface of
  :class:`softmax_bench.isolation.Worker` (a connection the owner waits on, ``submit``,
  ``receive``), so the audit's event loop and its peers' processes are the same either way.

Untrusted code stays on this machine: peers and ``--impl`` functions still run in their own local
processes (:mod:`softmax_bench.isolation`); what goes to the cluster is our code (inputs, the
reference, the kernels). The workers need this package at the same version, and one thread each
(``dask worker ADDRESS --nthreads 1 --nworkers N``): numba's default threading layer is not
thread-safe across threads that call compiled parallel code at once.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing

from softmax_bench.isolation import describe, wait

__all__ = ["ScaleOutError", "executor", "client", "threads", "FutureWorker", "wait", "CONNECT_TIMEOUT_S"]

#: Seconds to reach a scheduler before giving up with a clear error.
CONNECT_TIMEOUT_S = 20


class ScaleOutError(ValueError):
    """Dask is not installed, or the scheduler cannot be reached."""


def client(address: str):
    """A ``dask.distributed.Client`` of the scheduler at ``address`` (``tcp://host:8786``)."""
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise ScaleOutError("--scheduler needs dask.distributed: pip install 'softmax-bench[dask]'") from exc
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise ScaleOutError(f"cannot reach the Dask scheduler at {address}: {describe(exc)}") from exc


def threads(dask_client) -> int:
    """The cluster's worker threads (at least 1): how many tasks it runs at once."""
    return max(1, sum(dask_client.nthreads().values()))


class _DaskExecutor:
    """The Dask client's ``concurrent.futures`` executor; shutting it down closes the client."""

    def __init__(self, dask_client):
        self.client = dask_client
        self.inner = dask_client.get_executor(pure=False)
        self.workers = threads(dask_client)

    def submit(self, fn, *args):
        return self.inner.submit(fn, *args)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False):
        try:
            self.inner.shutdown(wait=wait)
        finally:
            self.client.close()


def executor(workers: int, scheduler: str | None = None):
    """A ``concurrent.futures`` executor: ``workers`` local processes (spawned: no state of this
    one is inherited), or the Dask cluster at ``scheduler``; its ``workers`` attribute says how
    many tasks it runs at once."""
    if scheduler is None:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        pool.workers = workers
        return pool
    return _DaskExecutor(client(scheduler))


class FutureWorker:
    """One task at a time on an executor, with the owner-side interface of
    :class:`softmax_bench.isolation.Worker`: ``handler(None, task)`` runs where the executor puts
    it; when it ends, a byte on :attr:`conn` wakes the owner's ``wait``, and :meth:`receive` gives
    ``("done", result)`` or ``("died", reason)`` (the task raised, or its worker was lost)."""

    def __init__(self, pool, handler, label: str = ""):
        self.pool, self.handler, self.label = pool, handler, label
        self.conn, self._signal = multiprocessing.Pipe(duplex=False)
        self.starts, self.ready = 1, True
        self.task = self.deadline = self.future = None

    @property
    def idle(self) -> bool:
        return self.task is None

    def submit(self, task, key, timeout: float | None) -> bool:
        self.task, self.deadline = key, None  # our own code: no deadline, as for local case workers
        self.future = self.pool.submit(self.handler, None, task)
        self.future.add_done_callback(lambda _: self._signal.send_bytes(b"."))
        return True

    def receive(self):
        """``("done", result)`` or ``("died", reason)`` of the task submitted last; ``("ready",
        None)`` for a wake-up that is not its end (the byte of a task cancelled before it),
        which the owner ignores."""
        self.conn.recv_bytes()
        if self.future is None or not self.future.done():
            return "ready", None
        future, self.future, self.task = self.future, None, None
        try:
            return "done", future.result()
        except BaseException as exc:  # noqa: BLE001 - the task's failure becomes records
            return "died", f"failed on the cluster: {describe(exc)}"

    def kill(self) -> None:
        if self.future is not None:
            self.future.cancel()

    def close(self) -> None:
        self.kill()
        self.conn.close()
        self._signal.close()

    def restart(self) -> None:
        self.kill()
        self.future = self.task = None
