"""operators and audit: operators, audit_events (append-only), payout_approvals, route_switches, console_keys; inbox
state 'dismissed'; the indexes the console's lists page and filter with at a million bids

Revision ID: 0008
Revises: 0007

Written to match models/operators.py (naming convention of models/base.py). ``audit_events`` refuses
UPDATE and DELETE with a trigger: an audit row, once written, stays as it was.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
INBOX_BEFORE = ('received', 'processed', 'failed', 'dead')
INBOX_AFTER = INBOX_BEFORE + ('dismissed',)
ROLES = ('viewer', 'operator', 'approver', 'admin')
ACTIONS = ('login', 'login_failed', 'logout', 'approve', 'retry', 'cancel', 'replay', 'dismiss', 'route_switch',
           'operator_add', 'operator_disable', 'operator_enable', 'operator_password', 'operator_role',
           'operator_totp')

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END $$"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"""

# (name, table, columns or expressions, where)
INDEXES = [
    ('ix_bids_status_id', 'bids', 'status, id', None),
    ('ix_bids_exchanger_id', 'bids', 'exchanger, id', None),
    ('ix_bids_exchanger_status_id', 'bids', 'exchanger, status, id', None),
    ('ix_bids_remote_id', 'bids', 'remote_id', None),
    ('ix_bids_first_seen_at', 'bids', 'first_seen_at', None),
    ('ix_bids_amount_give', 'bids', 'amount_give', None),
    ('ix_bids_amount_get', 'bids', 'amount_get', None),
    ('ix_bids_account2', 'bids', "(request_fields ->> 'account2'), id", 'request_fields IS NOT NULL'),
    # the stuck report's stale live bids: only live, unarchived bids are in it
    ('ix_bids_live_observed_at', 'bids', 'observed_at',
     "archived_at IS NULL AND status NOT IN ('cancel', 'delete', 'error', 'success')"),
    ('ix_payouts_provider_id', 'payouts', 'provider, id', None),
    ('ix_payouts_exchanger_id', 'payouts', 'exchanger, id', None),
    ('ix_payouts_state_id', 'payouts', 'state, id', None),
    ('ix_inbox_events_state_id', 'inbox_events', 'state, id', None),
    ('ix_inbox_events_bid', 'inbox_events', "endpoint, ((payload ->> 'bid_id'))", "provider = 'premium'"),
    ('ix_inbox_events_received_at', 'inbox_events', 'received_at', None),  # the overview's last hour
    ('ix_bid_status_changes_recorded_at', 'bid_status_changes', 'recorded_at', None),
    ('ix_payouts_updated_at', 'payouts', 'updated_at', None),
    ('ix_payout_attempts_started_at', 'payout_attempts', 'started_at', None),
]


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table('operators',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('totp_secret', sa.Text(), nullable=True),
    sa.Column('disabled_at', TS, nullable=True),
    sa.Column('session_epoch', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('created_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('last_login_at', TS, nullable=True),
    sa.CheckConstraint(_in('role', ROLES), name=op.f('ck_operators_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operators')),
    sa.UniqueConstraint('name', name=op.f('uq_operators_name'))
    )
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('via', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('object_type', sa.Text(), nullable=False),
    sa.Column('object_id', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('before', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('after', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('source_ip', sa.Text(), nullable=True),
    sa.CheckConstraint(_in('action', ACTIONS), name=op.f('ck_audit_events_action')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    op.create_index('ix_audit_events_object', 'audit_events', ['object_type', 'object_id', 'id'])
    op.create_index('ix_audit_events_actor', 'audit_events', ['actor', 'id'])
    op.create_index('ix_audit_events_at', 'audit_events', ['at'])
    op.create_index('ix_audit_events_failed_logins', 'audit_events', ['object_id', 'at'],
                    postgresql_where=sa.text("action = 'login_failed'"))
    op.create_index('ix_audit_events_failed_logins_ip', 'audit_events', ['source_ip', 'at'],
                    postgresql_where=sa.text("action = 'login_failed'"))
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)
    op.create_table('payout_approvals',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('payout_id', sa.BigInteger(), nullable=False),
    sa.Column('operator_id', sa.BigInteger(), nullable=False),
    sa.Column('operator', sa.Text(), nullable=False),
    sa.Column('at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_payout_approvals_operator_id_operators'),
                            ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_approvals_payout_id_payouts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_approvals')),
    sa.UniqueConstraint('payout_id', 'operator_id', name='uq_payout_approvals_payout_operator')
    )
    op.create_table('route_switches',
    sa.Column('exchanger', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('changed_by', sa.Text(), nullable=False),
    sa.Column('changed_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('exchanger', name=op.f('pk_route_switches'))
    )
    op.create_table('console_keys',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('created_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_console_keys'))
    )
    op.drop_constraint(op.f('ck_inbox_events_state'), 'inbox_events', type_='check')
    op.create_check_constraint(op.f('ck_inbox_events_state'), 'inbox_events', _in('state', INBOX_AFTER))
    for name, table, columns, where in INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})" + (f" WHERE {where}" if where else ""))


def downgrade() -> None:
    # Checked before anything is changed: a refusal leaves the database at 0008 as it was.
    bad = op.get_bind().exec_driver_sql("SELECT count(*) FROM inbox_events WHERE state = 'dismissed'").scalar()
    if bad:
        raise RuntimeError(f"{bad} inbox events are dismissed, a state 0006 does not know: replay them or mark "
                           f"them dead before downgrading")
    for name, _table, _columns, _where in reversed(INDEXES):
        op.execute(f"DROP INDEX {name}")
    op.drop_constraint(op.f('ck_inbox_events_state'), 'inbox_events', type_='check')
    op.create_check_constraint(op.f('ck_inbox_events_state'), 'inbox_events', _in('state', INBOX_BEFORE))
    op.drop_table('console_keys')
    op.drop_table('route_switches')
    op.drop_table('payout_approvals')
    op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
    op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_index('ix_audit_events_failed_logins_ip', table_name='audit_events')
    op.drop_index('ix_audit_events_failed_logins', table_name='audit_events')
    op.drop_index('ix_audit_events_at', table_name='audit_events')
    op.drop_index('ix_audit_events_actor', table_name='audit_events')
    op.drop_index('ix_audit_events_object', table_name='audit_events')
    op.drop_table('audit_events')
    op.drop_table('operators')
