"""rows a drop repeats unchanged are counted, not stored again

A station that exports its whole register with every drop sends mostly rows the warehouse
already holds. A row identical to the station's current record (same record key, same row
hash, read under the same source config, its batch not held) is now counted in the batch's
`rows_unchanged` instead of being stored, standardised and validated again; a batch reconciles
when rows read = loaded + quarantined + unchanged. Batches from before count none.

Revision ID: 0018
Revises: 0017
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('batches', sa.Column('rows_unchanged', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('batches') as batch:
        batch.drop_column('rows_unchanged')
