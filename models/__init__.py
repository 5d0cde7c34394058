"""SQLAlchemy models, the engine/session, the status rules and the queries that claim work."""
from models.base import Base  # noqa: F401
from models.tables import Bid, BidPoll, BidStatusChange, InboxEvent, SweepCursor  # noqa: F401
from models.payouts import Payout, PayoutAttempt  # noqa: F401
from models.partner import PartnerAccount, PartnerExchange, PartnerPayout  # noqa: F401
from models.liveness import WorkerLiveness, WorkerRestart  # noqa: F401

__all__ = ["Base", "Bid", "BidPoll", "BidStatusChange", "InboxEvent", "SweepCursor", "Payout", "PayoutAttempt"]
