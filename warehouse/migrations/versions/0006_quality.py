"""validation runs and results, station scores, correction tasks

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('validation_runs',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('suite', sa.String(length=64), nullable=False),
    sa.Column('data_asset', sa.String(length=32), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=True),
    sa.Column('batch_id', sa.String(length=160), nullable=True),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('evaluated', sa.Integer(), nullable=False),
    sa.Column('successful', sa.Integer(), nullable=False),
    sa.Column('started_at', TS, nullable=False),
    sa.Column('finished_at', TS, nullable=False),
    sa.Column('data_docs_path', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_validation_runs'))
    )
    op.create_index(op.f('ix_validation_runs_station_id_batch_id'), 'validation_runs', ['station_id', 'batch_id'])
    op.create_index(op.f('ix_validation_runs_batch_id'), 'validation_runs', ['batch_id'])

    op.create_table('validation_results',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('expectation_id', sa.String(length=128), nullable=False),
    sa.Column('expectation_type', sa.String(length=128), nullable=False),
    sa.Column('column_name', sa.String(length=64), nullable=True),
    sa.Column('dimension', sa.String(length=16), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('element_count', sa.Integer(), nullable=True),
    sa.Column('unexpected_count', sa.Integer(), nullable=True),
    sa.Column('unexpected_percent', sa.Float(), nullable=True),
    sa.Column('observed_value', sa.Text(), nullable=True),
    sa.Column('sample_rows', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('run_id', 'expectation_id', name=op.f('pk_validation_results'))
    )

    op.create_table('station_scores',
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('dimension', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('computed_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('station_id', 'entity_type', 'batch_id', 'dimension', name=op.f('pk_station_scores'))
    )

    op.create_table('correction_tasks',
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('record_key', sa.String(length=200), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=True),
    sa.Column('field', sa.String(length=64), nullable=False),
    sa.Column('station_value', sa.Text(), nullable=True),
    sa.Column('expected_value', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('opened_at', TS, nullable=False),
    sa.Column('opened_batch', sa.String(length=160), nullable=False),
    sa.Column('closed_at', TS, nullable=True),
    sa.Column('closed_batch', sa.String(length=160), nullable=True),
    sa.PrimaryKeyConstraint('task_id', name=op.f('pk_correction_tasks'))
    )
    op.create_index(op.f('ix_correction_tasks_station_id_status'), 'correction_tasks', ['station_id', 'status'])
    op.create_index(op.f('ix_correction_tasks_record_key'), 'correction_tasks', ['record_key'])

    op.create_table('batch_holds',
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('held_at', TS, nullable=False),
    sa.Column('released_at', TS, nullable=True),
    sa.PrimaryKeyConstraint('batch_id', name=op.f('pk_batch_holds'))
    )

    op.create_table('quality_state',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('updated_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_quality_state'))
    )


def downgrade() -> None:
    op.drop_table('quality_state')
    op.drop_table('batch_holds')
    op.drop_index(op.f('ix_correction_tasks_record_key'), table_name='correction_tasks')
    op.drop_index(op.f('ix_correction_tasks_station_id_status'), table_name='correction_tasks')
    op.drop_table('correction_tasks')
    op.drop_table('station_scores')
    op.drop_table('validation_results')
    op.drop_index(op.f('ix_validation_runs_batch_id'), table_name='validation_runs')
    op.drop_index(op.f('ix_validation_runs_station_id_batch_id'), table_name='validation_runs')
    op.drop_table('validation_runs')
