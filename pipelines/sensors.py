"""The drop sensor: registers stations as partitions and launches ingestion of new drops."""


import hashlib
import json

import dagster as dg

from connectors.versions import current_version
from pipelines.assets import ingest_job
from pipelines.automation import DROPS_INTERVAL_SECONDS, STAGE_TAG
from pipelines.partitions import consecutive_ranges, range_label, run_target, stations_partitions, with_new
from pipelines.resources import ProjectResource
from warehouse.entry import entry_marks


@dg.sensor(job=ingest_job, minimum_interval_seconds=DROPS_INTERVAL_SECONDS,
           default_status=dg.DefaultSensorStatus.RUNNING)
def station_drops_sensor(context: dg.SensorEvaluationContext, project: ProjectResource) -> dg.SensorResult:
    """Launch ingest runs for the stations whose drops (or whose stations.yaml entry) changed:
    one run per range of consecutive station partitions (pipelines.partitions), so a thousand
    stations' first drops are ten runs, not a thousand.

    The version of a station is cheap to take (file names, sizes and times; SQL: the largest
    watermark; a digest of its config). The warehouse records the version each ingest started
    from, whoever ran it, so a drop that `enteronce run` already loaded launches nothing, and
    the UI's first start does not re-run every station. The cursor (warehouse id, station ->
    version launched) keeps one version from being launched twice while its run is queued; a
    new warehouse behind the same folder starts it afresh. Both are in the run key.
    """
    proj = project.project
    store = project.warehouse
    cursor = json.loads(context.cursor) if context.cursor else {}
    if cursor.get("warehouse_id") != store.warehouse_id():
        cursor = {"warehouse_id": store.warehouse_id(), "stations": {}}
    launched: dict[str, str] = cursor["stations"]
    ingested = store.station_versions()
    entries = entry_marks(store)  # records entered at the front desk count as drops
    new_ids, order = with_new(context.instance.get_dynamic_partitions(stations_partitions.name), proj.station_ids)
    versions: dict[str, str] = {}
    for station in proj.stations.stations:
        version, error = current_version(station, proj.config_dir, entries.get(station.id))
        if error is not None:  # launched all the same: the station shows as failed in the UI, not only here
            context.log.warning(f"station {station.id}: cannot list drops: {error}")
        if launched.get(station.id) == version:
            continue
        launched[station.id] = version
        if ingested.get(station.id) == version:
            continue
        versions[station.id] = version
    requests: list[dg.RunRequest] = []
    for keys in consecutive_ranges(order, versions):
        key, tags = run_target(keys)
        launch = hashlib.sha256("|".join(f"{k}:{versions[k]}" for k in keys).encode()).hexdigest()[:16]
        requests.append(dg.RunRequest(partition_key=key, tags={**tags, STAGE_TAG: "ingest"},
                                      run_key=f"{range_label(keys)}:{launch}:{cursor['warehouse_id'][:8]}"))
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor, sort_keys=True),
        dynamic_partitions_requests=[stations_partitions.build_add_request(new_ids)] if new_ids else [],
        skip_reason=None if requests else "no new drops",
    )
