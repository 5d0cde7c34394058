"""Partner (affiliate) money on an exchanger, mirrored from the engine's partner methods.

* ``partner_accounts`` — one row per exchanger: ``get_partner_info`` (balance, min payout, payout
  currencies), the sync cursors and the last error ("no active partner program" lands here).
* ``partner_exchanges`` — ``get_partner_exchanges``: the referred bids and the reward for each.
* ``partner_payouts`` — ``get_partner_payouts`` plus the ones requested through exsync
  (``requested_via = 'exsync'``); status 0 pending, 1 paid, 2 cancelled, 3 cancelled by the user.

Money is Numeric(38, 18) (Decimal in Python); times are timestamptz in UTC. See docs/partner.md.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, Numeric, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.states import PartnerPayoutOrigin, one_of

MONEY = Numeric(38, 18)
TS = DateTime(timezone=True)


class PartnerAccount(Base):
    __tablename__ = "partner_accounts"

    exchanger: Mapped[str] = mapped_column(Text, primary_key=True)
    partner_id: Mapped[int | None] = mapped_column(BigInteger)
    balance: Mapped[Decimal | None] = mapped_column(MONEY)
    min_payout: Mapped[Decimal | None] = mapped_column(MONEY)
    # [{"id": int, "title": str, "commission": "1" (percent, as a decimal string), "amount": "152.35"}]
    currencies: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # Upper bounds of the last windows read completely (the next sync reads from cursor - overlap).
    exchanges_cursor: Mapped[datetime | None] = mapped_column(TS)
    payouts_cursor: Mapped[datetime | None] = mapped_column(TS)
    synced_at: Mapped[datetime | None] = mapped_column(TS)  # last successful sync
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(TS)
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())


class PartnerExchange(Base):
    __tablename__ = "partner_exchanges"
    __table_args__ = (
        UniqueConstraint("exchanger", "remote_id", name="uq_partner_exchanges_exchanger_remote_id"),
        Index("ix_partner_exchanges_time", "exchanger", "time"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exchanger: Mapped[str] = mapped_column(Text, nullable=False)
    remote_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    time: Mapped[datetime | None] = mapped_column(TS)  # the engine's last change of the bid
    status: Mapped[str | None] = mapped_column(Text)
    psys_give: Mapped[str | None] = mapped_column(Text)
    psys_get: Mapped[str | None] = mapped_column(Text)
    currency_code_give: Mapped[str | None] = mapped_column(Text)
    currency_code_get: Mapped[str | None] = mapped_column(Text)
    amount_give: Mapped[Decimal | None] = mapped_column(MONEY)
    amount_get: Mapped[Decimal | None] = mapped_column(MONEY)
    partner_reward: Mapped[Decimal | None] = mapped_column(MONEY)
    accrued: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    exchange_success: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    first_seen_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    synced_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())


class PartnerPayout(Base):
    __tablename__ = "partner_payouts"
    __table_args__ = (
        UniqueConstraint("exchanger", "remote_id", name="uq_partner_payouts_exchanger_remote_id"),
        Index("ix_partner_payouts_status", "exchanger", "status"),
        one_of("requested_via", PartnerPayoutOrigin),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exchanger: Mapped[str] = mapped_column(Text, nullable=False)
    remote_id: Mapped[int] = mapped_column(BigInteger, nullable=False)  # the engine's payout id
    time: Mapped[datetime | None] = mapped_column(TS)  # when it was requested (engine time)
    method_id: Mapped[int | None] = mapped_column(Integer)
    account: Mapped[str | None] = mapped_column(Text)  # a wallet/card the partner is paid to (not a secret)
    pay_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    pay_currency_code: Mapped[str | None] = mapped_column(Text)
    original_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    original_currency_code: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)  # 0 pending, 1 paid, 2 cancelled, 3 cancelled by user
    status_name: Mapped[str | None] = mapped_column(Text)
    requested_via: Mapped[str] = mapped_column(Text, nullable=False)  # a PartnerPayoutOrigin
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    first_seen_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    synced_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    status_changed_at: Mapped[datetime | None] = mapped_column(TS)
