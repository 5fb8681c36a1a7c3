"""why a scored pair waits in the review queue (refused by the ID guard or by a judgement)

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scored_pairs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scored_pairs', schema=None) as batch_op:
        batch_op.drop_column('review_reason')
