"""residences: which dwelling each person lives in, versioned (relation_runs, relation_links, relation_keys)

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'relation_runs',
        sa.Column('run_id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('relation', sa.String(length=32), nullable=False),
        sa.Column('outbox_seq', sa.Integer(), nullable=False),
        sa.Column('stats', sa.JSON(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('run_id', name=op.f('pk_relation_runs')),
    )
    op.create_index(op.f('ix_relation_runs_relation_outbox_seq'), 'relation_runs', ['relation', 'outbox_seq'],
                    unique=False)
    op.create_table(
        'relation_links',
        sa.Column('link_id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('relation', sa.String(length=32), nullable=False),
        sa.Column('from_id', sa.String(length=64), nullable=False),
        sa.Column('to_id', sa.String(length=64), nullable=False),
        sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
        sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
        sa.Column('opened_run', sa.Integer(), nullable=False),
        sa.Column('closed_run', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('link_id', name=op.f('pk_relation_links')),
    )
    op.create_index(op.f('ix_relation_links_relation_from_id'), 'relation_links', ['relation', 'from_id'],
                    unique=False)
    op.create_index(op.f('ix_relation_links_relation_to_id'), 'relation_links', ['relation', 'to_id'],
                    unique=False)
    op.create_table(
        'relation_keys',
        sa.Column('relation', sa.String(length=32), nullable=False),
        sa.Column('entity_id', sa.String(length=64), nullable=False),
        sa.Column('side', sa.String(length=4), nullable=False),
        sa.Column('key', sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint('relation', 'entity_id', name=op.f('pk_relation_keys')),
    )
    op.create_index(op.f('ix_relation_keys_relation_key'), 'relation_keys', ['relation', 'key'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_relation_keys_relation_key'), table_name='relation_keys')
    op.drop_table('relation_keys')
    op.drop_index(op.f('ix_relation_links_relation_to_id'), table_name='relation_links')
    op.drop_index(op.f('ix_relation_links_relation_from_id'), table_name='relation_links')
    op.drop_table('relation_links')
    op.drop_index(op.f('ix_relation_runs_relation_outbox_seq'), table_name='relation_runs')
    op.drop_table('relation_runs')
