"""Where sweep tasks run: in this process, a local process pool, or a Dask cluster.

A task is one run of one sweep point: ``(point, run, config dict)``. Workers
receive only the resolved config as a plain dict (and, for tests or custom
runners, a picklable runner callable); they rebuild the Config with
:func:`simulator.config.load_config` and call
``simulator.run(config, runs=[run])``. Results come back as plain dicts, in
completion order, and only the driver writes files.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from simulator.sweep.spec import SweepError

log = logging.getLogger("xbarsim.sweep")

#: environment variables that cap the threads of BLAS/OpenMP libraries
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

Runner = Callable[..., Any]


@dataclass(frozen=True)
class Task:
    point: int
    run: int
    config: dict  # the resolved config of the point, as Config.to_dict() gives it
    label: str = ""  # "sweep point 3 (adc_bits=4)" for error messages


# ---------------------------------------------------------------- the task
def execute_task(config: dict, run: int, runner: Optional[Runner] = None, label: str = "") -> dict[str, Any]:
    """Run one run of one point; return ``{"rows": [...], "ideal_accuracy", "seconds_per_image"}``.

    This is what every executor calls (in a worker process or in-process).
    Only plain Python values are returned so that results pickle cheaply.
    """
    from simulator.config import load_config

    if runner is None:
        from simulator.runner import run as runner  # the real simulation runner
    from simulator.errors import XbarsimError

    where = f"{label or 'sweep point'}, run {run}"
    try:
        cfg = load_config(config, name=label or "sweep point")
        if len(cfg.drift_times) > 1:
            from simulator.errors import ConfigError

            raise ConfigError(f"t_drift = {cfg.t_drift}: a sweep point evaluates one inference time; "
                              "sweep over the times instead (--param t_drift=...)")
        result = runner(cfg, runs=[run], progress=False)
    except XbarsimError as exc:
        # name the point in the one-line user error (same exception class)
        try:
            err = type(exc)(f"{where}: {exc}")
        except Exception:  # pragma: no cover - an exception class with another signature
            raise exc
        raise err from None
    frame = result.to_frame()
    # one inference time per point: its t_drift is the point's config value, not a metric column
    rows = [{k: _plain(v) for k, v in rec.items() if k != "t_drift"} for rec in frame.to_dict("records")]
    rows = [r for r in rows if int(r.get("run", run)) == run]
    if len(rows) != 1:
        raise RuntimeError(f"{where}: the runner returned {len(rows)} rows for run {run}, expected 1")
    return {
        "rows": rows,
        "ideal_accuracy": _plain(getattr(result, "ideal_accuracy", None)),
        "seconds_per_image": _plain(getattr(result, "seconds_per_image", None)),
    }


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars (leave everything else alone)."""
    item = getattr(v, "item", None)
    if item is not None and getattr(v, "ndim", 1) == 0:
        try:
            return item()
        except (TypeError, ValueError):
            return v
    return v


def limit_threads(n: int = 1) -> None:
    """Cap BLAS/OpenMP threads in this process (worker initializer).

    The environment variables take effect for libraries loaded afterwards;
    if numpy is already loaded, threadpoolctl (when installed) caps the
    already-running thread pools too.
    """
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    import sys

    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(n)
        except Exception:  # pragma: no cover - threadpoolctl is optional
            pass


def exit_with_parent(poll_s: float = 0.5) -> None:
    """Make this (worker) process end when the process that started it ends, even by SIGKILL.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``; everywhere: a daemon thread
    that exits the process once its parent process id changes (re-parenting).
    """
    import signal
    import threading
    import time

    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the parent died before the prctl call
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="xbarsim-parent-watch", daemon=True).start()


def init_worker(n_threads: int = 1) -> None:
    """Pool worker initializer: BLAS thread cap, and end with the sweep's main process."""
    limit_threads(n_threads)
    exit_with_parent()


@contextlib.contextmanager
def _thread_env(n: int = 1):
    """Temporarily set the thread-cap variables so that spawned children inherit them at start-up."""
    saved = {v: os.environ.get(v) for v in THREAD_ENV_VARS}
    try:
        for v in THREAD_ENV_VARS:
            os.environ[v] = str(n)
        yield
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


# ---------------------------------------------------------------- executors
class Executor:
    """Runs tasks and yields ``(task, payload)`` as each finishes."""

    name = "executor"

    def run(self, tasks: list[Task], runner: Optional[Runner] = None) -> Iterator[tuple[Task, dict]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> str:
        return self.name


class InProcessExecutor(Executor):
    """Runs tasks one after another in this process (``--workers 1``)."""

    name = "in-process"

    def run(self, tasks, runner=None):
        for t in tasks:
            yield t, execute_task(t.config, t.run, runner, t.label)


class LocalPoolExecutor(Executor):
    """A pool of local worker processes (``spawn`` start method, one BLAS thread each)."""

    name = "local processes"

    def __init__(self, workers: int):
        if workers < 1:
            raise SweepError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self._pool = None

    def describe(self) -> str:
        return f"{self.workers} local worker processes"

    def run(self, tasks, runner=None):
        from concurrent.futures import ProcessPoolExecutor, as_completed

        if not tasks:
            return
        n = min(self.workers, len(tasks))
        ctx = multiprocessing.get_context("spawn")
        # spawned children start with the parent's environment: cap their BLAS
        # threads before numpy is imported there, and again in the initializer
        with _thread_env(1):
            self._pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=init_worker, initargs=(1,))
            futures = {self._pool.submit(execute_task, t.config, t.run, runner, t.label): t for t in tasks}
        yielded, error = set(), None
        try:
            for fut in as_completed(futures):
                if fut.exception() is not None:
                    error = fut.exception()
                    break
                yielded.add(fut)
                yield futures[fut], fut.result()
            if error is not None:
                # a failed run: start no more, let the runs in progress end and
                # hand over their results (they may complete points), then raise
                pool, self._pool = self._pool, None
                pool.shutdown(wait=True, cancel_futures=True)
                for fut, task in futures.items():
                    if fut not in yielded and fut.done() and not fut.cancelled() and fut.exception() is None:
                        yield task, fut.result()
                raise error
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            self._abort()
            raise
        finally:
            self.close()

    def _abort(self) -> None:
        """Stop now: cancel queued tasks and terminate the workers (runs in progress are lost)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        with contextlib.suppress(Exception):
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class DaskExecutor(Executor):
    """Tasks on a Dask distributed cluster at ``address`` (connects on construction)."""

    name = "dask"

    def __init__(self, address: str, timeout: float = 10.0):
        self.address = address
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - a dependency of xbarsim
            raise SweepError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
        _preflight(address, timeout)
        made: list = []

        class _Client(Client):  # remembers itself, to be closed if its start fails
            def __init__(self, *args, **kwargs):
                made.append(self)
                super().__init__(*args, **kwargs)

        reason = None
        try:
            self.client = _Client(address, timeout=timeout, set_as_default=False)
        except Exception as exc:  # refused, timed out, or not a Dask scheduler at all
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else exc.__class__.__name__
        if reason is not None:
            # close the half-started client now (else it times out again at exit)
            for c in made:
                with contextlib.suppress(Exception):
                    c.close(timeout=1)
            made.clear()
            raise SweepError(
                f"cannot connect to a Dask scheduler at {address!r} within {timeout:g} s ({reason}); "
                f"nothing was run or written"
            )

    def describe(self) -> str:
        try:
            n = len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # pragma: no cover
            n = "?"
        return f"Dask cluster {self.address} ({n} workers)"

    def run(self, tasks, runner=None):
        import uuid

        from distributed import as_completed

        if not tasks:
            return
        tag = uuid.uuid4().hex[:8]
        futures = {}
        for t in tasks:
            fut = self.client.submit(
                execute_task, t.config, t.run, runner, t.label, pure=False, key=f"xbarsim-sweep-{tag}-{t.point}-{t.run}"
            )
            futures[fut.key] = (fut, t)
        yielded = set()
        try:
            for fut in as_completed([f for f, _ in futures.values()], loop=self.client.loop):
                if fut.status == "error":
                    # hand over what else has finished (it may complete points), then raise
                    for key, (other, task) in futures.items():
                        if key not in yielded and other.status == "finished":
                            yielded.add(key)
                            yield task, other.result()
                    fut.result()  # raises the run's exception
                yielded.add(fut.key)
                yield futures[fut.key][1], fut.result()
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.cancel([f for f, _ in futures.values()], force=True)
            raise

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _preflight(address: str, timeout: float) -> None:
    """Check a tcp/tls scheduler address with a plain socket before dask.distributed tries it.

    A failed ``Client`` leaves a half-made object that times out again at exit;
    a refused or malformed address is reported here, cleanly and at once.
    """
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        proto, loc = parse_address(address)
    except ValueError as exc:
        raise SweepError(f"--scheduler {address!r}: not a scheduler address like tcp://HOST:8786 ({exc})") from None
    from distributed.comm.registry import backends

    if proto not in backends:
        raise SweepError(
            f"--scheduler {address!r}: unknown address scheme {proto!r} (known: {', '.join(sorted(backends))})"
        )
    if proto not in ("tcp", "tls"):
        return
    try:
        host, port = parse_host_port(loc, default_port=8786)
    except ValueError as exc:
        raise SweepError(f"--scheduler {address!r}: not a scheduler address like tcp://HOST:8786 ({exc})") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        raise SweepError(
            f"cannot reach the Dask scheduler at {address!r} ({reason}); nothing was run or written"
        ) from None


def make_executor(workers: Optional[int] = None, scheduler: Optional[str] = None, timeout: float = 10.0) -> Executor:
    """``scheduler`` -> Dask; ``workers == 1`` -> in-process; else a local pool (default: one per CPU)."""
    if scheduler:
        if workers is not None:
            raise SweepError("--workers applies to local runs; with --scheduler the Dask cluster's workers are used")
        return DaskExecutor(scheduler, timeout=timeout)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    return InProcessExecutor() if workers == 1 else LocalPoolExecutor(workers)
