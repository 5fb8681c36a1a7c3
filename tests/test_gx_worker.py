"""Great Expectations in its own process (quality.gx_worker): the same validations as in this
process, a clear error when that process dies, and a pipeline process that never imports GX while
it ingests and resolves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from core.errors import EnteronceError
from quality import gx_worker
from quality.validate import GxProject
from test_quality_setwise import PERSONS, options, person, persons

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture()
def phase_mode(monkeypatch: pytest.MonkeyPatch):
    """The default lifecycle (the test session keeps its worker for the process: conftest)."""
    gx_worker.close(force=True)
    monkeypatch.setenv(gx_worker.MODE_ENV, "phase")
    yield
    gx_worker.close(force=True)


def batches() -> list[tuple[str, object]]:
    return [
        ("s1/a", persons(person("s1", "p1"), person("s1", "p2", phone="6812345"), person("s1", "p2"))),
        ("s2/a", persons(person("s2", "p1", sex=None), person("s2", "p3"))),
    ]


def test_the_worker_gives_what_this_process_gives(tmp_path: Path, phase_mode) -> None:
    sets = batches()
    here = GxProject(tmp_path / "here").validate_many(sets, PERSONS, **options(PERSONS))
    worker = gx_worker.GxWorker(tmp_path / "there")
    pending = worker.submit_many(sets, PERSONS, **options(PERSONS))  # handed over, answered later
    assert gx_worker.running()
    there = pending.result()
    assert len(there) == len(here) == 2
    for a, b in zip(here, there, strict=True):
        assert_frame_equal(a.results, b.results, check_exact=True)
        assert_frame_equal(a.failures, b.failures, check_exact=True)
        assert (a.success, a.evaluated, a.successful, a.suite) == (b.success, b.evaluated, b.successful, b.suite)
    assert there[0].failures.height >= 2  # the bad phone, the duplicate local id: real failures came back
    # the child wrote its GX project where this process would have
    assert (tmp_path / "there" / "gx" / "great_expectations.yml").exists()
    assert worker.docs_index == GxProject(tmp_path / "there").docs_index

    gx_worker.close()
    assert not gx_worker.running()
    assert worker.validate(sets[0][1], PERSONS, label="again", **options(PERSONS)).results.height  # a new child, started on demand


def test_a_dead_worker_is_a_clear_error_and_the_next_call_starts_anew(tmp_path: Path, phase_mode) -> None:
    worker = gx_worker.GxWorker(tmp_path)
    frame = batches()[0][1]
    worker.validate(frame, PERSONS, label="first", **options(PERSONS))
    (child,) = gx_worker._pool._processes.values()
    child.kill()
    child.join()
    with pytest.raises(gx_worker.WorkerFailed, match="Great Expectations process ended"):
        worker.validate(frame, PERSONS, label="second", **options(PERSONS))
    assert not gx_worker.running()
    assert worker.validate(frame, PERSONS, label="third", **options(PERSONS)).evaluated > 0


def test_modes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(gx_worker.MODE_ENV, "inline")
    assert isinstance(gx_worker.gx_for(tmp_path), GxProject)
    monkeypatch.setenv(gx_worker.MODE_ENV, "phase")
    assert isinstance(gx_worker.gx_for(tmp_path), gx_worker.GxWorker)
    monkeypatch.setenv(gx_worker.MODE_ENV, "sometimes")
    with pytest.raises(EnteronceError, match="ENTERONCE_GX_WORKER='sometimes': expected one of phase, process, inline"):
        gx_worker.gx_for(tmp_path)


PIPELINE = textwrap.dedent("""
    import json, sys
    from connectors.simulate import simulate_network
    from pipelines.project import Project
    from pipelines.runner import PHASES, materialize_project
    from quality import gx_worker
    from warehouse.quality import QualityStore

    import pipelines.quality_assets
    out, every, most = sys.argv[1], sys.argv[2] == "all", int(sys.argv[3])
    pipelines.quality_assets.GX_PROCESS_GOLDEN = most
    simulate_network(out, stations=3, persons=300, seed=5)
    project = Project.load(out)
    seen = []
    # the stations', then resolution and publication; or every phase
    phases = [p.name for p in PHASES][:None if every else 2]

    def on_step(name):
        seen.append({"step": name, "gx_imported": "great_expectations" in sys.modules,
                     "worker": gx_worker.running()})

    materialize_project(project, project.station_ids, on_station=on_step, only=phases)
    runs = QualityStore(project.open_warehouse()).runs()
    print(json.dumps({"phases": phases, "seen": seen, "validated": runs.height,
                      "suites": sorted(set(runs["suite"].to_list())),
                      "gx_imported": "great_expectations" in sys.modules, "worker": gx_worker.running()}))
""")


def test_the_pipeline_process_validates_without_importing_gx(tmp_path: Path) -> None:
    """What `enteronce run` does for the stations and for resolution, in a fresh interpreter: the
    stations' batches are validated (their runs stored), yet neither the stations' runs nor
    resolution import GX in this process, and its GX process is gone once the stations' phase
    ends."""
    got = _pipeline(tmp_path, "two")
    assert got["validated"] >= 6  # raw and standardised suites over each station's batches
    assert not got["gx_imported"] and not got["worker"]
    resolution = [s for s in got["seen"] if s["step"] == got["phases"][1]]
    assert resolution == [{"step": got["phases"][1], "gx_imported": False, "worker": False}]


def _pipeline(tmp_path: Path, phases: str, golden_in_process: int = 100_000) -> dict:
    env = {**os.environ, gx_worker.MODE_ENV: "phase", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PIPELINE, str(tmp_path / "net"), phases, str(golden_in_process)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("golden_in_process", [100_000, 0])
def test_a_small_run_validates_its_golden_records_in_the_gx_process_too(tmp_path: Path, golden_in_process) -> None:
    """The whole `enteronce run` in a fresh interpreter: with few golden records (at most
    GX_PROCESS_GOLDEN) GX's process starts with the feeds and validates the quality pass's golden
    and freshness suites too, so this process never imports GX, and that process ends with the
    pass; with more, the pass validates them here (its frames are not held twice)."""
    got = _pipeline(tmp_path, "all", golden_in_process)
    assert {"golden_person", "golden_dwelling", "station_freshness"} <= set(got["suites"]), got["suites"]
    assert not got["worker"]  # ended with the quality pass
    steps = {s["step"]: s for s in got["seen"]}
    feeds, quality = got["phases"][2], got["phases"][3]
    if golden_in_process:
        assert not got["gx_imported"]
        assert steps[quality]["worker"]  # started during the feeds' phase, still there for the pass
    else:
        assert got["gx_imported"] and not steps[quality]["worker"]
    assert not steps[feeds]["worker"] and not steps[feeds]["gx_imported"]  # nothing of GX before it
