"""periodic runs: one row per (job, slot), so several beats run each periodic job once per interval

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Written to match models/periodic.py (naming convention of models/base.py).
    op.create_table('periodic_runs',
    sa.Column('job', sa.Text(), nullable=False),
    sa.Column('slot', sa.BigInteger(), nullable=False),
    sa.Column('started_at', TS, server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', TS, nullable=True),
    sa.Column('host', sa.Text(), nullable=False),
    sa.Column('beat', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('job', 'slot', name=op.f('pk_periodic_runs'))
    )


def downgrade() -> None:
    op.drop_table('periodic_runs')
