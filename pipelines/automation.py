"""How a drop travels through the graph with only the daemon running.

- `station_drops_sensor` (pipelines/sensors.py) launches one ingest run per station with a new drop.
- `publication` (this module) evaluates AFTER_UPSTREAM on everything between the station records
  and the report: resolution, golden records and change events, the quality pass and the report
  go in one run once the station runs are done.
- `subscriber_feeds_sensor` (pipelines/feed_assets.py) builds every subscriber's feed whenever
  the outbox has grown, whoever wrote the events (a daemon run, `enteronce run`, a reviewer's
  judgement, a quality pass).

AFTER_UPSTREAM is `eager()` without its "no dependency missing" guard: with a partition per
station, one station whose first ingest failed would otherwise stop resolution for every other
station. Like eager it waits while anything upstream is still running, so the station runs of a
wave of drops are resolved together.
"""

from __future__ import annotations

import dagster as dg

AFTER_UPSTREAM = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after upstream updates")

STAGE_TAG = "enteronce/stage"
# How often the daemon looks. Its sensor loops come round every 5 s, and a sensor is evaluated on a
# round only when its interval has passed since its last tick: 1 means every round (the publication
# and feed sensors ask the warehouse or the instance one question per tick), 9 every second round
# (the drop sensor lists every station's drops: cheap, but it grows with the network).
DROPS_INTERVAL_SECONDS = 9
SENSOR_INTERVAL_SECONDS = 1


def publication_sensor(*assets) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "publication",
        target=dg.AssetSelection.assets(*assets),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        run_tags={STAGE_TAG: "publication"},
        description="Resolves, publishes, checks quality and rebuilds the report after station drops are ingested.",
    )
