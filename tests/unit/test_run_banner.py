"""`exsync run`'s banner: /stuck is advertised only when it can be opened (EXSYNC_API_TOKEN set), with how."""
from __future__ import annotations

import dataclasses

from core.config import Settings
from devtools.supervisor import Stack


def test_without_a_token_stuck_is_not_advertised():
    web = Stack(Settings(), env={}).describe()[0]
    assert "/stuck" in web and "no operator page: set EXSYNC_API_TOKEN" in web
    assert "operator page: /stuck," not in web


def test_with_a_token_it_says_how_to_authenticate():
    web = Stack(dataclasses.replace(Settings(), api_token="t" * 32), env={}).describe()[0]
    assert "operator page: /stuck, Bearer or Basic with EXSYNC_API_TOKEN" in web
    assert "t" * 32 not in web
