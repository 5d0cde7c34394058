"""partner money: partner_accounts, partner_exchanges, partner_payouts

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=38, scale=18)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Written to match models/partner.py (naming convention of models/base.py).
    op.create_table('partner_accounts',
    sa.Column('exchanger', sa.Text(), nullable=False),
    sa.Column('partner_id', sa.BigInteger(), nullable=True),
    sa.Column('balance', MONEY, nullable=True),
    sa.Column('min_payout', MONEY, nullable=True),
    sa.Column('currencies', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('exchanges_cursor', TS, nullable=True),
    sa.Column('payouts_cursor', TS, nullable=True),
    sa.Column('synced_at', TS, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_error_at', TS, nullable=True),
    sa.Column('updated_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('exchanger', name=op.f('pk_partner_accounts'))
    )
    op.create_table('partner_exchanges',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('exchanger', sa.Text(), nullable=False),
    sa.Column('remote_id', sa.BigInteger(), nullable=False),
    sa.Column('time', TS, nullable=True),
    sa.Column('status', sa.Text(), nullable=True),
    sa.Column('psys_give', sa.Text(), nullable=True),
    sa.Column('psys_get', sa.Text(), nullable=True),
    sa.Column('currency_code_give', sa.Text(), nullable=True),
    sa.Column('currency_code_get', sa.Text(), nullable=True),
    sa.Column('amount_give', MONEY, nullable=True),
    sa.Column('amount_get', MONEY, nullable=True),
    sa.Column('partner_reward', MONEY, nullable=True),
    sa.Column('accrued', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('exchange_success', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('first_seen_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('synced_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_exchanges')),
    sa.UniqueConstraint('exchanger', 'remote_id', name='uq_partner_exchanges_exchanger_remote_id')
    )
    op.create_index('ix_partner_exchanges_time', 'partner_exchanges', ['exchanger', 'time'], unique=False)
    op.create_table('partner_payouts',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('exchanger', sa.Text(), nullable=False),
    sa.Column('remote_id', sa.BigInteger(), nullable=False),
    sa.Column('time', TS, nullable=True),
    sa.Column('method_id', sa.Integer(), nullable=True),
    sa.Column('account', sa.Text(), nullable=True),
    sa.Column('pay_amount', MONEY, nullable=True),
    sa.Column('pay_currency_code', sa.Text(), nullable=True),
    sa.Column('original_amount', MONEY, nullable=True),
    sa.Column('original_currency_code', sa.Text(), nullable=True),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('status_name', sa.Text(), nullable=True),
    sa.Column('requested_via', sa.Text(), nullable=False),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('first_seen_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('synced_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('status_changed_at', TS, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_payouts')),
    sa.UniqueConstraint('exchanger', 'remote_id', name='uq_partner_payouts_exchanger_remote_id')
    )
    op.create_index('ix_partner_payouts_status', 'partner_payouts', ['exchanger', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_partner_payouts_status', table_name='partner_payouts')
    op.drop_table('partner_payouts')
    op.drop_index('ix_partner_exchanges_time', table_name='partner_exchanges')
    op.drop_table('partner_exchanges')
    op.drop_table('partner_accounts')
