"""Name → builder tables. Adding a model, objective or data source is one `register` call, not an `if` chain."""

from __future__ import annotations

from typing import Any

from pipelines.errors import PipelineError


class Registry:
    """A named table of entries; looking up an unknown name lists the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, entry: Any = None) -> Any:
        """Register `entry` under `name`; without `entry`, act as a decorator."""
        if entry is None:
            return lambda fn: self.register(name, fn)
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Any:
        """The entry for `name`, or a clear error that lists the known names."""
        if name not in self._entries:
            raise PipelineError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        """Names in the order they were registered (configs list valid choices in this order)."""
        return iter(self._entries)
