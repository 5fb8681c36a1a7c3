"""PostgreSQL tells listeners when the rows a feed API keeps between pages change

A feed API on PostgreSQL read its caller's token, the subscriber's mark and the outbox's high
water for every page: three pooled checkouts, each with a ping and a rollback, most of a page's
time under 20 clients. It now keeps them between pages (warehouse.unchanged) and forgets them
when told: every statement that writes one of these tables sends a notice on the channel
`enteronce_changed` (payload: the table's name), delivered to listeners when its transaction
commits, never before and never for a rollback (warehouse.notices). SQLite needs none: a
connection there asks the file itself (PRAGMA data_version).

Revision ID: 0020
Revises: 0019
"""
from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

CHANNEL = 'enteronce_changed'  # warehouse.notices.CHANNEL
TABLES = ('feed_tokens', 'feed_prepared_marks', 'feed_prepared_blocks', 'change_events')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(f"""
        CREATE FUNCTION enteronce_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END $$""")
    for table in TABLES:
        op.execute(f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION enteronce_notify_change()")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify ON {table}")
    op.execute("DROP FUNCTION IF EXISTS enteronce_notify_change()")
