"""The payout engine: routes and rules (pure), rails (PayoutRail per provider), the engine, queries."""
