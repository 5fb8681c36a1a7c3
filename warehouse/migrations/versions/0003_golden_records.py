"""golden records, versions, change events, entity changes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 05:12:56.861618
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('change_events',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('op', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('changed_fields', sa.JSON(), nullable=False),
    sa.Column('before', sa.Text(), nullable=True),
    sa.Column('after', sa.Text(), nullable=True),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_change_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_change_events_event_id'))
    )
    with op.batch_alter_table('change_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_events_entity_id'), ['entity_id'], unique=False)

    op.create_table('entity_changes',
    sa.Column('run_seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('op', sa.String(length=16), nullable=False),
    sa.Column('merged_into', sa.String(length=64), nullable=True),
    sa.Column('merged_from', sa.JSON(), nullable=True),
    sa.Column('parts', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('run_seq', 'entity_id', name=op.f('pk_entity_changes'))
    )
    op.create_table('golden_records',
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('area_code', sa.String(length=16), nullable=True),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('provenance', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('entity_id', name=op.f('pk_golden_records'))
    )
    with op.batch_alter_table('golden_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_golden_records_entity_type_area_code'), ['entity_type', 'area_code'], unique=False)

    op.create_table('golden_state',
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('resolution_seq', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('entity_type', name=op.f('pk_golden_state'))
    )
    op.create_table('golden_versions',
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('op', sa.String(length=16), nullable=False),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('provenance', sa.Text(), nullable=False),
    sa.Column('changed_fields', sa.JSON(), nullable=False),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('entity_id', 'version', name=op.f('pk_golden_versions'))
    )
    with op.batch_alter_table('entity_membership', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updated_seq', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_entity_membership_entity_type_updated_seq'), ['entity_type', 'updated_seq'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('entity_membership', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entity_membership_entity_type_updated_seq'))
        batch_op.drop_column('updated_seq')

    op.drop_table('golden_versions')
    op.drop_table('golden_state')
    with op.batch_alter_table('golden_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_golden_records_entity_type_area_code'))

    op.drop_table('golden_records')
    op.drop_table('entity_changes')
    with op.batch_alter_table('change_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_change_events_entity_id'))

    op.drop_table('change_events')

