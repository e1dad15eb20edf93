"""A forEach list held in pages: compressed JSON, decoded one page at a time.

A forEach over 100,000 stored items must not keep 100,000 Python objects alive for the whole
run: the list is encoded once into pages of `PAGE_ITEMS`, compressed, and items are read by
index from the page they are on. Dispatch walks the items in index order, so one decoded
page at a time serves it; a retry of an older item decodes its page again.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any, overload

PAGE_ITEMS = 1000
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class PagedItems(Sequence[Any]):
    """A read-only list of JSON values, paged and compressed; one page decoded at a time."""

    __slots__ = ("_count", "_current", "_current_page", "_page_items", "_pages")

    def __init__(self, items: Sequence[Any], page_items: int = PAGE_ITEMS) -> None:
        self._count = len(items)
        self._page_items = page_items
        self._pages = [
            zlib.compress(_COMPACT.encode(list(items[start:start + page_items])).encode(), 1)
            for start in range(0, self._count, page_items)
        ]
        self._current_page = -1
        self._current: list[Any] = []

    @property
    def held_bytes(self) -> int:
        """Compressed bytes held for all pages."""
        return sum(len(p) for p in self._pages)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        page, offset = divmod(index, self._page_items)
        if page != self._current_page:
            self._current = json.loads(zlib.decompress(self._pages[page]))
            self._current_page = page
        return self._current[offset]
