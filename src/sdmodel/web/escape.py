"""HTML escaping for everything the web page shows (text, attributes, inline SVG)."""

from __future__ import annotations

import html
from typing import Any


def e(value: Any) -> str:
    """HTML-escape anything (None -> empty)."""
    return "" if value is None else html.escape(str(value), quote=True)
