"""notifications: notifications (deduplicated, per target), provider_balances, heartbeats

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Written to match models/notifications.py (naming convention of models/base.py).
    op.create_table('notifications',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('link', sa.Text(), nullable=True),
    sa.Column('opened_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('sent_at', TS, nullable=True),
    sa.Column('sent_to', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', TS, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('resolved_at', TS, nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_notifications'))
    )
    op.create_table('provider_balances',
    sa.Column('provider', sa.Text(), nullable=False),
    sa.Column('currency', sa.Text(), nullable=False),
    sa.Column('amount', sa.Numeric(38, 18), nullable=False),
    sa.Column('checked_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('provider', 'currency', name=op.f('pk_provider_balances'))
    )
    op.create_table('heartbeats',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('at', TS, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_heartbeats'))
    )


def downgrade() -> None:
    op.drop_table('heartbeats')
    op.drop_table('provider_balances')
    op.drop_table('notifications')
