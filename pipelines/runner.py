"""In-process materialisation of the asset graph, for `enteronce run`.

The runs go into the warehouse's own Dagster instance (pipelines.instance), the one the daemon
and the UI use, so they show in the UI and the sensors see what they did.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

import dagster as dg

from core.errors import EnteronceError
from feeds.files import subscribers_behind
from pipelines.automation import STAGE_TAG
from pipelines.definitions import definitions_for, defs
from pipelines.feed_assets import run_feeds, subscribers_partitions
from pipelines.instance import open_instance
from pipelines.partitions import consecutive_ranges, run_target, stations_partitions, with_new
from pipelines.phases import run_phases
from pipelines.project import Project
from pipelines.quality_assets import prewarm_validation
from pipelines.resources import ProjectResource
from quality import gx_worker
from warehouse import Warehouse
from warehouse.locks import warehouse_lock

# Everything the code location declares (assets and their checks), and the order `enteronce run`
# materialises it in, both from the Definitions: an asset added there is run here.
ASSETS = list(defs.assets)
PHASES = run_phases(defs)
# The CLI draws its own progress and prints what failed in its summary; Dagster's console logger
# stays quiet (every run's whole log is in the instance, so in the UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
LAUNCHED_BY_TAG = "enteronce/launched_by"
CHECK_FAILED = "DagsterAssetCheckFailedError"
WAREHOUSE_ENV = "ENTERONCE_WAREHOUSE_URL"


class RunFailed(EnteronceError):
    """A step failed for a reason other than a failing blocking check; names the run to look at."""


def _errors(error) -> list:
    """An error and its causes (Dagster wraps the asset's own exception)."""
    out = []
    while error is not None:
        out.append(error)
        error = error.cause or error.context
    return out


def check_failures_only(result: dg.ExecuteInProcessResult) -> None:
    """A run failed by a blocking check (a held batch) is the station's state, shown in the
    summary, and the other stations go on; any other failure stops `enteronce run` with the
    message of the asset's own error."""
    if result.success:
        return
    user_errors = {c.__name__ for c in _subclasses(EnteronceError)}
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        chain = _errors(event.step_failure_data.error)
        if any(e.cls_name == CHECK_FAILED for e in chain):
            continue
        mine = next((e for e in chain if e.cls_name in user_errors), None)
        if mine is not None:
            raise EnteronceError(mine.message.strip())
        raise RunFailed(f"step {event.step_key} of run {result.run_id} failed: {chain[-1].message.strip()} "
                        "(the run's whole log is in the Dagster UI)")


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def stations_with_work(project: Project, station_ids: list[str]) -> list[str]:
    """The stations among `station_ids` that a run has something to do for, as the drop sensor
    decides (pipelines/sensors.py): drops (or a stations.yaml entry, or front-desk entries) other
    than the version the warehouse last ingested, a batch not validated yet, or drops whose
    version cannot be taken (the station's run then says why). In `station_ids`' order.

    A station with nothing new costs a Dagster run all the same (a second or so: 40 stations
    turned a 10k-record drop into a minute of runs that found nothing), so `enteronce run`
    runs only these; `--station` runs a station regardless."""
    from connectors.versions import current_version
    from warehouse.entry import entry_marks
    from warehouse.quality import QualityStore

    store = project.open_warehouse()
    try:
        ingested, entries = store.station_versions(), entry_marks(store)
        unvalidated = set(QualityStore(store).unvalidated_batches(None, station_ids)["station_id"])
    finally:
        store.dispose()
    configs = {st.id: st for st in project.stations.stations}
    return [sid for sid in station_ids if sid in unvalidated
            or ingested.get(sid) != current_version(configs[sid], project.config_dir, entries.get(sid))[0]]


def materialize_project(
    project: Project,
    station_ids: list[str],
    on_station: Callable[[str], None] | None = None,
    *,
    resolve: bool = True,
    on_wait: Callable[[str], None] | None = None,
    wait: bool = True,
    only: Collection[str] | None = None,
    launched_by: str = "enteronce run",
) -> list[dg.ExecuteInProcessResult]:
    """One run per range of consecutive station partitions with work, as the drop sensor launches
    them (pipelines.partitions), then resolution and publication, the subscribers' feeds, the
    quality pass (with the golden suites), the feeds again when the quality pass wrote events,
    and the audit report, in this process. The report's run comes last.

    One `enteronce run` at a time per warehouse: a second one waits for the first (`on_wait`
    hears who holds it) and then finds nothing left to do; with `wait=False` it raises
    WarehouseBusy instead. Daemon runs may interleave step by step; each step holds the
    warehouse while it writes (ProjectResource.writing).
    A station whose blocking check fails (a held batch) does not stop the others; any other
    failure raises (earlier stations committed: each drop is its own transaction, so rerunning
    resumes cleanly).
    `only`: the names of the phases to run (default: all); `launched_by` tags the runs.
    """
    store = project.open_warehouse()
    try:
        with (warehouse_lock(store.engine, "run", purpose="enteronce run", on_wait=on_wait, wait=wait),
              _secret_free_resource(project) as resource):
            return _materialize(project, store, station_ids, on_station, resource, resolve=resolve, only=only,
                                launched_by=launched_by)
    finally:
        store.dispose()


@contextmanager
def _secret_free_resource(project: Project) -> Iterator[ProjectResource]:
    """The resource for in-process runs. Dagster keeps every run's resource config in its storage
    (and shows it in the UI), so the warehouse URL, which may carry a password, goes in as a
    reference to the environment, never as its value; the variable is set only while the runs
    last (this process may open other projects afterwards)."""
    before = os.environ.get(WAREHOUSE_ENV)
    os.environ[WAREHOUSE_ENV] = project.warehouse_url
    try:
        yield ProjectResource(config_dir=str(project.config_dir), warehouse_url=dg.EnvVar(WAREHOUSE_ENV))
    finally:
        if before is None:
            os.environ.pop(WAREHOUSE_ENV, None)
        else:
            os.environ[WAREHOUSE_ENV] = before


def _materialize(project: Project, store: Warehouse, station_ids: list[str], on_station, resource: ProjectResource, *,
                 resolve: bool, only: Collection[str] | None = None, launched_by: str = "enteronce run"):
    # a run off the main thread (the entry publisher's, in a serving process) captures no output
    instance = open_instance(project, capture_output=threading.current_thread() is threading.main_thread())
    missing, order = with_new(instance.get_dynamic_partitions(stations_partitions.name), station_ids)
    if missing:
        instance.add_dynamic_partitions(stations_partitions.name, missing)
    station_ranges = consecutive_ranges(order, station_ids)
    resources = {"project": resource}
    results = []

    def checked(result: dg.ExecuteInProcessResult) -> dg.ExecuteInProcessResult:
        try:
            check_failures_only(result)
        except EnteronceError as exc:
            exc.results = [*results, result]  # what ran, so `enteronce run` still prints its summary
            raise
        return result

    # the graph of this project's entity types (the module's ASSETS are the configured project's)
    project_defs = definitions_for(project.pipeline_types)
    assets, phases = list(project_defs.assets), run_phases(project_defs)

    base_tags = {LAUNCHED_BY_TAG: launched_by}

    def run(stage: str, *, tags: dict[str, str] | None = None, **kwargs) -> dg.ExecuteInProcessResult:
        return checked(dg.materialize(assets, instance=instance, resources=resources, run_config=QUIET,
                                      raise_on_error=False, tags={**base_tags, **(tags or {}), STAGE_TAG: stage},
                                      **kwargs))

    def step(name: str) -> None:
        if on_station is not None:
            on_station(name)

    def build_feeds() -> None:  # one run over every subscriber
        for result in run_feeds(project, instance, assets, resources, QUIET, {**base_tags, STAGE_TAG: "feeds"}):
            results.append(checked(result))

    feeds_phase: str | None = None  # its name, once the feeds were built in this run
    keep_gx = False  # GX's process, started for the quality pass, outlives the feeds' phase
    for phase in phases:
        if only is not None and phase.name not in only:
            continue
        if phase.partitions != stations_partitions.name and not resolve:
            continue
        try:
            if phase.partitions == stations_partitions.name:  # one run per range of stations, as the drop sensor
                for keys in station_ranges:
                    step(keys[0])
                    key, range_tags = run_target(keys)
                    results.append(run("ingest", selection=phase.selection, partition_key=key, tags=range_tags))
                continue
            step(phase.name)
            if phase.partitions == subscribers_partitions.name:
                if any(p.checks_in for p in phases[phases.index(phase) + 1:] if only is None or p.name in only):
                    keep_gx = prewarm_validation(project, store.count("golden_records"))
                build_feeds()
                feeds_phase = phase.name
            elif phase.partitions is None:
                results.append(run("publication", selection=phase.selection))
                # a phase after the feeds that wrote events (the quality pass's correction tasks): they
                # go to the subscribers in this run too, before the report that audits the deliveries
                if feeds_phase is not None and subscribers_behind(
                        store, instance.get_dynamic_partitions(subscribers_partitions.name))[1]:
                    step(f"{feeds_phase} again")
                    build_feeds()
            else:
                raise RunFailed(f"phase {phase.name!r}: `enteronce run` does not know partitions {phase.partitions!r}")
        finally:
            # the phase's Great Expectations process goes with it (quality.gx_worker): the next
            # phase, resolution after the stations', has the memory to itself; one started for
            # the quality pass during the feeds' phase lasts until the pass is done
            if not (keep_gx and phase.partitions == subscribers_partitions.name):
                gx_worker.close()
    return results
