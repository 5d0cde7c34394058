"""lease tokens: a fencing token per claim, so leases can be short and renewed

Revision ID: 0005
Revises: 0004

payouts.lease_token / bid_polls.lease_token fence every write of a claim (lease_until and next_poll_at
become plain renewable expiries); payouts.claimed_from lets the reaper put back a claim whose worker never
called the provider. The reaper's index covers every held claim (sends and bid completions). Attempt rows
that workers lost before this revision (a success_bid cut off by a kill stayed 'started' for ever) are
closed as 'lost'; those of payouts still in 'submitting' are left to the reaper.
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('payouts', sa.Column('lease_token', sa.Text(), nullable=True))
    op.add_column('payouts', sa.Column('claimed_from', sa.Text(), nullable=True))
    op.add_column('bid_polls', sa.Column('lease_token', sa.Text(), nullable=True))
    op.drop_index('ix_payouts_submitting', table_name='payouts', postgresql_where=sa.text("state = 'submitting'"))
    op.create_index('ix_payouts_lease', 'payouts', ['lease_until'], unique=False,
                    postgresql_where=sa.text('lease_until IS NOT NULL'))
    op.execute("""
        UPDATE payout_attempts a SET outcome = 'lost', finished_at = now(),
               message = 'left started by a worker lost before lease tokens (0005): its outcome is unknown'
        WHERE a.outcome = 'started'
          AND NOT EXISTS (SELECT 1 FROM payouts p WHERE p.id = a.payout_id AND p.state = 'submitting')""")


def downgrade() -> None:
    op.drop_index('ix_payouts_lease', table_name='payouts', postgresql_where=sa.text('lease_until IS NOT NULL'))
    op.create_index('ix_payouts_submitting', 'payouts', ['lease_until'], unique=False,
                    postgresql_where=sa.text("state = 'submitting'"))
    op.drop_column('bid_polls', 'lease_token')
    op.drop_column('payouts', 'claimed_from')
    op.drop_column('payouts', 'lease_token')
