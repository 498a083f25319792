"""A fake of config_service's Parameter Store reader (config_service.parameter_store)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from config_service.cache import Entry


class FakeStore:
    """Parameter Store as config_service sees it: `entries` by name.

    Counts single reads (`reads`) and can hold them until `release` is set (the answer is what the store
    held when the read reached it); records each batch read (`batches`), whose entries are stamped as
    loaded now.
    """

    def __init__(self, entries: dict[str, Entry] | None = None) -> None:
        self.entries = dict(entries or {})
        self.reads = 0
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def get_parameter(self, name: str) -> Entry | None:
        self.reads += 1
        answer = self.entries.get(name)
        await self.release.wait()
        return answer

    async def get_parameters(self, names: Sequence[str]) -> tuple[list[Entry], list[str]]:
        self.batches.append(list(names))
        now = datetime.now(UTC)
        found = [
            Entry(e.name, e.value, e.value_type, e.version, e.last_modified, now)
            for n in names
            if (e := self.entries.get(n)) is not None
        ]
        return found, [n for n in names if n not in self.entries]
