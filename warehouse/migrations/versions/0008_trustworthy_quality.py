"""correction tasks' evidence and reminders; holds' measured rate and threshold

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('correction_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('evidence', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('reminded_at', TS, nullable=True))
    with op.batch_alter_table('batch_holds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rate', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('threshold', sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column('batch_holds', 'threshold')
    op.drop_column('batch_holds', 'rate')
    op.drop_column('correction_tasks', 'reminded_at')
    op.drop_column('correction_tasks', 'evidence')
