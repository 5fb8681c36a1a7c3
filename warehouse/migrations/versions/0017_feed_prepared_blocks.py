"""feed API pages prepared in blocks of events

A page of a thousand prepared events was a thousand rows to read and splice per request. The
prepared events are now stored in blocks of consecutive events per subscriber, each block's JSON
lines already joined, so that a page is a few rows. What was prepared is not converted: the
marks are cleared, so every page is built on demand until the next feed build prepares again.

Revision ID: 0017
Revises: 0016
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'feed_prepared_blocks',
        sa.Column('subscriber_id', sa.String(length=64), nullable=False),
        sa.Column('last_seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('first_seq', sa.Integer(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.Column('seqs', sa.Text(), nullable=False),
        sa.Column('offsets', sa.Text(), nullable=False),
        sa.Column('entity_ids', sa.Text(), nullable=False),
        sa.Column('abouts', sa.Text(), nullable=False),
        sa.Column('fields', sa.Text(), nullable=False),
        sa.Column('lines', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('subscriber_id', 'last_seq', name=op.f('pk_feed_prepared_blocks')),
    )
    op.execute('DELETE FROM feed_prepared_marks')
    op.drop_table('feed_prepared')


def downgrade() -> None:
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
    op.execute('DELETE FROM feed_prepared_marks')
    op.drop_table('feed_prepared_blocks')
