"""Walking nested config models key by key, for the reference and for unknown-key errors.

One walk serves both, so the keys that docs/training.md lists, the keys that
`treegym train --print-config` prints and the keys an error offers are the same set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..errors import close_matches


class Key(NamedTuple):
    """One settable key: where it lives, its field, and its value when it is not set."""

    path: str  # dotted, e.g. "rollout.m"
    section: str  # the section it belongs to, e.g. "rollout (mode: tree)"; "" at the top
    field: FieldInfo
    default: Any  # PydanticUndefined for a required key
    mode: str | None  # the union variant it belongs to ("tree" for rollout.m), if any

    @property
    def label(self) -> str:
        return self.path if self.mode is None else f"{self.path} (mode: {self.mode})"


def sections(annotation: Any) -> list[type[BaseModel]]:
    """The config models a field's value can be: none for a plain value, two for a union
    such as `rollout`, one for a section that may also be null (`ray`)."""
    return [a for a in get_args(annotation) or (annotation,)
            if isinstance(a, type) and issubclass(a, BaseModel)]


def variant(model: type[BaseModel]) -> str | None:
    """The `mode` tag that picks `model` within its union, or None outside a union."""
    mode = model.model_fields.get("mode")
    return None if mode is None else mode.default


def walk(model: type[BaseModel], defaults: BaseModel | None = None, prefix: str = "",
         mode: str | None = None) -> Iterator[Key]:
    """Every key of `model`, each section's right after the key that holds it.

    Defaults come from `defaults` (the enclosing default value) when there is one, so a
    section whose default differs from its model's own (`optim.lr`) shows the real one;
    a section that is null by default, or a union variant not chosen, shows its model's."""
    for name, field in model.model_fields.items():
        if defaults is not None:
            default = getattr(defaults, name)
        else:
            default = field.get_default(call_default_factory=True)
        path = f"{prefix}{name}"
        yield Key(path, prefix.removesuffix("."), field, default, mode)
        options = sections(field.annotation)
        for sub in options:
            yield from walk(sub, default if isinstance(default, sub) else None, f"{path}.",
                            variant(sub) if len(options) > 1 else None)


def model_at(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[type[BaseModel], str]:
    """The model of the mapping at pydantic error location `loc`, and its section name.

    A union's location names the chosen variant's tag after the field (`rollout.tree`)."""
    model, parts, path, mode = root, [str(p) for p in loc], "", None
    while parts:
        field = parts.pop(0)
        options = sections(model.model_fields[field].annotation)
        path = f"{path}.{field}" if path else field
        mode = parts.pop(0) if len(options) > 1 else None
        model = next(m for m in options if mode is None or variant(m) == mode)
    return model, path if mode is None else f"{path} (mode: {mode})"


def unknown_key(root: type[BaseModel], loc: Sequence[str | int]) -> str:
    """What to say about the unknown key at `loc`: the close valid keys beside it, where
    a key of that very name lives instead, and every valid key at its level."""
    bad = str(loc[-1])
    model, section = model_at(root, loc[:-1])
    here = list(model.model_fields)
    elsewhere = [k.label for k in walk(root) if k.path.rsplit(".", 1)[-1] == bad]
    guesses = list(dict.fromkeys(close_matches(bad, here) + elsewhere))
    hint = f"did you mean {', '.join(guesses)}?" if guesses else "no valid key is close to it;"
    level = f"keys of {section}" if section else "top-level keys"
    return f"unknown key {bad!r}; {hint} {level}: {', '.join(here)}"


def is_required(key: Key) -> bool:
    return key.default is PydanticUndefined
