"""Plain registries: one dict per extension point, built-ins registered like add-ons."""
from __future__ import annotations

from typing import Callable, TypeVar

from rag.errors import BadInputError

T = TypeVar("T")


class Registry(dict):
    """name -> factory. `get` errors list the valid choices."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self[name] = obj
            return obj

        return deco

    def get(self, name: str):  # type: ignore[override]
        try:
            return self[name]
        except KeyError:
            choices = ", ".join(sorted(self)) or "(none registered)"
            raise BadInputError(f"unknown {self.what} {name!r}; choose one of: {choices}") from None
