"""The drop sensor: registers stations as partitions and launches ingestion of new drops."""


import json

import dagster as dg

from connectors.versions import station_version
from pipelines.assets import ingest_job
from pipelines.partitions import stations_partitions
from pipelines.resources import ProjectResource


@dg.sensor(job=ingest_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def station_drops_sensor(context: dg.SensorEvaluationContext, project: ProjectResource) -> dg.SensorResult:
    """Cursor: station id -> version of its sources. A changed version launches one run whose
    run key carries that version, so the same drop is never launched twice."""
    cursor: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    proj = project.project
    known = set(context.instance.get_dynamic_partitions(stations_partitions.name))
    new_ids = [s for s in proj.station_ids if s not in known]
    requests: list[dg.RunRequest] = []
    for station in proj.stations.stations:
        try:
            version = station_version(station, proj.config_dir)
        except Exception as exc:  # noqa: BLE001 - one broken source must not stall the others
            context.log.warning(f"station {station.id}: cannot list drops: {exc}")
            continue
        if cursor.get(station.id) != version:
            cursor[station.id] = version
            requests.append(dg.RunRequest(partition_key=station.id, run_key=f"{station.id}:{version}"))
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor, sort_keys=True),
        dynamic_partitions_requests=[stations_partitions.build_add_request(new_ids)] if new_ids else [],
        skip_reason=None if requests else "no new drops",
    )
