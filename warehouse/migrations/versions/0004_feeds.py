"""subscriptions' cursors, feed deliveries (audit log)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feed_cursors',
    sa.Column('subscriber_id', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('acked_seq', sa.Integer(), nullable=True),
    sa.Column('snapshot_seq', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('subscriber_id', 'channel', name=op.f('pk_feed_cursors'))
    )
    op.create_table('feed_deliveries',
    sa.Column('delivery_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('subscriber_id', sa.String(length=64), nullable=False),
    sa.Column('token_id', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('seq_from', sa.Integer(), nullable=True),
    sa.Column('seq_to', sa.Integer(), nullable=True),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('entity_count', sa.Integer(), nullable=False),
    sa.Column('entity_ids', sa.JSON(), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('delivery_id', name=op.f('pk_feed_deliveries'))
    )
    with op.batch_alter_table('feed_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feed_deliveries_subscriber_id_delivered_at'),
                              ['subscriber_id', 'delivered_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('feed_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feed_deliveries_subscriber_id_delivered_at'))
    op.drop_table('feed_deliveries')
    op.drop_table('feed_cursors')
