"""front desk audit: the batch an entry made

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('front_desk_audit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('front_desk_audit', schema=None) as batch_op:
        batch_op.drop_column('batch_id')
