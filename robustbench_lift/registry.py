"""One small registry type shared by pooling kinds, models, corruptions and attacks."""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, List, TypeVar

from robustbench_lift.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names raise a one-line :class:`UserError`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that files ``obj`` under ``name``."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise UserError(f"unknown {self.what} {name!r}; known: {known}") from None

    def names(self) -> List[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
