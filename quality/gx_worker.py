"""Great Expectations in a process of its own, for the pipeline's runs.

Importing GX holds about 165 MiB for as long as the process lives (a module cannot be unloaded)
and costs seconds of CPU, and each suite run copies its frame into pandas. In `enteronce run`
every phase runs in one process, so the import made by the first station's validation stayed
through resolution and the first publication, the steps with the run's peak. Here GX lives in
a spawned child process instead (one per parent process, holding one `GxProject` per folder):

- the child starts when a station run begins ingesting (`prewarm`), so its import runs on the
  other core while the drops are read, not on the station's critical path after them;
- a set of batches goes to it pickled (Polars frames travel as Arrow IPC) and comes back as the
  `Validation`s the in-process `GxProject` gives, with the same run ids, results and Data Docs;
  `submit_many` hands a set over without waiting, so the pipeline reads and saves one set while
  GX validates the next (quality.service._validated_sets);
- `close` ends it: the runner calls it between phases, so resolution starts without it.

`ENTERONCE_GX_WORKER`: `phase` (default) lets `close` end the child; `process` keeps it for the
life of the process (a test session or a notebook that runs many small pipelines pays the import
once); `inline` validates in this process, as before the worker existed.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from core.errors import EnteronceError

MODE_ENV = "ENTERONCE_GX_WORKER"
MODES = ("phase", "process", "inline")


class WorkerFailed(EnteronceError):
    """The validation process ended before answering (killed, out of memory)."""


def mode() -> str:
    value = os.environ.get(MODE_ENV, "phase").strip().lower() or "phase"
    if value not in MODES:
        raise EnteronceError(f"{MODE_ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


# -- in the child -----------------------------------------------------------------------------

def _open(root: str) -> bool:
    """Import GX and open the project's context (what a first validation would pay)."""
    from quality.validate import gx_project

    gx_project(Path(root)).context
    return True


def _call(root: str, method: str, args: tuple, kwargs: dict):
    from quality.validate import gx_project

    return getattr(gx_project(Path(root)), method)(*args, **kwargs)


# -- in the parent ----------------------------------------------------------------------------

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def running() -> bool:
    """Whether this process has a validation child now."""
    return _pool is not None


def prewarm(root: Path) -> None:
    """Start the child and open `root`'s GX project in it, without waiting for either."""
    if mode() != "inline":
        _executor().submit(_open, str(Path(root).resolve()))


def close(*, force: bool = False) -> None:
    """End the child (its memory goes with it) unless ENTERONCE_GX_WORKER keeps it for the
    process; `force` ends it regardless. A later validation starts a new one."""
    global _pool
    if not force and mode() == "process":
        return
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


class GxWorker:
    """`GxProject`'s interface (quality.validate) for a project folder, answered by the child."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    @property
    def docs_index(self) -> Path:
        from quality.validate import docs_index

        return docs_index(self.root)

    def _submit(self, method: str, *args, **kwargs) -> "Pending":
        try:
            return Pending(_executor().submit(_call, str(self.root), method, args, kwargs))
        except BrokenProcessPool as exc:
            raise _ended(exc) from exc

    def validate(self, *args, **kwargs):
        return self._submit("validate", *args, **kwargs).result()

    def validate_many(self, *args, **kwargs):
        return self._submit("validate_many", *args, **kwargs).result()

    def submit_many(self, *args, **kwargs) -> "Pending":
        return self._submit("validate_many", *args, **kwargs)

    def build_docs(self) -> Path:
        return self._submit("build_docs").result()


class Pending:
    """A call handed to the child; `result()` waits for its answer."""

    def __init__(self, future: Future):
        self._future = future

    def result(self):
        try:
            return self._future.result()
        except BrokenProcessPool as exc:
            raise _ended(exc) from exc


def _ended(exc: BrokenProcessPool) -> WorkerFailed:
    """The child is gone: forget it (the next call starts a new one) and say so."""
    close(force=True)
    return WorkerFailed(f"the Great Expectations process ended unexpectedly ({exc}); the next validation "
                        f"starts a new one")


def gx_for(root: Path):
    """What the pipeline validates with: the child's proxy, or the in-process project when
    ENTERONCE_GX_WORKER=inline."""
    if mode() == "inline":
        from quality.validate import gx_project

        return gx_project(root)
    return GxWorker(root)
