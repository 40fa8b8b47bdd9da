"""The viewer as one self-contained HTML file: page, styles, script and data inline.

Nothing is fetched from the network, so the page works offline, from `file://`, and as
an attachment; the data sits in a JSON script block that the page's script reads.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

_SLOT = "/*TREEGYM_DATA*/"


def render_page(model: dict[str, Any]) -> str:
    """The page with `model` (see `data.view_model`) embedded."""
    template = files("treegym.view").joinpath("page.html").read_text(encoding="utf-8")
    # "<" escaped so that no text in a record (e.g. "</script>") can close the block
    data = json.dumps(model, ensure_ascii=False).replace("<", "\\u003c")
    return template.replace(_SLOT, data, 1)
