"""Premium Exchanger user API v1: client, typed results, error map, paging helper.

The sandbox (a faithful fake server) lives in :mod:`providers.premium.sandbox` and is not imported here.
"""
from providers.premium.client import PremiumClient, decode_body, iter_exchanges
from providers.premium.errors import (
    ActionDisabledError,
    ApiDisabledError,
    BadResponseError,
    BidNotFoundError,
    DirectionNotFoundError,
    DuplicateApiIdError,
    IpBlockedError,
    MaintenanceError,
    MethodNotSupportedError,
    PartnerProgramError,
    check_envelope,
    error_for,
)
from providers.premium.types import (
    PAYOUT_STATUSES,
    ApiActions,
    Bid,
    Calc,
    Currency,
    Direction,
    DirectionCurrencies,
    DirectionSummary,
    ExchangeItem,
    Field,
    PartnerCurrency,
    PartnerExchange,
    PartnerInfo,
    PartnerLink,
    PartnerPayout,
    StatusEntry,
    TestInfo,
    parse_result,
)

__all__ = [
    "PremiumClient", "iter_exchanges", "decode_body",
    # errors
    "ApiDisabledError", "IpBlockedError", "MethodNotSupportedError", "MaintenanceError", "BidNotFoundError",
    "DirectionNotFoundError", "DuplicateApiIdError", "ActionDisabledError", "PartnerProgramError",
    "BadResponseError", "error_for", "check_envelope",
    # types
    "TestInfo", "Currency", "DirectionCurrencies", "DirectionSummary", "Field", "Direction", "Calc", "ApiActions",
    "Bid", "StatusEntry", "ExchangeItem", "PartnerCurrency", "PartnerInfo", "PartnerLink", "PartnerExchange",
    "PartnerPayout", "PAYOUT_STATUSES", "parse_result",
]
