"""feed API pages prepared when feeds are built

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'feed_prepared',
        sa.Column('subscriber_id', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('entity_id', sa.String(length=64), nullable=False),
        sa.Column('about', sa.String(length=64), nullable=True),
        sa.Column('fields', sa.Text(), nullable=False),
        sa.Column('line', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('subscriber_id', 'seq', name=op.f('pk_feed_prepared')),
        sqlite_with_rowid=False,
    )
    op.create_table(
        'feed_prepared_marks',
        sa.Column('subscriber_id', sa.String(length=64), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('from_seq', sa.Integer(), nullable=False),
        sa.Column('to_seq', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('subscriber_id', name=op.f('pk_feed_prepared_marks')),
    )


def downgrade() -> None:
    op.drop_table('feed_prepared_marks')
    op.drop_table('feed_prepared')
