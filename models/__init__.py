"""SQLAlchemy models, the engine/session, the status rules and the queries that claim work."""
from models.base import Base
from models.liveness import WorkerLiveness, WorkerRestart
from models.notifications import Heartbeat, Notification, ProviderBalance
from models.operators import AuditEvent, ConsoleKey, Operator, PayoutApproval, RouteSwitch
from models.partner import PartnerAccount, PartnerExchange, PartnerPayout
from models.payouts import Payout, PayoutAttempt
from models.periodic import PeriodicRun
from models.tables import Bid, BidPoll, BidStatusChange, InboxEvent, SweepCursor

# Every model is imported here so that Base.metadata knows every table (Alembic, the migration tests).
__all__ = ["Base", "Bid", "BidPoll", "BidStatusChange", "InboxEvent", "SweepCursor", "Payout", "PayoutAttempt",
           "PartnerAccount", "PartnerExchange", "PartnerPayout", "WorkerLiveness", "WorkerRestart",
           "PeriodicRun", "Operator", "AuditEvent", "PayoutApproval", "RouteSwitch", "ConsoleKey",
           "Notification", "ProviderBalance", "Heartbeat"]
