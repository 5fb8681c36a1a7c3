"""front desk: match, search and entry audit

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'front_desk_audit',
        sa.Column('audit_id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('subscriber_id', sa.String(length=64), nullable=False),
        sa.Column('token_id', sa.String(length=64), nullable=True),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('entity_type', sa.String(length=32), nullable=False),
        sa.Column('key_hashes', sa.JSON(), nullable=False),
        sa.Column('entity_ids', sa.JSON(), nullable=False),
        sa.Column('fields', sa.JSON(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('audit_id'),
    )
    with op.batch_alter_table('front_desk_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_front_desk_audit_subscriber_id_at'), ['subscriber_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('front_desk_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_front_desk_audit_subscriber_id_at'))
    op.drop_table('front_desk_audit')
