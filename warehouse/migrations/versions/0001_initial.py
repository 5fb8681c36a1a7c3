"""initial warehouse: stations, batches, raw, quarantine, standardised records

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 04:29:51.469002
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('organisation_records',
    sa.Column('record_key', sa.String(length=200), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('local_id', sa.String(length=128), nullable=False),
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('row_hash', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=True),
    sa.Column('name_norm', sa.String(length=256), nullable=True),
    sa.Column('credit_code', sa.String(length=64), nullable=True),
    sa.Column('credit_code_valid', sa.Boolean(), nullable=True),
    sa.Column('credit_code_issue', sa.String(length=200), nullable=True),
    sa.Column('legal_rep', sa.String(length=128), nullable=True),
    sa.Column('legal_rep_norm', sa.String(length=128), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('phone_kind', sa.String(length=16), nullable=True),
    sa.Column('phone_valid', sa.Boolean(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('addr_district', sa.String(length=64), nullable=True),
    sa.Column('addr_street', sa.String(length=64), nullable=True),
    sa.Column('addr_community', sa.String(length=64), nullable=True),
    sa.Column('addr_road', sa.String(length=128), nullable=True),
    sa.Column('addr_number', sa.String(length=32), nullable=True),
    sa.Column('addr_building', sa.String(length=32), nullable=True),
    sa.Column('addr_unit', sa.String(length=32), nullable=True),
    sa.Column('addr_room', sa.String(length=32), nullable=True),
    sa.Column('area_code', sa.String(length=16), nullable=True),
    sa.Column('area_code_valid', sa.Boolean(), nullable=True),
    sa.Column('source_updated_at', sa.DateTime(), nullable=True),
    sa.Column('issues', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('record_key', name=op.f('pk_organisation_records'))
    )
    with op.batch_alter_table('organisation_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_organisation_records_station_id'), ['station_id'], unique=False)

    op.create_table('person_records',
    sa.Column('record_key', sa.String(length=200), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('local_id', sa.String(length=128), nullable=False),
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('row_hash', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('name_norm', sa.String(length=128), nullable=True),
    sa.Column('name_pinyin', sa.String(length=256), nullable=True),
    sa.Column('sex', sa.String(length=1), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('id_number', sa.String(length=64), nullable=True),
    sa.Column('id_upgraded', sa.Boolean(), nullable=True),
    sa.Column('id_valid', sa.Boolean(), nullable=True),
    sa.Column('id_issue', sa.String(length=200), nullable=True),
    sa.Column('id_birth_date', sa.Date(), nullable=True),
    sa.Column('id_sex', sa.String(length=1), nullable=True),
    sa.Column('id_consistent', sa.Boolean(), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('phone_kind', sa.String(length=16), nullable=True),
    sa.Column('phone_valid', sa.Boolean(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('addr_district', sa.String(length=64), nullable=True),
    sa.Column('addr_street', sa.String(length=64), nullable=True),
    sa.Column('addr_community', sa.String(length=64), nullable=True),
    sa.Column('addr_road', sa.String(length=128), nullable=True),
    sa.Column('addr_number', sa.String(length=32), nullable=True),
    sa.Column('addr_building', sa.String(length=32), nullable=True),
    sa.Column('addr_unit', sa.String(length=32), nullable=True),
    sa.Column('addr_room', sa.String(length=32), nullable=True),
    sa.Column('area_code', sa.String(length=16), nullable=True),
    sa.Column('area_code_valid', sa.Boolean(), nullable=True),
    sa.Column('source_updated_at', sa.DateTime(), nullable=True),
    sa.Column('issues', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('record_key', name=op.f('pk_person_records'))
    )
    with op.batch_alter_table('person_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_records_station_id'), ['station_id'], unique=False)

    op.create_table('source_state',
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('source_name', sa.String(length=64), nullable=False),
    sa.Column('watermark', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('station_id', 'source_name', name=op.f('pk_source_state'))
    )
    op.create_table('stations',
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('jurisdiction', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('station_id', name=op.f('pk_stations'))
    )
    op.create_table('batches',
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('source_name', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('source_kind', sa.String(length=8), nullable=False),
    sa.Column('source_ref', sa.Text(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('encoding', sa.String(length=16), nullable=True),
    sa.Column('watermark_from', sa.Text(), nullable=True),
    sa.Column('watermark_to', sa.Text(), nullable=True),
    sa.Column('rows_read', sa.Integer(), server_default='0', nullable=False),
    sa.Column('rows_loaded', sa.Integer(), server_default='0', nullable=False),
    sa.Column('rows_quarantined', sa.Integer(), server_default='0', nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['station_id'], ['stations.station_id'], name=op.f('fk_batches_station_id_stations')),
    sa.PrimaryKeyConstraint('batch_id', name=op.f('pk_batches')),
    sa.UniqueConstraint('station_id', 'source_name', 'content_hash', name=op.f('uq_batches_station_id_source_name_content_hash'))
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batches_station_id'), ['station_id'], unique=False)

    op.create_table('quarantine',
    sa.Column('quarantine_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(length=200), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('original', sa.Text(), nullable=False),
    sa.Column('stored_path', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.batch_id'], name=op.f('fk_quarantine_batch_id_batches')),
    sa.PrimaryKeyConstraint('quarantine_id', name=op.f('pk_quarantine'))
    )
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantine_batch_id'), ['batch_id'], unique=False)

    op.create_table('raw_records',
    sa.Column('batch_id', sa.String(length=160), nullable=False),
    sa.Column('row_number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('station_id', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('local_id', sa.String(length=128), nullable=False),
    sa.Column('record_key', sa.String(length=200), nullable=False),
    sa.Column('row_hash', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.batch_id'], name=op.f('fk_raw_records_batch_id_batches')),
    sa.PrimaryKeyConstraint('batch_id', 'row_number', name=op.f('pk_raw_records'))
    )
    with op.batch_alter_table('raw_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_raw_records_record_key'), ['record_key'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('raw_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_raw_records_record_key'))

    op.drop_table('raw_records')
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantine_batch_id'))

    op.drop_table('quarantine')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batches_station_id'))

    op.drop_table('batches')
    op.drop_table('stations')
    op.drop_table('source_state')
    with op.batch_alter_table('person_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_records_station_id'))

    op.drop_table('person_records')
    with op.batch_alter_table('organisation_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_organisation_records_station_id'))

    op.drop_table('organisation_records')

