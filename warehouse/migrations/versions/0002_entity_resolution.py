"""entity resolution: runs, models, scored pairs, judgements, entities, membership

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 04:45:48.391699
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('entities',
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('created_seq', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('merged_into', sa.String(length=64), nullable=True),
    sa.Column('updated_seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('entity_id', name=op.f('pk_entities'))
    )
    with op.batch_alter_table('entities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_entities_entity_type_status'), ['entity_type', 'status'], unique=False)

    op.create_table('entity_membership',
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('record_key', sa.String(length=200), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('row_hash', sa.String(length=40), nullable=False),
    sa.Column('since_seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('entity_type', 'record_key', name=op.f('pk_entity_membership'))
    )
    with op.batch_alter_table('entity_membership', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_entity_membership_entity_id'), ['entity_id'], unique=False)

    op.create_table('judgements',
    sa.Column('judgement_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('left_id', sa.String(length=200), nullable=False),
    sa.Column('right_id', sa.String(length=200), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('reviewer', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('judged_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('judgement_id', name=op.f('pk_judgements'))
    )
    with op.batch_alter_table('judgements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_judgements_entity_type_left_id_right_id'), ['entity_type', 'left_id', 'right_id'], unique=False)

    op.create_table('resolution_models',
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('settings_hash', sa.String(length=64), nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('trained_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('entity_type', name=op.f('pk_resolution_models'))
    )
    op.create_table('resolution_runs',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('records_considered', sa.Integer(), server_default='0', nullable=False),
    sa.Column('stats', sa.JSON(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_resolution_runs'))
    )
    op.create_table('scored_pairs',
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('left_id', sa.String(length=200), nullable=False),
    sa.Column('right_id', sa.String(length=200), nullable=False),
    sa.Column('match_probability', sa.Float(), nullable=False),
    sa.Column('match_weight', sa.Float(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('weights', sa.Text(), nullable=False),
    sa.Column('run_seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('entity_type', 'left_id', 'right_id', name=op.f('pk_scored_pairs'))
    )
    with op.batch_alter_table('scored_pairs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scored_pairs_entity_type_decision'), ['entity_type', 'decision'], unique=False)
        batch_op.create_index(batch_op.f('ix_scored_pairs_entity_type_right_id'), ['entity_type', 'right_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('scored_pairs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scored_pairs_entity_type_right_id'))
        batch_op.drop_index(batch_op.f('ix_scored_pairs_entity_type_decision'))

    op.drop_table('scored_pairs')
    op.drop_table('resolution_runs')
    op.drop_table('resolution_models')
    with op.batch_alter_table('judgements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_judgements_entity_type_left_id_right_id'))

    op.drop_table('judgements')
    with op.batch_alter_table('entity_membership', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entity_membership_entity_id'))

    op.drop_table('entity_membership')
    with op.batch_alter_table('entities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entities_entity_type_status'))

    op.drop_table('entities')

