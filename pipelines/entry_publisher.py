"""Entered records published at once, not at the drop sensor's next look.

An entry is already loaded when POST /v1/records answers (connectors/entry.py). Left to the
daemon, it would then wait for the drop sensor's next tick, a station run, the automation's next
tick, a publication run and the feed sensor's run: three Dagster runs, each launched in a process
of its own, 20-30 s in all. The officer's neighbour station should see the resident in seconds,
so the serving process publishes it itself: it claims the entry (the station's recorded version
takes the entry in, so the drop sensor launches no run of its own for it), then runs, in-process
and on the warehouse's Dagster instance, what the daemon would: the station's run (its ingest, and
the `station_quality` checks, which validate the entry's batch with the Great Expectations suites
and hold it if it fails, before anything is published), resolution and publication, and the
subscribers' feeds. The runs are in the UI like any other, tagged `launched_by: front desk entry`.
The quality pass and the report are left to the daemon, whose automation sees their inputs
updated. (The automation may also see the station's run finish before the publication run has
started and launch a publication of its own: it finds nothing left to do.)

Entries arriving while a publication runs are gathered into the next one. A publication that
fails is logged and gives its claim back (the station's version as before the entries), so the
drop sensor's next look ingests and publishes them the ordinary way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from connectors.entry import settle_entry_version, unsettle_entry_version
from pipelines.project import Project
from warehouse import Warehouse

log = logging.getLogger("enteronce.entry")

ENTRY_PHASES = ("ingest", "resolution", "feeds")  # of the graph's phases (pipelines/phases.py)
LAUNCHED_BY = "front desk entry"


def _materialize() -> Callable[..., object]:
    from pipelines.runner import materialize_project

    return materialize_project


class EntryPublisher:
    """One background thread per serving process; `entered` returns as soon as the claim is made."""

    def __init__(self, project: Project, store: Warehouse, *, runner: Callable[..., object] | None = None,
                 gather_seconds: float = 0.1):
        self.project, self.store, self._gather = project, store, gather_seconds
        self._runner = runner
        self._pending: dict[str, str | None] = {}  # station -> its entry marks before the first pending entry
        self._cv = threading.Condition()
        self.published = 0  # publications done, and failed (for tests)
        self.failed = 0
        self._closed = False
        self._thread = threading.Thread(target=self._work, daemon=True, name="entry-publisher")
        self._thread.start()

    def entered(self, station_id: str, marks_before: str | None) -> None:
        """A record of `station_id` was loaded; `marks_before`: the station's entry marks before it."""
        station = self.project.stations.station(station_id)
        with self._cv:
            if not settle_entry_version(self.store, station, self.project.config_dir, marks_before):
                return  # a drop is waiting as well: the drop sensor's station run takes both
            self._pending.setdefault(station_id, marks_before)
            self._cv.notify()

    def close(self, timeout: float = 300.0) -> None:
        """Take no more entries and wait for the publication in progress, if any: Dagster runs of
        two threads in one process can deadlock on the logging module's locks (each run
        reconfigures logging), so whoever runs Dagster next in this process waits for this one."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout)

    def _work(self) -> None:
        if self._runner is None:  # Dagster and the asset graph load now, not on the first entry
            self._runner = _materialize()
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                if not self._pending:
                    return
            time.sleep(self._gather)  # the entries of one burst go in one publication
            with self._cv:
                claims, self._pending = self._pending, {}
            try:
                self._runner(self.project, sorted(claims), only=ENTRY_PHASES, launched_by=LAUNCHED_BY)
                self.published += 1
            except Exception:  # noqa: BLE001 - the daemon's drop sensor publishes them instead
                self.failed += 1
                log.exception("publishing the entries of %s failed; the drop sensor will publish them",
                              ", ".join(sorted(claims)))
                for station_id, marks in claims.items():
                    unsettle_entry_version(self.store, self.project.stations.station(station_id),
                                           self.project.config_dir, marks)
