"""The warehouse schema, in SQLAlchemy Core. Alembic migrations (warehouse/migrations) are the
source of truth for existing databases; this module mirrors head for queries and bulk loads."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = sa.DateTime(timezone=True)

stations = sa.Table(
    "stations",
    metadata,
    sa.Column("station_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("jurisdiction", sa.JSON, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    # The station version (connectors.versions) its last completed ingest started from, so a
    # sensor in any Dagster instance can tell an already-ingested drop cheaply (migration 0007).
    sa.Column("drops_version", sa.String(64)),
    sa.Column("drops_version_at", TS),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(160), primary_key=True),
    sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.station_id"), nullable=False),
    sa.Column("source_name", sa.String(64), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),  # as wide as type names (migration 0010)
    sa.Column("source_kind", sa.String(8), nullable=False),
    sa.Column("source_ref", sa.Text, nullable=False),  # file path, or URL (password hidden) + table
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("encoding", sa.String(16)),
    sa.Column("watermark_from", sa.Text),
    sa.Column("watermark_to", sa.Text),
    sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_loaded", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_quarantined", sa.Integer, nullable=False, server_default="0"),
    # rows identical to the station's current record (same record key, row hash and source
    # config): already stored by an earlier batch, so not stored again (migration 0018)
    sa.Column("rows_unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False),  # loaded | rejected
    sa.Column("error", sa.Text),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    # SHA-256 of the source config that read it: a rejected drop is retried once the config
    # changes (migration 0007; null for batches from before it).
    sa.Column("config_digest", sa.String(64)),
    sa.UniqueConstraint("station_id", "source_name", "content_hash"),
    sa.Index(None, "station_id"),
)

# Facts about this warehouse itself (migration 0007), e.g. `warehouse_id`: a uuid4 hex made once
# by the migration, so two Dagster instances can tell whether they look at the same warehouse.
hub_info = sa.Table(
    "hub_info",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

source_state = sa.Table(
    "source_state",
    metadata,
    sa.Column("station_id", sa.String(64), primary_key=True),
    sa.Column("source_name", sa.String(64), primary_key=True),
    sa.Column("watermark", sa.Text),
    sa.Column("updated_at", TS, nullable=False),
)

raw_records = sa.Table(
    "raw_records",
    metadata,
    sa.Column("batch_id", sa.String(160), sa.ForeignKey("batches.batch_id"), primary_key=True),
    sa.Column("row_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("local_id", sa.String(128), nullable=False),
    sa.Column("record_key", sa.String(200), nullable=False),
    sa.Column("row_hash", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON object: the source's own headers -> text
    sa.Index(None, "record_key"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("quarantine_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(160), sa.ForeignKey("batches.batch_id"), nullable=False),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("row_number", sa.Integer),  # null when the whole file was rejected
    sa.Column("field", sa.String(200)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("original", sa.Text, nullable=False),
    sa.Column("stored_path", sa.Text),  # where a rejected file was kept, byte for byte
    sa.Index(None, "batch_id"),
)

def _address_columns() -> list[sa.Column]:
    return [
    sa.Column("address", sa.Text),
    sa.Column("addr_district", sa.String(64)),
    sa.Column("addr_street", sa.String(64)),
    sa.Column("addr_community", sa.String(64)),
    sa.Column("addr_road", sa.String(128)),
    sa.Column("addr_number", sa.String(32)),
    sa.Column("addr_building", sa.String(32)),
    sa.Column("addr_unit", sa.String(32)),
    sa.Column("addr_room", sa.String(32)),
    ]


def _lineage_columns() -> list[sa.Column]:
    return [
        sa.Column("record_key", sa.String(200), primary_key=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("local_id", sa.String(128), nullable=False),
        sa.Column("batch_id", sa.String(160), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("row_hash", sa.String(40), nullable=False),
    ]


def _tail_columns() -> list[sa.Column]:
    return [
        *_address_columns(),
        sa.Column("area_code", sa.String(16)),
        sa.Column("area_code_valid", sa.Boolean),
        sa.Column("source_updated_at", sa.DateTime),
        sa.Column("issues", sa.Text),
    ]


# Current standardised state of each source record (record_key = station id + local id); the
# history of every version stays in raw_records.
person_records = sa.Table(
    "person_records",
    metadata,
    *_lineage_columns(),
    sa.Column("name", sa.String(128)),
    sa.Column("name_norm", sa.String(128)),
    sa.Column("name_pinyin", sa.String(256)),
    sa.Column("sex", sa.String(1)),
    sa.Column("birth_date", sa.Date),
    sa.Column("id_number", sa.String(64)),
    sa.Column("id_upgraded", sa.Boolean),
    sa.Column("id_valid", sa.Boolean),
    sa.Column("id_issue", sa.String(200)),
    sa.Column("id_birth_date", sa.Date),
    sa.Column("id_sex", sa.String(1)),
    sa.Column("id_consistent", sa.Boolean),
    sa.Column("phone", sa.String(32)),
    sa.Column("phone_kind", sa.String(16)),
    sa.Column("phone_valid", sa.Boolean),
    *_tail_columns(),
    sa.Index(None, "station_id"),
)

organisation_records = sa.Table(
    "organisation_records",
    metadata,
    *_lineage_columns(),
    sa.Column("name", sa.String(256)),
    sa.Column("name_norm", sa.String(256)),
    sa.Column("credit_code", sa.String(64)),
    sa.Column("credit_code_valid", sa.Boolean),
    sa.Column("credit_code_issue", sa.String(200)),
    sa.Column("legal_rep", sa.String(128)),
    sa.Column("legal_rep_norm", sa.String(128)),
    sa.Column("phone", sa.String(32)),
    sa.Column("phone_kind", sa.String(16)),
    sa.Column("phone_valid", sa.Boolean),
    *_tail_columns(),
    sa.Index(None, "station_id"),
)

# Dwellings (实有房屋, migration 0010): one row of a station's housing register; the columns the
# `dwelling` type's field standardisers produce (core/entity_types.yaml).
dwelling_records = sa.Table(
    "dwelling_records",
    metadata,
    *_lineage_columns(),
    *_address_columns(),
    sa.Column("owner_name", sa.String(128)),
    sa.Column("owner_name_norm", sa.String(128)),
    sa.Column("owner_name_pinyin", sa.String(256)),
    sa.Column("owner_id_number", sa.String(64)),
    sa.Column("owner_id_number_upgraded", sa.Boolean),
    sa.Column("owner_id_number_valid", sa.Boolean),
    sa.Column("owner_id_number_issue", sa.String(200)),
    sa.Column("owner_id_number_birth_date", sa.Date),
    sa.Column("owner_id_number_sex", sa.String(1)),
    sa.Column("owner_phone", sa.String(32)),
    sa.Column("owner_phone_kind", sa.String(16)),
    sa.Column("owner_phone_valid", sa.Boolean),
    sa.Column("use", sa.String(64)),
    sa.Column("occupants", sa.BigInteger),
    sa.Column("occupants_valid", sa.Boolean),
    sa.Column("area_code", sa.String(16)),
    sa.Column("area_code_valid", sa.Boolean),
    sa.Column("source_updated_at", sa.DateTime),
    sa.Column("source_updated_at_valid", sa.Boolean),
    sa.Column("issues", sa.Text),
    sa.Index(None, "station_id"),
)

# The bundled entity types' record tables, by table name (core/entity_types.yaml names them);
# they come from the Alembic migrations. A project's own types get tables built from their
# fields (`record_table`), created by Warehouse.migrate when absent.
BUNDLED_RECORD_TABLES: dict[str, sa.Table] = {t.name: t for t in (person_records, organisation_records,
                                                                    dwelling_records)}

COLUMN_TYPES = {"text": sa.Text, "date": sa.Date, "timestamp": sa.DateTime, "boolean": sa.Boolean,
                "integer": sa.BigInteger, "number": sa.Float}


def record_table(name: str, columns: dict[str, str], meta: sa.MetaData | None = None) -> sa.Table:
    """A project entity type's record table, as person_records is built: the lineage columns,
    the type's standardised columns (name -> one of COLUMN_TYPES), then the tail every record
    table has: `source_updated_at` (null unless the type declares it: survivorship's tie-break
    reads it) and `issues`. Built in a MetaData of its own unless one is given: projects in one
    process may declare different types under one name."""
    tail = ("source_updated_at", "issues")
    own = [sa.Column(c, COLUMN_TYPES[kind]()) for c, kind in columns.items() if c not in tail]
    return sa.Table(name, meta if meta is not None else sa.MetaData(naming_convention=metadata.naming_convention),
                    *_lineage_columns(), *own, sa.Column("source_updated_at", sa.DateTime), sa.Column("issues", sa.Text),
                    sa.Index(None, "station_id"))

# -- entity resolution -----------------------------------------------------------------------

# One row per resolution run; `seq` orders runs and dates entity ids (older id = smaller seq).
resolution_runs = sa.Table(
    "resolution_runs",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # full | incremental
    sa.Column("records_considered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("stats", sa.JSON),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
)

# The trained Fellegi-Sunter model per entity type, reused by incremental runs so that they
# score exactly as a full run would.
resolution_models = sa.Table(
    "resolution_models",
    metadata,
    sa.Column("entity_type", sa.String(32), primary_key=True),
    sa.Column("settings_hash", sa.String(64), nullable=False),
    sa.Column("model", sa.Text, nullable=False),  # JSON
    sa.Column("trained_at", TS, nullable=False),
)

# Scored pairs at or above the review threshold: match edges for clustering, review candidates.
scored_pairs = sa.Table(
    "scored_pairs",
    metadata,
    sa.Column("entity_type", sa.String(32), primary_key=True),
    sa.Column("left_id", sa.String(200), primary_key=True),
    sa.Column("right_id", sa.String(200), primary_key=True),
    sa.Column("match_probability", sa.Float, nullable=False),
    sa.Column("match_weight", sa.Float, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),  # match | review
    sa.Column("weights", sa.Text, nullable=False),  # JSON: comparison -> log2 Bayes factor
    sa.Column("run_seq", sa.Integer, nullable=False),
    # Why a pair the model scored high waits for a reviewer instead of linking (null: undecided).
    sa.Column("review_reason", sa.Text),
    sa.Index(None, "entity_type", "right_id"),
    sa.Index(None, "entity_type", "decision"),
)

# Reviewers' verdicts; the latest per pair overrides the model on every later run.
judgements = sa.Table(
    "judgements",
    metadata,
    sa.Column("judgement_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("left_id", sa.String(200), nullable=False),
    sa.Column("right_id", sa.String(200), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),  # same | different
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("judged_at", TS, nullable=False),
    sa.Index(None, "entity_type", "left_id", "right_id"),
)

entities = sa.Table(
    "entities",
    metadata,
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("created_seq", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | retired
    sa.Column("merged_into", sa.String(64)),
    sa.Column("updated_seq", sa.Integer, nullable=False),
    sa.Index(None, "entity_type", "status"),
)

# Which entity each record belongs to, since which run; row_hash tells a changed record.
entity_membership = sa.Table(
    "entity_membership",
    metadata,
    sa.Column("entity_type", sa.String(32), primary_key=True),
    sa.Column("record_key", sa.String(200), primary_key=True),
    sa.Column("entity_id", sa.String(64), nullable=False),
    sa.Column("row_hash", sa.String(40), nullable=False),
    sa.Column("since_seq", sa.Integer, nullable=False),
    sa.Column("updated_seq", sa.Integer, nullable=False, server_default="0"),  # run that last wrote it
    sa.Index(None, "entity_id"),
    sa.Index(None, "entity_type", "updated_seq"),
    # a station's own records (`record_key LIKE 'station:%'`) by index on PostgreSQL (migration
    # 0015, as ix_golden_records_area_prefix below)
    sa.Index("ix_entity_membership_key_prefix", "entity_type", "record_key",
             postgresql_ops={"record_key": "text_pattern_ops"}).ddl_if(dialect="postgresql"),
)

# What each resolution run did to entities, for the golden step to turn into change events.
entity_changes = sa.Table(
    "entity_changes",
    metadata,
    sa.Column("run_seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),  # create | update | merge | split | retire
    sa.Column("merged_into", sa.String(64)),
    sa.Column("merged_from", sa.JSON),
    sa.Column("parts", sa.JSON),
)

# -- golden records and change propagation ---------------------------------------------------

golden_records = sa.Table(
    "golden_records",
    metadata,
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | retired
    sa.Column("area_code", sa.String(16)),  # for scoping feeds by jurisdiction
    sa.Column("record", sa.Text, nullable=False),  # JSON: field -> surviving value
    sa.Column("provenance", sa.Text, nullable=False),  # JSON: per source record, the fields it supplied (core/provenance.py)
    sa.Column("updated_at", TS, nullable=False),
    sa.Index(None, "entity_type", "area_code"),
    # PostgreSQL only (migration 0015): a scope's area prefix (`area_code LIKE '5001%'`) by index in
    # any collation (text_pattern_ops; the index above serves LIKE only under the C collation).
    # SQLite reads these prefixes as ranges of the index above (warehouse/feeds.py golden_in_scope).
    sa.Index("ix_golden_records_area_prefix", "entity_type", "area_code",
             postgresql_ops={"area_code": "text_pattern_ops"}).ddl_if(dialect="postgresql"),
)

golden_versions = sa.Table(
    "golden_versions",
    metadata,
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False),
    sa.Column("changed_fields", sa.JSON, nullable=False),
    sa.Column("sources", sa.JSON, nullable=False),  # the station records behind the change
    sa.Column("valid_from", TS, nullable=False),
    sa.Column("valid_to", TS),
)

# The outbox: one row per change, `seq` global and strictly increasing, written in the same
# transaction as the golden records it describes.
change_events = sa.Table(
    "change_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.String(64), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),  # create | update | merge | split | retire
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("changed_fields", sa.JSON, nullable=False),
    sa.Column("before", sa.Text),  # JSON
    sa.Column("after", sa.Text),  # JSON
    sa.Column("sources", sa.JSON, nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Index(None, "entity_id"),
    # A unique index, not a table constraint (migration 0019): SQLite can drop an index inside a
    # transaction and build it again, which a first publication does (warehouse.bulk.indexes_built_after).
    sa.Index("uq_change_events_event_id", "event_id", unique=True),
)

# How far the golden step has caught up with resolution, per entity type.
golden_state = sa.Table(
    "golden_state",
    metadata,
    sa.Column("entity_type", sa.String(32), primary_key=True),
    sa.Column("resolution_seq", sa.Integer, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# -- feeds: cursors and the delivery log (migration 0004) --------------------------------------
# How far each subscriber has received its feed, per channel (file | api): the snapshot's seq and
# the last acknowledged event seq. Only ever moves forward (warehouse/feeds.py).
feed_cursors = sa.Table(
    "feed_cursors",
    metadata,
    sa.Column("subscriber_id", sa.String(64), primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),  # file | api
    sa.Column("acked_seq", sa.Integer),
    sa.Column("snapshot_seq", sa.Integer),
    sa.Column("updated_at", TS, nullable=False),
)

# The audit log of every delivery, append-only: who received which entities and which personal
# fields at which masking level, when, through which channel and token.
feed_deliveries = sa.Table(
    "feed_deliveries",
    metadata,
    sa.Column("delivery_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", sa.String(64), nullable=False),
    sa.Column("token_id", sa.String(64)),
    sa.Column("channel", sa.String(16), nullable=False),  # file | api
    sa.Column("kind", sa.String(16), nullable=False),  # events | snapshot
    sa.Column("seq_from", sa.Integer),
    sa.Column("seq_to", sa.Integer),
    sa.Column("event_count", sa.Integer, nullable=False),
    sa.Column("entity_count", sa.Integer, nullable=False),
    sa.Column("entity_ids", sa.JSON, nullable=False),  # list of entity ids
    sa.Column("fields", sa.JSON, nullable=False),  # field -> full | masked, fields actually delivered
    sa.Column("delivered_at", TS, nullable=False),
    # an API delivery's key in the server's audit journal (feeds/journal.py): a row replayed
    # after a crash is recognised, never written twice (migration 0016)
    sa.Column("journal_key", sa.String(32)),
    sa.Index(None, "subscriber_id", "delivered_at"),
    sa.Index(None, "journal_key", unique=True),
)

# -- feed API pages prepared when feeds are built (migrations 0014, 0017) -------------------------
# Per subscriber, the events it receives as the API delivers them (scoped, projected and masked
# once, by the feed build), in blocks of consecutive events (seq first_seq..last_seq, `n` events),
# so that an events page is a few rows read by key. Per event, in the block's order: `seqs` and
# `offsets` (where its line starts in `lines`, in bytes) as ten-digit numbers without separators,
# `entity_ids` and `abouts` (a task's golden entity, '' for none; U+001F-joined; `abouts` empty
# when the block has none), `fields` (the personal fields the line carries, names joined by
# U+001F; lists joined by U+001E) for the audit row; `lines` the JSON lines joined by ",\n" (a JSON
# line holds no raw newline, so the separator is never inside one).
# The blocks of one subscriber are valid only under the policy digest of its mark.
feed_prepared_blocks = sa.Table(
    "feed_prepared_blocks",
    metadata,
    sa.Column("subscriber_id", sa.String(64), primary_key=True),
    sa.Column("last_seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("first_seq", sa.Integer, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("seqs", sa.Text, nullable=False),
    sa.Column("offsets", sa.Text, nullable=False),
    sa.Column("entity_ids", sa.Text, nullable=False),
    sa.Column("abouts", sa.Text, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),
    sa.Column("lines", sa.Text, nullable=False),
)

# What is prepared per subscriber: its events in (from_seq, to_seq] under the policy `digest`
# (scope, types, fields, levels and masking rules), as rows of `generation` (a new generation
# replaces every row of the subscriber in one transaction).
feed_prepared_marks = sa.Table(
    "feed_prepared_marks",
    metadata,
    sa.Column("subscriber_id", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("from_seq", sa.Integer, nullable=False),
    sa.Column("to_seq", sa.Integer, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# -- feed API tokens (migration 0005) -------------------------------------------------------
# Bearer tokens of the feed API: only the SHA-256 of each token is kept; the token itself is shown
# once, when it is issued. A revoked token keeps its row (revoked_at) so the audit log can name it.
feed_tokens = sa.Table(
    "feed_tokens",
    metadata,
    sa.Column("token_id", sa.String(40), primary_key=True),
    sa.Column("subscriber_id", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(200)),
    sa.Column("issued_at", TS, nullable=False),
    sa.Column("revoked_at", TS),
    sa.Index(None, "subscriber_id"),
)

# -- data quality: validation results, scores, holds, correction tasks (migration 0006) -------

# One row per suite run on one batch (or one station, or the golden records): what the report
# and the Dagster checks show; results per expectation below it.
validation_runs = sa.Table(
    "validation_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("suite", sa.String(64), nullable=False),
    sa.Column("data_asset", sa.String(32), nullable=False),  # raw | standardised | golden
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("station_id", sa.String(64)),
    sa.Column("batch_id", sa.String(160)),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("evaluated", sa.Integer, nullable=False),
    sa.Column("successful", sa.Integer, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS, nullable=False),
    sa.Column("data_docs_path", sa.Text),
    sa.Index(None, "station_id", "batch_id"),
    sa.Index(None, "batch_id"),
)

validation_results = sa.Table(
    "validation_results",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("expectation_id", sa.String(128), primary_key=True),
    sa.Column("expectation_type", sa.String(128), nullable=False),
    sa.Column("column_name", sa.String(64)),
    sa.Column("dimension", sa.String(16), nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("element_count", sa.Integer),
    sa.Column("unexpected_count", sa.Integer),
    sa.Column("unexpected_percent", sa.Float),
    sa.Column("observed_value", sa.Text),  # JSON
    sa.Column("sample_rows", sa.Text),  # JSON list of up to 10 {record_key, value}
)

station_scores = sa.Table(
    "station_scores",
    metadata,
    sa.Column("station_id", sa.String(64), primary_key=True),
    sa.Column("entity_type", sa.String(32), primary_key=True),
    sa.Column("batch_id", sa.String(160), primary_key=True),
    sa.Column("dimension", sa.String(16), primary_key=True),
    sa.Column("score", sa.Float, nullable=False),  # 0-100
    sa.Column("computed_at", TS, nullable=False),
)

correction_tasks = sa.Table(
    "correction_tasks",
    metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),  # hash of station, record, field, kind
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("record_key", sa.String(200), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.String(64)),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("station_value", sa.Text),
    sa.Column("expected_value", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),  # expectation | golden_disagreement
    sa.Column("status", sa.String(8), nullable=False),  # open | closed
    sa.Column("opened_at", TS, nullable=False),
    sa.Column("opened_batch", sa.String(160), nullable=False),
    sa.Column("closed_at", TS),
    sa.Column("closed_batch", sa.String(160)),
    # why the task is trustworthy, in an officer's words: which check, which sources, how many agree
    sa.Column("evidence", sa.Text),
    sa.Column("reminded_at", TS),  # when an overdue reminder last went out in the station's feed
    sa.Index(None, "station_id", "status"),
    sa.Index(None, "record_key"),
)

# A batch that failed reconciliation or exceeded the invalid-ID rate: its records are not published.
batch_holds = sa.Table(
    "batch_holds",
    metadata,
    sa.Column("batch_id", sa.String(160), primary_key=True),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("held_at", TS, nullable=False),
    sa.Column("released_at", TS),
    sa.Column("rate", sa.Float),  # the measured rate that held it (e.g. invalid ID numbers), if any
    sa.Column("threshold", sa.Float),  # the quality.yaml threshold it exceeded
)

# How far the correction-task pass has caught up (name -> value), so each pass only looks at
# what changed since the last one.
quality_state = sa.Table(
    "quality_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# -- front desk: match, search and entry audit (migrations 0012, 0013) ------------------------
# Every match and search a subscriber makes, append only: who (subscriber, token), when, what kind,
# the query's keys only as keyed hashes (HMAC-SHA256: a copy of this table tells nobody whom a
# station looked up, yet the same key gives the same hash, so "who searched this ID" is answerable
# by whoever holds the key), which entities were returned and at which field levels.
front_desk_audit = sa.Table(
    "front_desk_audit",
    metadata,
    sa.Column("audit_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", sa.String(64), nullable=False),
    sa.Column("token_id", sa.String(64)),
    sa.Column("channel", sa.String(16), nullable=False),  # api | cli
    sa.Column("kind", sa.String(16), nullable=False),  # match | search | entry
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("key_hashes", sa.JSON, nullable=False),  # field -> HMAC-SHA256 hex of its standardised value
    sa.Column("entity_ids", sa.JSON, nullable=False),  # returned entity ids, best first
    sa.Column("fields", sa.JSON, nullable=False),  # field -> full | masked, fields actually returned
    sa.Column("outcome", sa.String(16), nullable=False),  # ok | refused | limited
    sa.Column("at", TS, nullable=False),
    sa.Column("batch_id", sa.String(128)),  # an entry: the batch it made (or found, or quarantined)
    sa.Column("journal_key", sa.String(32)),  # as in feed_deliveries (migration 0016)
    sa.Index(None, "subscriber_id", "at"),
    sa.Index(None, "journal_key", unique=True),
)

# -- relations between golden records (migration 0011) ------------------------------------------
# One row per run of a relation step (entity_resolution/relations.py) that had something to look
# at: how far into the outbox it had seen (`outbox_seq`, the next run starts from there) and
# what it found.
relation_runs = sa.Table(
    "relation_runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("relation", sa.String(32), nullable=False),
    sa.Column("outbox_seq", sa.Integer, nullable=False),
    sa.Column("stats", sa.JSON),  # links, moved_in, moved_out, ambiguous, events
    sa.Column("started_at", TS, nullable=False),
    sa.Index(None, "relation", "outbox_seq"),
)

# Every link a relation made (e.g. residence: person -> dwelling), never overwritten: a move
# closes the old link (valid_to, closed_run) and opens a new one. Open links have no valid_to.
relation_links = sa.Table(
    "relation_links",
    metadata,
    sa.Column("link_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("relation", sa.String(32), nullable=False),
    sa.Column("from_id", sa.String(64), nullable=False),
    sa.Column("to_id", sa.String(64), nullable=False),
    sa.Column("valid_from", TS, nullable=False),
    sa.Column("valid_to", TS),
    sa.Column("opened_run", sa.Integer, nullable=False),
    sa.Column("closed_run", sa.Integer),
    sa.Index(None, "relation", "from_id"),
    sa.Index(None, "relation", "to_id"),
)

# Each active record's key as the relation step last saw it (`side` from | to; `key` the key
# fields as a JSON object): derived, so that a run finds the records sharing a key with the ones
# that changed without reading every golden record.
relation_keys = sa.Table(
    "relation_keys",
    metadata,
    sa.Column("relation", sa.String(32), primary_key=True),
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("key", sa.String(1000), nullable=False),
    sa.Index(None, "relation", "key"),
)
