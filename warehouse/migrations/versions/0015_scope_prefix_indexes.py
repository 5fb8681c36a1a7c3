"""scope prefixes by index on PostgreSQL (text_pattern_ops)

A subscriber's snapshot page reads its scope's parts (an area prefix, the station's own records)
with LIKE 'prefix%'; under a collation other than C, PostgreSQL serves LIKE by no ordinary index
and every page scanned the table. SQLite reads the same prefixes as key ranges and needs nothing.

Revision ID: 0015
Revises: 0014
"""
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index('ix_golden_records_area_prefix', 'golden_records', ['entity_type', 'area_code'],
                    postgresql_ops={'area_code': 'text_pattern_ops'})
    op.create_index('ix_entity_membership_key_prefix', 'entity_membership', ['entity_type', 'record_key'],
                    postgresql_ops={'record_key': 'text_pattern_ops'})


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index('ix_entity_membership_key_prefix', table_name='entity_membership')
    op.drop_index('ix_golden_records_area_prefix', table_name='golden_records')
