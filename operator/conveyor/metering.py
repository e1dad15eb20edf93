"""What one rendering of a `${{ }}` field may spend, and the macro rewriting that counts it.

The CEL library has no cost limit of its own, and its `map` and `filter` copy the list built so
far at every step (a `map` over 8,000 items takes two seconds, over 100,000 several minutes),
so a Workflow could stall the operator with one expression. A rendering (a task's inputs, a
`forEach`, a `when`, the run's outputs, a trigger's inputs) therefore runs under a `Meter`:

    MAX_COST         comprehension steps: every step of `all`, `exists`, `exists_one`, `map`
                     and `filter` costs STEP_COST, plus, for `map` and `filter`, the items
                     built so far (what the library copies), plus ITEM_COST for each `map`
                     item measured; exact and deterministic
    MAX_BYTES        bytes of values built, counted as compact JSON: every expression's value,
                     every `map` item as it is made; and, before an expression that could
                     multiply what it reads (`+`, or more than one reference), the values it
                     references times the number of `+` plus one
    MAX_DEPTH        nesting of a value built (and of a template), so no later encoder recurses
                     past Python's stack
    MAX_CPU_SECONDS  a backstop for what steps do not count (`in`, `==` or `contains` over large
                     values inside a comprehension), read from the thread's CPU clock

To count steps the expression is compiled a second time, rewritten: each macro body becomes
`(__cv_tick(site) ? (body) : null)` and each `map` item `[item].map(__cv_v, __cv_item(__cv_v) ?
__cv_v : null)[0]` (a one-item map binds the item without evaluating it twice), where
`__cv_tick` and `__cv_item` are this module's callbacks. Going over a limit raises inside the
callback, which stops the evaluation. The rewriting also fixes an order the library leaves to
chance: a comprehension over a map iterates the map's keys sorted (`__cv_keys`), where the
library's order changes from one evaluation to the next.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_COST = 5_000_000
# A step (a Python callback and the library's own work) costs about as long as copying 32
# items; measuring a map item (converting it to Python) about 64 more.
STEP_COST = 32
ITEM_COST = 64
MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 100
MAX_CPU_SECONDS = 1.0

TICK, ITEM, KEYS, BOUND = "__cv_tick", "__cv_item", "__cv_keys", "__cv_v"
RESERVED = "__cv_"
_ITERATING = frozenset(("all", "exists", "exists_one", "existsOne", "map", "filter"))
_COPYING = frozenset(("map", "filter"))  # the library copies the list built at every step
_KEYWORDS = frozenset(("true", "false", "null", "in"))
_CPU_EVERY = 256  # steps between two reads of the CPU clock

# --- the rewriting ------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+|//[^\n]*)
      | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"|'''|"|'))
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)
      | (?P<number>\d[\dA-Za-z_.]*(?:[eE][+-]\d+)?)
      | (?P<punct>.)""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # space | string | ident | number | punct
    text: str


def tokens(source: str) -> list[Token]:
    """CEL's tokens as far as the rewriting needs them: strings and comments kept whole,
    so brackets, commas and `+` inside them are not mistaken for code."""
    found: list[Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        assert match is not None  # the last branch matches any character
        kind = match.lastgroup or "punct"
        end = match.end()
        if kind == "string":
            end = _string_end(source, match.group(), end)
        found.append(Token(kind, source[position:end]))
        position = end
    return found


def _string_end(source: str, opening: str, after: int) -> int:
    quote = opening.lstrip("rRbB")
    raw = "r" in opening[: len(opening) - len(quote)].lower()
    position = after
    while position < len(source):
        if not raw and source[position] == "\\":
            position += 2
        elif source.startswith(quote, position):
            return position + len(quote)
        else:
            position += 1
    return len(source)


@dataclass(frozen=True)
class Metered:
    """An expression rewritten to count its steps; `parents[s]` encloses site `s` (or -1)."""

    source: str
    parents: tuple[int, ...]
    copying: tuple[bool, ...]
    additions: int  # `+` operators: concatenation can multiply what is read
    references: tuple[tuple[str, ...], ...]  # `inputs.order.id` -> ("inputs", "order", "id")
    inner: tuple[tuple[int, ...], ...]  # the sites nested in each site, at any depth


def meter_source(source: str) -> Metered:
    """The rewritten source, or the source itself when it iterates nothing."""
    found = tokens(source)
    closing = _matching(found)
    rewriter = _Rewriter(found, closing)
    text = rewriter.emit(0, len(found), -1)
    code = [t for t in found if t.kind != "space"]
    additions = sum(1 for t in code if t.text == "+")
    parents = tuple(rewriter.parents)
    return Metered(text, parents, tuple(rewriter.copying), additions, _references(code),
                   _descendants(parents))


def _matching(found: list[Token]) -> dict[int, int]:
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack: list[int] = []
    closing: dict[int, int] = {}
    for i, token in enumerate(found):
        if token.kind != "punct":
            continue
        if token.text in pairs:
            stack.append(i)
        elif token.text in pairs.values() and stack and pairs[found[stack[-1]].text] == \
                token.text:
            closing[stack.pop()] = i
    return closing


class _Rewriter:
    def __init__(self, found: list[Token], closing: dict[int, int]) -> None:
        self.found = found
        self.closing = closing
        self.opening = {close: open_ for open_, close in closing.items()}
        self.parents: list[int] = []
        self.copying: list[bool] = []

    def _previous_code(self, i: int) -> int:
        while i >= 0 and self.found[i].kind == "space":
            i -= 1
        return i

    def _receiver_start(self, dot: int, lo: int) -> int:
        """First token of what `.macro(` is called on: a primary and its member, index and
        call suffixes (`inputs.items`, `xs.map(q, q)`, `[1, 2]`, `m['k']`, `(a + b)`)."""
        j = self._previous_code(dot - 1)
        while j >= lo:
            if j in self.opening:  # a bracketed unit: a call, an index, a literal, a group
                j = self.opening[j]
            start = j
            before = self._previous_code(j - 1)
            if before < lo:
                return start
            if self.found[before].text == ".":
                j = self._previous_code(before - 1)
            elif self.found[j].text in "([" and (
                    self.found[before].kind == "ident" or before in self.opening):
                j = before  # `f(...)`, `a[...]`, `x[..][..]`
            elif self.found[j].text == "{" and self.found[before].kind == "ident":
                j = before  # `Message{...}`
            else:
                return start
        return lo

    def _next_code(self, i: int) -> int:
        while i < len(self.found) and self.found[i].kind == "space":
            i += 1
        return i

    def emit(self, lo: int, hi: int, parent: int) -> str:
        out: list[tuple[int, str]] = []  # (first token, text) of each piece emitted
        i = lo
        while i < hi:
            token = self.found[i]
            call = self._macro_call(i, hi)
            if call is None:
                out.append((i, token.text))
                i += 1
                continue
            name_at, open_at, close_at, commas = call
            start = self._receiver_start(i, lo)
            cut = next((k for k, (first, _) in enumerate(out) if first >= start), len(out))
            receiver = "".join(text for _, text in out[cut:])
            del out[cut:]
            arguments = self._arguments(self.found[name_at].text, open_at, close_at, commas,
                                        parent)
            if arguments is None:
                text = receiver + "".join(t.text for t in self.found[i:close_at + 1])
            else:
                # The library iterates a map in a random order: iterate its sorted keys, so
                # a forEach over a map is the same list every time it is evaluated.
                text = (f"[{receiver}].map({BOUND}, type({BOUND}) == map ? {KEYS}({BOUND}) "
                        f": {BOUND})[0]" + "".join(t.text for t in self.found[i:open_at + 1])
                        + arguments + ")")
            out.append((start, text))
            i = close_at + 1
        return "".join(text for _, text in out)

    def _macro_call(self, i: int, hi: int) -> tuple[int, int, int, list[int]] | None:
        """(name, `(`, `)`, top-level commas) if a `.macro(` call starts at token i."""
        if self.found[i].text != ".":
            return None
        name_at = self._next_code(i + 1)
        if name_at >= hi or self.found[name_at].text not in _ITERATING:
            return None
        open_at = self._next_code(name_at + 1)
        if open_at >= hi or self.found[open_at].text != "(" or open_at not in self.closing:
            return None
        close_at = self.closing[open_at]
        commas = []
        j = open_at + 1
        while j < close_at:
            if j in self.closing:
                j = self.closing[j] + 1
                continue
            if self.found[j].text == ",":
                commas.append(j)
            j += 1
        return name_at, open_at, close_at, commas

    def _arguments(self, name: str, open_at: int, close_at: int, commas: list[int],
                   parent: int) -> str | None:
        """The rewritten arguments of a macro; None for a call the library would not expand
        (its arguments are then left as they are: nothing in them iterates)."""
        bounds = [open_at, *commas, close_at]
        spans = [(bounds[k] + 1, bounds[k + 1]) for k in range(len(bounds) - 1)]
        variable = [t for t in self.found[spans[0][0]:spans[0][1]] if t.kind != "space"]
        shapes = {2: ("tick",), 3: ("tick", "item")} if name == "map" else {2: ("tick",)}
        shape = shapes.get(len(spans))
        if shape is None or len(variable) != 1 or variable[0].kind != "ident":
            return None
        site = len(self.parents)
        self.parents.append(parent)
        self.copying.append(name in _COPYING)
        if name == "map" and len(spans) == 2:
            shape = ("tick+item",)
        parts = [variable[0].text]
        for kind, (lo, hi) in zip(shape, spans[1:], strict=True):
            body = self.emit(lo, hi, site)
            if kind in ("tick", "tick+item"):
                body = f"({TICK}({site}) ? ({body}) : null)"
            if kind in ("item", "tick+item"):
                body = f"[{body}].map({BOUND}, {ITEM}({BOUND}) ? {BOUND} : null)[0]"
            parts.append(body)
        return ", ".join(parts)


def _references(code: list[Token]) -> tuple[tuple[str, ...], ...]:
    """Chains `name.field.field` that start a reference (not after `.`), up to a method call."""
    chains: list[tuple[str, ...]] = []
    i = 0
    while i < len(code):
        token = code[i]
        if token.kind == "ident" and token.text not in _KEYWORDS and (
                i == 0 or code[i - 1].text != ".") and (
                i + 1 >= len(code) or code[i + 1].text != "("):
            chain = [token.text]
            while (i + 2 < len(code) and code[i + 1].text == "." and code[i + 2].kind == "ident"
                   and not (i + 3 < len(code) and code[i + 3].text == "(")):
                chain.append(code[i + 2].text)
                i += 2
            chains.append(tuple(chain))
        i += 1
    return tuple(chains)


# --- counting -----------------------------------------------------------------------------


class LimitExceeded(Exception):  # noqa: N818 - raised through the CEL library, caught in expr
    """A Meter went over a limit; `reason` says which, in words for a task's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Meter:
    """What one rendering has spent so far; shared by every expression of the rendering."""

    __slots__ = ("_steps", "_ticks", "bytes", "cost", "exceeded", "started")

    def __init__(self) -> None:
        self.cost = 0
        self.bytes = 0
        self.exceeded: str | None = None
        # The thread's CPU clock at the first comprehension step (a syscall: not read for
        # expressions without steps, whose cost the byte limits already bound).
        self.started: float | None = None
        self._steps: dict[int, int] = {}
        self._ticks = 0

    def start(self) -> None:
        if self.started is None:
            self.started = time.thread_time()

    def callbacks(self, metered: Metered) -> dict[str, Callable[..., Any]]:
        """The functions the rewritten source calls, bound to this meter and that source."""
        inner = metered.inner

        def tick(site: int) -> bool:
            self.start()
            for nested in inner[site]:  # a new step here starts nested comprehensions afresh
                self._steps.pop(nested, None)
            done = self._steps.get(site, 0)
            self._steps[site] = done + 1
            self.cost += STEP_COST + (done if metered.copying[site] else 0)
            if self.cost > MAX_COST:
                self.fail(f"costs more than {MAX_COST} comprehension steps")
            self._ticks += 1
            if self._ticks % _CPU_EVERY == 0:
                self.check_cpu()
            return True

        def item(value: Any) -> bool:
            self.cost += ITEM_COST
            self.charge(value)
            return True

        return {TICK: tick, ITEM: item, KEYS: sorted_keys}

    def fail(self, reason: str) -> None:
        self.exceeded = self.exceeded or reason
        raise LimitExceeded(self.exceeded)

    def check_cpu(self) -> None:
        if self.started is not None and time.thread_time() - self.started > MAX_CPU_SECONDS:
            self.fail(f"ran longer than {MAX_CPU_SECONDS:g} s of CPU")

    def charge(self, value: Any, counted: int = 0) -> None:
        """Count a value built, less `counted` bytes of it already counted (its `map` items);
        fail when it takes the rendering over a limit."""
        size = measure(value, MAX_BYTES - self.bytes + counted + 1)
        if size is None:
            self.fail(f"builds a value nested deeper than {MAX_DEPTH} levels")
        assert size is not None
        self.bytes += max(size - counted, 0)
        if self.bytes > MAX_BYTES:
            self.fail(f"builds more than {MAX_BYTES} bytes")

    def precheck(self, metered: Metered, context: Mapping[str, Any]) -> None:
        """Fail before evaluating what could multiply the values it reads past the limit."""
        if metered.additions == 0 and len(metered.references) < 2:
            return
        read = 0
        for chain in metered.references:
            value = _follow(context, chain)
            if value is not None:
                size = measure(value, MAX_BYTES + 1)
                read += MAX_BYTES + 1 if size is None else size
        bound = (metered.additions + 1) * read
        if bound > MAX_BYTES:
            self.fail(f"could build {bound} bytes ({metered.additions} `+` over {read} bytes "
                      f"of referenced values), more than {MAX_BYTES}")


def sorted_keys(value: Mapping[Any, Any]) -> list[Any]:
    """A map's keys in one order, whatever their types (CEL keys: string, int, uint, bool)."""
    return sorted(value, key=lambda key: (type(key).__name__, key))


def _descendants(parents: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    inner: list[list[int]] = [[] for _ in parents]
    for site, parent in enumerate(parents):
        above = parent
        while above >= 0:
            inner[above].append(site)
            above = parents[above]
    return tuple(tuple(sites) for sites in inner)


def _follow(context: Mapping[str, Any], chain: tuple[str, ...]) -> Any:
    value: Any = context
    for name in chain:
        if not isinstance(value, Mapping) or name not in value:
            return None
        value = value[name]
    return value


def measure(value: Any, limit: int) -> int | None:
    """Size of a value as compact JSON, counted without recursion and stopping once past
    `limit` (the answer is then some size over it); None when it nests deeper than
    MAX_DEPTH."""
    size = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack and size <= limit:
        item, depth = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                return None
            size += 1 + max(len(item), 1)  # brackets and separators
            if isinstance(item, dict):
                size += sum(len(str(key)) + 3 for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, bytes):
            size += len(item) * 4 // 3 + 4
        elif isinstance(item, bool) or item is None:
            size += 5
        elif isinstance(item, int):
            size += item.bit_length() * 3 // 10 + 2  # digits, without converting huge ones
        else:  # float, timestamp, duration, whatever else the library returns
            size += 24
    return size
