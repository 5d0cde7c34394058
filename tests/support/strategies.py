"""Hypothesis strategies for hostile input: text that reaches the edges, JSON values, numbers."""
from __future__ import annotations

import json

from hypothesis import strategies as st

# Text that reaches the edges: every code point, lone surrogates and NUL included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), any_text,
                      st.decimals(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False,
                                                                                    allow_infinity=False))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(any_text, inner, max_size=4)),
                          max_leaves=12)
hostile_numbers = st.sampled_from(["²", "٣", "1e99999999", "1e999999999999999999", "-0", "0x10", " 1", "1_000",
                                   "9" * 30, "9223372036854775808", "NaN", "Infinity", "1,5", "１"])


def dumps(value) -> bytes:
    """JSON as a sender might write it, lone surrogates included (escaped)."""
    return json.dumps(value, default=str).encode()
