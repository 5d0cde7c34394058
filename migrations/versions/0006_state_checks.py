"""state checks: a CHECK constraint on every state column (the values of models/states.py)

Revision ID: 0006
Revises: 0005

Each constraint is named ``ck_<table>_<column>`` (models/base.py's convention) and is the one the model
declares with ``models.states.one_of``. The values are written out here as they were when this revision
was made, not read from the enums: a migration is history, and one that followed the enums would give a
fresh database a later enum's values at 0006 while an existing one never got them, so a missing later
migration would go unnoticed. tests/test_migrations.py instead compares the migrated schema with the
models, CHECK definitions included: change an enum and that test fails until a migration follows.

Rows written before these checks all hold values of these lists (nothing ever wrote another), with one
exception: a bid first stored through create_bid without a ``created_via`` was recorded as ``create``;
it is ``exsync`` now. Any other value stops the upgrade with its table, column and value.
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

PAYOUT_DUE = ('pending', 'unknown', 'parked', 'submitted')
CHECKS = {  # (table, column): allowed values
    ('inbox_events', 'state'): ('received', 'processed', 'failed', 'dead'),
    ('bid_polls', 'state'): ('active', 'done', 'gave_up'),
    ('bids', 'created_via'): ('exsync', 'callback', 'poll', 'sweep', 'operator'),
    ('bid_status_changes', 'source'): ('create', 'callback', 'poll', 'sweep', 'operator'),
    ('payouts', 'state'): ('pending', 'submitting', 'submitted', 'succeeded', 'failed', 'unknown', 'needs_review',
                           'cancelled', 'parked'),
    ('payouts', 'claimed_from'): PAYOUT_DUE,
    ('payout_attempts', 'kind'): ('submit', 'find', 'complete'),
    ('payout_attempts', 'outcome'): ('started', 'succeeded', 'pending', 'failed', 'not_found', 'retryable',
                                     'unknown', 'insufficient_funds', 'permanent', 'auth', 'error', 'lost'),
    ('partner_payouts', 'requested_via'): ('exsync', 'sync'),
    ('worker_restarts', 'reason'): ('exited', 'stalled'),
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.execute("UPDATE bids SET created_via = 'exsync' WHERE created_via = 'create'")
    conn = op.get_bind()
    for (table, column), values in CHECKS.items():
        bad = conn.exec_driver_sql(
            f"SELECT DISTINCT {column} FROM {table} WHERE NOT ({_in(column, values)}) LIMIT 5").scalars().all()
        if bad:
            raise RuntimeError(f"{table}.{column} holds {bad!r}, not one of {list(values)}: fix these rows "
                               f"(or the list in migrations/versions/0006_state_checks.py) and migrate again")
        op.create_check_constraint(op.f(f'ck_{table}_{column}'), table, _in(column, values))


def downgrade() -> None:
    for table, column in reversed(list(CHECKS)):
        op.drop_constraint(op.f(f'ck_{table}_{column}'), table, type_='check')
