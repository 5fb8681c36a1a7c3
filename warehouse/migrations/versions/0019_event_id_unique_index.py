"""change_events.event_id unique by an index instead of a table constraint

Same guarantee, under the same name. SQLite cannot drop a table constraint, but it can drop an
index inside a transaction and build it again: a publication of many more events than the
outbox holds (the first publication of a million records) inserts them without the index and
builds it once after the insert, which costs a sort instead of a random B-tree descent per event
(warehouse.bulk.indexes_built_after). SQLite copies the table once to drop the constraint.

Revision ID: 0019
Revises: 0018
"""
from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('change_events') as batch:
        batch.drop_constraint('uq_change_events_event_id', type_='unique')
    op.create_index('uq_change_events_event_id', 'change_events', ['event_id'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_change_events_event_id', table_name='change_events')
    with op.batch_alter_table('change_events') as batch:
        batch.create_unique_constraint('uq_change_events_event_id', ['event_id'])
