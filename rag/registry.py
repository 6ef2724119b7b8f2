"""Plain registries: one dict per extension point, built-ins registered like add-ons."""
from __future__ import annotations

import importlib
from typing import Callable, TypeVar

from rag.errors import BadInputError

T = TypeVar("T")


class Registry(dict):
    """name -> factory. `get` errors list the valid choices.

    `modules`: name -> the module that registers it, imported by `get` on first use; for entries defined in a
    layer above the registry's (the tiny-lm reader lives in rag.world, which itself uses the readers).
    """

    def __init__(self, what: str, modules: dict[str, str] | None = None):
        super().__init__()
        self.what = what
        self.modules = dict(modules or {})

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self[name] = obj
            return obj

        return deco

    def get(self, name: str):  # type: ignore[override]
        if name not in self and name in self.modules:
            importlib.import_module(self.modules[name])
        try:
            return self[name]
        except KeyError:
            choices = ", ".join(sorted(set(self) | set(self.modules))) or "(none registered)"
            raise BadInputError(f"unknown {self.what} {name!r}; choose one of: {choices}") from None
