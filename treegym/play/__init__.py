"""`treegym play`: be the agent yourself, fork any turn, let a model continue.

`PlaySession` holds the tree and a kept world per turn; `Controller` maps input lines to
session operations and text; `tui.play` is the terminal loop around them.
"""

from .commands import Controller, Outcome
from .session import PlayError, PlaySession, Point, Proposal
from .shortforms import InputError, to_action

__all__ = [
    "Controller",
    "InputError",
    "Outcome",
    "PlayError",
    "PlaySession",
    "Point",
    "Proposal",
    "to_action",
]
