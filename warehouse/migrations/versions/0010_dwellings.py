"""dwellings: the dwelling_records table; batches.entity_type as wide as entity types elsewhere

Dwellings (实有房屋) are the third bundled entity type (core/entity_types.yaml): one row per
record of a station's housing register, with the columns its field standardisers produce. Entity
type names may have 32 characters (core.entity_types.NAME), as the resolution tables already
allow; batches and raw_records kept only 16.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dwelling_records',
    sa.Column('record_key', sa.String(length=200), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('local_id', sa.String(length=128), nullable=False),
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('row_hash', sa.String(length=40), nullable=False),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('addr_district', sa.String(length=64), nullable=True),
    sa.Column('addr_street', sa.String(length=64), nullable=True),
    sa.Column('addr_community', sa.String(length=64), nullable=True),
    sa.Column('addr_road', sa.String(length=128), nullable=True),
    sa.Column('addr_number', sa.String(length=32), nullable=True),
    sa.Column('addr_building', sa.String(length=32), nullable=True),
    sa.Column('addr_unit', sa.String(length=32), nullable=True),
    sa.Column('addr_room', sa.String(length=32), nullable=True),
    sa.Column('owner_name', sa.String(length=128), nullable=True),
    sa.Column('owner_name_norm', sa.String(length=128), nullable=True),
    sa.Column('owner_name_pinyin', sa.String(length=256), nullable=True),
    sa.Column('owner_id_number', sa.String(length=64), nullable=True),
    sa.Column('owner_id_number_upgraded', sa.Boolean(), nullable=True),
    sa.Column('owner_id_number_valid', sa.Boolean(), nullable=True),
    sa.Column('owner_id_number_issue', sa.String(length=200), nullable=True),
    sa.Column('owner_id_number_birth_date', sa.Date(), nullable=True),
    sa.Column('owner_id_number_sex', sa.String(length=1), nullable=True),
    sa.Column('owner_phone', sa.String(length=32), nullable=True),
    sa.Column('owner_phone_kind', sa.String(length=16), nullable=True),
    sa.Column('owner_phone_valid', sa.Boolean(), nullable=True),
    sa.Column('use', sa.String(length=64), nullable=True),
    sa.Column('occupants', sa.BigInteger(), nullable=True),
    sa.Column('occupants_valid', sa.Boolean(), nullable=True),
    sa.Column('area_code', sa.String(length=16), nullable=True),
    sa.Column('area_code_valid', sa.Boolean(), nullable=True),
    sa.Column('source_updated_at', sa.DateTime(), nullable=True),
    sa.Column('source_updated_at_valid', sa.Boolean(), nullable=True),
    sa.Column('issues', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('record_key', name=op.f('pk_dwelling_records'))
    )
    with op.batch_alter_table('dwelling_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dwelling_records_station_id'), ['station_id'], unique=False)
    for table in ('batches', 'raw_records'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('entity_type', existing_type=sa.String(length=16),
                                  type_=sa.String(length=32), existing_nullable=False)


def downgrade() -> None:
    for table in ('raw_records', 'batches'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('entity_type', existing_type=sa.String(length=32),
                                  type_=sa.String(length=16), existing_nullable=False)
    with op.batch_alter_table('dwelling_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dwelling_records_station_id'))
    op.drop_table('dwelling_records')
