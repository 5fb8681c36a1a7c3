"""batches' config digest, stations' drops version, hub_info with the warehouse id

Revision ID: 0007
Revises: 0006
"""
import uuid

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('config_digest', sa.String(length=64), nullable=True))

    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('drops_version', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('drops_version_at', TS, nullable=True))

    hub_info = op.create_table('hub_info',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_hub_info'))
    )
    # Made here, once per warehouse, so it never changes afterwards (not at each open).
    op.bulk_insert(hub_info, [{'key': 'warehouse_id', 'value': uuid.uuid4().hex}])


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it): a batch-mode copy of `stations`
    # would drop the table `batches` refers to, which SQLite's foreign keys refuse.
    op.drop_table('hub_info')
    op.drop_column('stations', 'drops_version_at')
    op.drop_column('stations', 'drops_version')
    op.drop_column('batches', 'config_digest')
