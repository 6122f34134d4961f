"""Text people read safely: names without control characters, CSV cells no spreadsheet runs."""

from __future__ import annotations

import re
from typing import Any

# Characters a name must not hold: C0 and C1 controls (they move a terminal's cursor, clear its
# screen, or break a CSV line) and the bidirectional overrides that reorder what a reader sees.
UNPRINTABLE = r"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
UNPRINTABLE_CHARS = re.compile(f"[{UNPRINTABLE}]")
# A cell a spreadsheet would run as a formula starts with one of these.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell no spreadsheet runs as a formula: text that starts like one gets a leading `'`
    (numbers stay numbers)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
