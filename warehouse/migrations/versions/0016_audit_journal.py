"""audit rows: their key in the API server's audit journal

The API commits the audit row of a feed page or a front-desk answer after the answer is sent,
from a journal file written before it (feeds/journal.py); a journal replayed after a crash must
not write a row twice, so each row carries its journal key, unique where present.

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

TABLES = ('feed_deliveries', 'front_desk_audit')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('journal_key', sa.String(length=32), nullable=True))
            batch_op.create_index(f'ix_{table}_journal_key', ['journal_key'], unique=True)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_journal_key')
            batch_op.drop_column('journal_key')
