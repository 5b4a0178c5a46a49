"""One request's impressions → one list, or dead letters: the list-level rules (pure Python).

Rules, in this order:
1. the first line at a position wins (input order); later ones → `duplicate_position`;
2. a request mixing judged and click lines → each of its lines `mixed_labels`;
3. a request whose lines disagree on `device_type` or `context` → each of its lines
   `inconsistent_request` (which line is right cannot be known, so none is assumed);
4. a click list longer than max_list_size keeps its first max_list_size positions; the rest are
   counted as truncated (stats.json `truncated_impressions`, `lists_truncated`), not dead letters:
   deep scrolls are normal and the model sees at most max_list_size items anyway. A judged list
   that long → each line `list_too_long`: judged lists are never cut (which items to keep would
   be chosen with their grades at hand); size the spec to fit them.
So every line read is valid, a dead letter or truncated:
`lines_read == impressions_valid + dead_letter.total + truncated_impressions`.
"""
from __future__ import annotations

from ranker.features import spec as fs
from ranker.pipeline import parse


def order_list(located: list[tuple],
               max_list_size: int) -> tuple[list[dict], list[dict], int]:
    """Located impressions sorted by (position, source, line) → (kept, dead letters, truncated).

    Entries are (source, line, raw or None, impression); dead letters carry that raw.
    """
    kept, dead = _first_per_position(located)
    reason, detail = _list_fault(kept, max_list_size)
    if reason:
        dead.extend(parse.dead_letter(s, n, reason, detail, r) for s, n, r, _ in kept)
        return [], dead, 0
    truncated = max(0, len(kept) - max_list_size)
    return [entry[3] for entry in kept[:max_list_size]], dead, truncated


def _first_per_position(located: list[tuple]) -> tuple[list[tuple], list[dict]]:
    kept, dead = [], []
    last_position = None
    for source, line, raw, impression in located:
        position = impression[fs.POSITION]
        if position == last_position:
            first = kept[-1]
            dead.append(parse.dead_letter(source, line, parse.DUPLICATE_POSITION,
                                          f"position {position} of request "
                                          f"{impression[fs.REQUEST_ID]!r} already taken by "
                                          f"{first[0]}:{first[1]}", raw))
            continue
        kept.append((source, line, raw, impression))
        last_position = position
    return kept, dead


def _list_fault(kept: list[tuple], max_list_size: int) -> tuple[str | None, str | None]:
    """(reason, detail) when the whole request is rejected, else (None, None)."""
    judged = sum(1 for entry in kept if parse.is_judged(entry[3]))
    if 0 < judged < len(kept):
        return (parse.MIXED_LABELS,
                f"request mixes {judged} judged lines with {len(kept) - judged} click lines")
    first = kept[0][3] if kept else None
    for source, line, _, impression in kept[1:]:
        for key in (fs.DEVICE, parse.CONTEXT_KEY):
            if impression[key] != first[key]:
                return (parse.INCONSISTENT_REQUEST,
                        f"{key} differs within request {first[fs.REQUEST_ID]!r}: "
                        f"{kept[0][0]}:{kept[0][1]} and {source}:{line}")
    if judged and len(kept) > max_list_size:
        return (parse.LIST_TOO_LONG,
                f"judged request has {len(kept)} impressions, max_list_size is "
                f"{max_list_size}; judged lists are never truncated")
    return None, None
