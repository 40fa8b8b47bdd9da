"""`treegym view`: tree records as a collapsible, offline web page.

`data` reshapes records (their savings, their tasks per file) for the page, `page`
inlines them into the single-file HTML, `server` serves it on loopback.
"""

from .data import load_trees, savings, task_key, tips, view_model
from .page import render_page
from .server import make_server, page_for, serve

__all__ = [
    "load_trees",
    "make_server",
    "page_for",
    "render_page",
    "savings",
    "serve",
    "task_key",
    "tips",
    "view_model",
]
