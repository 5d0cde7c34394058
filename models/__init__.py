"""SQLAlchemy models, the engine/session, the status rules and the queries that claim work.

The model classes are loaded on first use (``from models import Bid`` works as always): a process that only
needs ``models.states`` or ``models.urls`` — the ``exsync`` CLI reading its settings, the ``exsync run``
supervisor, gunicorn's master — does not pay for SQLAlchemy's ORM (bench/footprint). ``Base`` loads every
model module, so ``Base.metadata`` knows every table (Alembic, the migration tests).
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.base import Base
    from models.liveness import WorkerLiveness, WorkerRestart
    from models.notifications import Heartbeat, Notification, ProviderBalance
    from models.operators import AuditEvent, ConsoleKey, Operator, PayoutApproval, RouteSwitch
    from models.partner import PartnerAccount, PartnerExchange, PartnerPayout
    from models.payouts import Payout, PayoutAttempt
    from models.periodic import PeriodicRun
    from models.tables import Bid, BidPoll, BidStatusChange, InboxEvent, SweepCursor

MODULES = {  # module -> the models it defines
    "models.tables": ("Bid", "BidPoll", "BidStatusChange", "InboxEvent", "SweepCursor"),
    "models.payouts": ("Payout", "PayoutAttempt"),
    "models.partner": ("PartnerAccount", "PartnerExchange", "PartnerPayout"),
    "models.liveness": ("WorkerLiveness", "WorkerRestart"),
    "models.periodic": ("PeriodicRun",),
    "models.operators": ("Operator", "AuditEvent", "PayoutApproval", "RouteSwitch", "ConsoleKey"),
    "models.notifications": ("Notification", "ProviderBalance", "Heartbeat"),
}
_WHERE = {name: module for module, names in MODULES.items() for name in names}

__all__ = ["Base", "Bid", "BidPoll", "BidStatusChange", "InboxEvent", "SweepCursor", "Payout", "PayoutAttempt",
           "PartnerAccount", "PartnerExchange", "PartnerPayout", "WorkerLiveness", "WorkerRestart",
           "PeriodicRun", "Operator", "AuditEvent", "PayoutApproval", "RouteSwitch", "ConsoleKey",
           "Notification", "ProviderBalance", "Heartbeat"]  # spelt out for linters; a test keeps it = MODULES


def load_all() -> None:
    """Import every model module: after this, ``Base.metadata`` holds every table."""
    for module in MODULES:
        import_module(module)


def __getattr__(name: str) -> Any:
    if name == "Base":
        load_all()
        return import_module("models.base").Base
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(import_module(module), name)
