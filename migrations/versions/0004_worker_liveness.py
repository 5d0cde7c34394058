"""worker liveness: worker_liveness (canary proof per worker), worker_restarts (supervisor restarts)

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Written to match models/liveness.py (naming convention of models/base.py).
    op.create_table('worker_liveness',
    sa.Column('hostname', sa.Text(), nullable=False),
    sa.Column('started_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('canary_sent_at', TS, nullable=True),
    sa.Column('canary_consumed_at', TS, nullable=True),
    sa.Column('stopped_at', TS, nullable=True),
    sa.Column('updated_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('hostname', name=op.f('pk_worker_liveness'))
    )
    op.create_table('worker_restarts',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('hostname', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_worker_restarts'))
    )


def downgrade() -> None:
    op.drop_table('worker_restarts')
    op.drop_table('worker_liveness')
