"""The in-process search index of one entity (one per replica, rebuilt on every new snapshot).

Matching is case-insensitive substring matching on the entity's search fields (never across
two fields). Sets of records are bitmasks, or sorted lists when few
(:mod:`services.catalog.bitsets`): the masks of the keys many records hold are kept (made on
first use, within a budget), so a query matching 10,000 records costs about what one matching
ten does. The index is built on *tokens* (runs of letters/digits): each distinct token has the
records that hold it and is listed under its bigrams and trigrams; a token with a character
after it (neither a letter/digit nor the end of its field) is also held as that pair.

A query is cut into tokens the same way. A query token inside the query gives the records
holding a token that contains it (from the grams); one with punctuation or a space on its left
the records holding a token starting with it (the sorted tokens, bisected); on its right, a
token ending with it and followed by that character (the sorted reversed pairs); the sets are
intersected. A query of one token, or one token and the character after it, is answered exactly
so; any other is verified with a plain substring test of the whole query on the candidates
left. A query with a gram nobody has (a rare substring that matches nothing: the worst case of
a linear scan) is answered from one dictionary lookup.

Prefix matches (a field starting with the query) rank before other matches; within each group
records keep the index order (sort field, then id). Each field's first token (with the
character after it, if any) is its *lead*: a field starts with a one-token query when its lead
does (the sorted leads, bisected). Ranked results are kept in a small LRU per index; a page is
read off them.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

from services.catalog.bitsets import Members, both, count, listed, mask_of, members, without
from services.catalog.records import EntitySpec, Record
from shared.lru import LRU

__all__ = ["SearchIndex", "SearchResult", "build_index", "collector_paused"]

_SEPARATOR = "\x00"  # between fields in a haystack: a query never contains it
_LAST = "\U0010ffff"  # sorts after every character: the end of a prefix range
_RESULT_CACHE_SIZE = 512
_ANSWER_CACHE_SIZE = 512
# Few records: kept as a list, not a mask; candidates this few are not narrowed further.
_FEW = 64
# Masks are kept for keys at least this many records hold, within a budget per kind of key.
_MASKED_MIN = 32
_MASK_BUDGET_BYTES = 16 << 20
_TOKEN = re.compile(r"[^\W_]+")
# A token and the character after it, if any (neither a letter/digit nor the field separator).
_FOLLOWED = re.compile(r"([^\W_]+)((?:[^\w\x00]|_)?)")
# The first token of a field, and the character after it if any.
_LEAD = re.compile(r"(?:^|\x00)([^\W_]+(?:[^\w\x00]|_)?)")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector while building large acyclic structures (it would
    otherwise walk every record again and again: half the build time at 50,000 records)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class SearchResult:
    """Ranked matches: ``first`` (a field starts with the query) before ``rest``, each in index
    order."""

    first: Members
    rest: Members
    first_count: int
    total: int

    def page(self, offset: int, size: int) -> list[int]:
        if offset >= self.first_count:
            return _slice(self.rest, offset - self.first_count, size)
        found = _slice(self.first, offset, size)
        return found + _slice(self.rest, 0, size - len(found)) if len(found) < size else found

    @property
    def positions(self) -> list[int]:
        """Every match, ranked."""
        return listed(self.first) + listed(self.rest)


def _slice(found: Members, skip: int, size: int) -> list[int]:
    return found[skip:skip + size] if isinstance(found, list) else members(found, skip, size)


class _Postings:
    """Key → positions of the records holding it, ascending; the keys sorted (or sorted
    reversed) for prefix (suffix) ranges, if asked; the masks of keys many records hold, made
    on first use and kept (within a budget)."""

    def __init__(self, positions: dict[str, list[int]], size: int, *, ranges: str = "") -> None:
        self.positions = positions
        self.size = size
        self.keys = sorted(positions) if ranges == "prefix" else []
        self.reversed_keys = sorted(key[::-1] for key in positions) if ranges == "suffix" else []
        self._masks: dict[str, int] = {}
        self._room = _MASK_BUDGET_BYTES // max(1, (size + 7) >> 3)

    def starting_with(self, prefix: str) -> list[str]:
        keys = self.keys
        low = bisect.bisect_left(keys, prefix)
        return keys[low:bisect.bisect_left(keys, prefix + _LAST, low)]

    def ending_with(self, suffix: str) -> list[str]:
        keys, prefix = self.reversed_keys, suffix[::-1]
        low = bisect.bisect_left(keys, prefix)
        return [key[::-1] for key in keys[low:bisect.bisect_left(keys, prefix + _LAST, low)]]

    def union(self, keys: Iterable[str]) -> Members:
        """The records holding any of ``keys`` (absent keys hold nothing)."""
        mask = 0
        few: list[list[int]] = []
        for key in keys:
            found = self.positions.get(key)
            if found is None:
                continue
            if len(found) < _MASKED_MIN:
                few.append(found)
            else:
                mask |= self._mask(key, found)
        if not few:
            return mask
        if not mask and sum(map(len, few)) <= _FEW:  # (a posting list is never changed)
            return few[0] if len(few) == 1 else sorted(set(chain.from_iterable(few)))
        return mask | mask_of(chain.from_iterable(few), self.size)

    def _mask(self, key: str, positions: list[int]) -> int:
        mask = self._masks.get(key)
        if mask is None:
            mask = mask_of(positions, self.size)
            if len(self._masks) < self._room:
                self._masks[key] = mask
        return mask


def _haystacks(records: list[Record], fields: tuple[str, ...]) -> list[str]:
    """Each record's search fields, casefolded, joined by the separator."""
    values = operator.itemgetter(*fields) if len(fields) > 1 else (
        lambda record: (record[fields[0]],))
    try:  # every field there and text: the fast way
        return [_SEPARATOR.join(values(record)).casefold() for record in records]
    except (KeyError, TypeError):
        return [_SEPARATOR.join(str(record.get(name, "")) for name in fields).casefold()
                for record in records]


class SearchIndex:
    """Immutable once built; ``records`` are in index order (sort field, then id)."""

    def __init__(
        self, spec: EntitySpec, records: Iterable[Record], *, version: int, source: str,
        fetched_at: datetime | None, filters: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.version = version
        self.source = source
        self.fetched_at = fetched_at
        sort_field = spec.sort_field

        def sort_key(record: Record) -> tuple[str, int]:
            name = record.get(sort_field) or (
                f"{record.get('first_name', '')} {record.get('last_name', '')}".strip())
            return (name.casefold(), record["netsuite_id"])

        self.records: list[Record] = sorted(records, key=sort_key)
        self.by_id: dict[int, int] = {r["netsuite_id"]: i for i, r in enumerate(self.records)}
        self.haystacks = _haystacks(self.records, spec.search_fields)
        self._size = size = len(self.records)
        self._all = (1 << size) - 1
        tokens, followed, leads = self._collect(self.haystacks)
        self._grams = self._build_grams(tokens)
        self._tokens = _Postings(tokens, size, ranges="prefix")
        self._followed = _Postings(followed, size, ranges="suffix")
        self._leads = _Postings(leads, size, ranges="prefix")
        self._filters: dict[str, dict[str, int]] = {}
        for name in filters:
            groups: dict[str, list[int]] = {}
            for position, record in enumerate(self.records):
                groups.setdefault(str(record.get(name, "")).casefold(), []).append(position)
            self._filters[name] = {value: mask_of(found, size) for value, found in groups.items()}
        self._short_parts: dict[str, Members] = {}  # one or two letters/digits → holders
        self._results: LRU[tuple[Any, ...], SearchResult] = LRU(_RESULT_CACHE_SIZE)
        # What the server makes of this index's data, kept as long as the index: built
        # protobuf messages and serialized records by position, serialized answers by request.
        self.messages: dict[int, Any] = {}
        self.encoded: dict[int, bytes] = {}
        self.answers: LRU[Hashable, bytes] = LRU(_ANSWER_CACHE_SIZE)

    def renumber(self, version: int) -> None:
        """The same data under a new snapshot version: the kept answers go, as their page
        tokens name the old one."""
        self.version = version
        self.answers = LRU(_ANSWER_CACHE_SIZE)

    @staticmethod
    def _collect(haystacks: list[str]) -> tuple[dict[str, list[int]], ...]:
        """Positions holding each token; each token-and-character pair (the character after
        the token); each lead (a field's first token, and the character after it if any)."""
        tokens: defaultdict[str, list[int]] = defaultdict(list)
        followed: defaultdict[str, list[int]] = defaultdict(list)
        leads: defaultdict[str, list[int]] = defaultdict(list)
        pairs_in, leads_in = _FOLLOWED.findall, _LEAD.findall
        for position, haystack in enumerate(haystacks):
            pairs = pairs_in(haystack)
            for token in {token for token, _ in pairs}:
                tokens[token].append(position)
            for pair in {token + after for token, after in pairs if after}:
                followed[pair].append(position)
            for lead in set(leads_in(haystack)):
                leads[lead].append(position)
        return dict(tokens), dict(followed), dict(leads)

    @staticmethod
    def _build_grams(tokens: Iterable[str]) -> dict[str, list[str]]:
        """gram → the distinct tokens holding it (bigrams and trigrams of each)."""
        grams: defaultdict[str, list[str]] = defaultdict(list)
        for token in tokens:
            size = len(token)
            for gram in {token[i:i + n] for n in (2, 3) for i in range(size - n + 1)}:
                grams[gram].append(token)
        return dict(grams)

    def __len__(self) -> int:
        return len(self.records)

    def get(self, netsuite_id: int) -> tuple[int, Record] | None:
        position = self.by_id.get(netsuite_id)
        return None if position is None else (position, self.records[position])

    # -- search ----------------------------------------------------------------------------------

    def search(self, query: str, filters: dict[str, str] | None = None) -> SearchResult:
        wanted = {k: v.casefold() for k, v in (filters or {}).items() if v}
        needle = query.casefold()
        key = (needle, tuple(sorted(wanted.items())))
        cached = self._results.get(key)
        if cached is not None:
            return cached
        size = self._size
        matches = self._matches(needle) if needle else self._all
        for name, value in wanted.items():
            matches = both(matches, self._filters.get(name, {}).get(value, 0), size)
        first = self._prefixed(needle, matches) if needle and matches else []
        result = SearchResult(first, without(matches, first, size), count(first), count(matches))
        self._results.put(key, result)
        return result

    def _matches(self, needle: str) -> Members:
        """The records with a field containing ``needle`` (not empty)."""
        haystacks = self.haystacks
        parts = []
        for found in _TOKEN.finditer(needle):
            # a part next to punctuation in the query must start/end a token there (and be
            # followed by that character)
            start, end = found.span()
            parts.append((found.group(), needle[start - 1:start], needle[end:end + 1]))
        if not parts:  # only punctuation or spaces: nothing to look up
            return [p for p, haystack in enumerate(haystacks) if needle in haystack]
        candidates: Members | None = None
        for part, before, after in sorted(set(parts), key=lambda p: -len(p[0])):
            if candidates is not None and ((len(part) < 3 and not (before or after))
                                           or count(candidates) <= _FEW):
                break  # candidates are few already; the final test checks the whole needle
            holders = self._holders(part, before, after)
            candidates = holders if candidates is None else both(candidates, holders,
                                                                 self._size)
            if not candidates:
                return []
        assert candidates is not None
        if not parts[0][1] and len(needle) <= len(parts[0][0]) + 1:
            return candidates  # one token, and the character after it at most: exact
        return [p for p in listed(candidates) if needle in haystacks[p]]

    def _holders(self, part: str, before: str, after: str) -> Members:
        """The records holding a token with ``part`` in it; with a character ``before``, a
        token starting with it; with one ``after``, a token ending with it, followed by that
        character."""
        if after:
            followed = self._followed
            return followed.union([part + after] if before
                                  else followed.ending_with(part + after))
        tokens = self._tokens
        if before:
            return tokens.union(tokens.starting_with(part))
        if len(part) > 2:
            return tokens.union(self._tokens_with(part))
        found = self._short_parts.get(part)  # held by most tokens: worth keeping
        if found is None:
            found = self._short_parts[part] = tokens.union(self._tokens_with(part))
        return found

    def _tokens_with(self, part: str) -> list[str]:
        """The distinct tokens containing ``part``."""
        if len(part) == 1:
            return [token for token in self._tokens.positions if part in token]
        size = 3 if len(part) >= 3 else 2
        lists = []
        for gram in {part[i:i + size] for i in range(len(part) - size + 1)}:
            found = self._grams.get(gram)
            if found is None:
                return []
            lists.append(found)
        if size == len(part):  # the part is the gram
            return lists[0]
        lists.sort(key=len)
        candidates: Iterable[str] = lists[0]
        if len(lists) > 1 and len(lists[0]) > 32:
            narrowed = set(lists[0])
            for other in lists[1:4]:
                narrowed.intersection_update(other)
            candidates = narrowed
        return [token for token in candidates if part in token]

    def _prefixed(self, needle: str, matches: Members) -> Members:
        """The part of ``matches`` (records containing ``needle``) with a field starting with
        ``needle``."""
        lead = _LEAD.match(needle)
        leads = self._leads
        candidates = matches
        if lead is not None and isinstance(matches, int):
            if lead.end() == len(needle):  # one token (and a character): a lead starting so
                return both(matches, leads.union(leads.starting_with(needle)), self._size)
            candidates = both(matches, leads.union([lead.group(1)]), self._size)
        haystacks, marked = self.haystacks, _SEPARATOR + needle
        return [p for p in listed(candidates)
                if haystacks[p].startswith(needle) or marked in haystacks[p]]

    def message(self, position: int, build: Callable[[Record], Any]) -> Any:
        """The protobuf message of a record, built once per index."""
        message = self.messages.get(position)
        if message is None:
            message = self.messages[position] = build(self.records[position])
        return message

    def encoding(self, position: int, encode: Callable[[Record], bytes]) -> bytes:
        """The serialized form of a record (what ``encode`` makes of it), made once per index."""
        found = self.encoded.get(position)
        if found is None:
            found = self.encoded[position] = encode(self.records[position])
        return found


def build_index(
    spec: EntitySpec, records: Iterable[Record], *, version: int, source: str,
    fetched_at: datetime | None, filters: tuple[str, ...] = (),
) -> SearchIndex:
    """A new index, built with the cyclic collector paused."""
    with collector_paused():
        return SearchIndex(spec, records, version=version, source=source, fetched_at=fetched_at,
                           filters=filters)
