"""PayoutRail objects per configured provider, built once per process and cached on the Runtime.

Rails get two callbacks into our database:
- ZaleyCash ``request_lookup(key)``: the stored payout's parameters, so ``find()`` can probe by re-sending
  the same operation after a restart;
- Paysera ``store_id(key, transfer_id)`` / ``load_id(key)``: the provider's id, kept in ``payouts.provider_ref``.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text

from providers.payouts import PayoutRail, PayoutRequest
from core.config import ConfigError
from core.payout_config import ProviderConfig


def request_for(row: Any) -> PayoutRequest:
    """The PayoutRequest of a stored payout (a row with idempotency_key, amount, currency, destination)."""
    return PayoutRequest(key=row.idempotency_key, amount=plain(row.amount), currency=row.currency,
                         destination=row.destination, description=f"exsync payout {row.idempotency_key}")


def plain(amount: Decimal) -> Decimal:
    """Numeric(38,18) without its trailing zeros and never in exponent form (100, 91.8)."""
    return amount.quantize(Decimal(1)) if amount == amount.to_integral() else amount.normalize()


def _lookup(runtime) -> Any:
    def lookup(key: str) -> PayoutRequest | None:
        with runtime.db.session() as s:
            row = s.execute(text("SELECT idempotency_key, amount, currency, destination FROM payouts "
                                 "WHERE idempotency_key = :k"), {"k": key}).first()
        if row is None or row.amount is None or not row.destination:
            return None
        return request_for(row)
    return lookup


def _store_id(runtime):
    def store(key: str, transfer_id: str) -> None:
        with runtime.db.session() as s:
            s.execute(text("UPDATE payouts SET provider_ref = :ref WHERE idempotency_key = :k"),
                      {"ref": str(transfer_id), "k": key})
    return store


def _load_id(runtime):
    def load(key: str) -> str | None:
        with runtime.db.session() as s:
            return s.execute(text("SELECT provider_ref FROM payouts WHERE idempotency_key = :k"),
                             {"k": key}).scalar()
    return load


def build_rail(runtime, cfg: ProviderConfig) -> PayoutRail:
    if cfg.type == "zaleycash":
        from providers.zaleycash import ZaleyCashClient, ZaleyCashRail

        client = ZaleyCashClient(cfg.base_url, cfg.secrets["secret_key"], timeout=cfg.timeout,
                                 status_path=cfg.options.get("status_path"))
        return ZaleyCashRail(client, name=cfg.name, currencies=cfg.options.get("currencies"),
                             request_lookup=_lookup(runtime))
    if cfg.type == "gateway":
        from providers.gateway import GatewayClient, GatewayRail

        client = GatewayClient(cfg.base_url, cfg.secrets["api_key"], cfg.secrets["secret"], timeout=cfg.timeout,
                               shop_code=cfg.options.get("shop_code"))
        return GatewayRail(client, name=cfg.name, callback_url=cfg.options.get("callback_url"))
    if cfg.type == "paysera":  # not covered by this package's tests yet
        from providers.paysera import PayseraClient
        from providers.paysera.payout import PayseraRail

        client = PayseraClient(cfg.base_url, cfg.options["mac_id"], cfg.secrets["mac_key"], timeout=cfg.timeout)
        return PayseraRail(client, name=cfg.name, payer_account=cfg.options.get("payer_account"),
                           beneficiary_type=cfg.options.get("beneficiary_type", "paysera"),
                           store_id=_store_id(runtime), load_id=_load_id(runtime))
    raise ConfigError(f"providers.{cfg.name}.type", f"unsupported provider type {cfg.type!r}")


def rail_for(runtime, name: str) -> PayoutRail:
    """The rail of provider ``name`` (one per process: clients pool connections and cache tokens)."""
    with runtime._lock:
        rail = runtime._rails.get(name)
    if rail is not None:
        return rail
    cfg = runtime.payouts().providers.get(name)
    if cfg is None:
        raise ConfigError(f"providers.{name}", "no such payout provider is configured")
    rail = build_rail(runtime, cfg)
    with runtime._lock:
        return runtime._rails.setdefault(name, rail)
