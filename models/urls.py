"""The database URL as SQLAlchemy needs it: plain string work, so the settings loader can use it without
importing SQLAlchemy."""
from __future__ import annotations


def normalize_url(url: str) -> str:
    """Pin the psycopg2 driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url
