"""The downstream filter, built in and opt-in: drop rows by logits thresholds and a blocklist.

Development Seed's ingest after the notebook dropped rows whose ``nuisances``
logits (classes empty, speech, unknown) said "speech" or "empty", and rows
whose ``(filename, timestamp_s)`` is in a blocklist CSV.  One command states
that rule::

    --drop "nuisances[speech] > -0.25" --drop "nuisances[empty] > 1.5 @ 0" \\
    --drop "nuisances[empty] > 0 @ 1-4" --blocklist blocklist.csv

A rule is ``HEAD[CLASS] OP THRESHOLD [@ CHANNELS]``: ``CLASS`` a class name
(:data:`KNOWN_CLASSES`, or ``--classes HEAD=a,b,c``) or a column index, ``OP``
one of ``> >= < <=``, ``CHANNELS`` a list such as ``0``, ``1-4`` or ``0,2``
(all channels when omitted).  A row is dropped when any rule holds for it.
Kept rows stay in order; dropped rows are counted per shard.
"""

from __future__ import annotations

import csv
import hashlib
import io
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..storage import open_url

#: class order of logits heads Perch writes
KNOWN_CLASSES: dict[str, tuple[str, ...]] = {"nuisances": ("empty", "speech", "unknown")}
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_RULE = re.compile(
    r"^\s*(?P<head>[A-Za-z_][\w-]*)\s*\[\s*(?P<col>[^\]\s]+)\s*\]\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?:@\s*(?P<ch>[\d,\s-]+))?\s*$"
)


def _channels(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        if dash:
            if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
                raise ValueError(f"bad channel range {part!r}")
            out.extend(range(int(lo), int(hi) + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ValueError(f"bad channel {part!r}")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class DropRule:
    """Drop a row when ``head[column] OP threshold`` on one of ``channels`` (None: any)."""

    head: str
    column: int | str
    op: str
    threshold: float
    channels: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> DropRule:
        m = _RULE.match(text)
        if m is None:
            raise ValueError(
                f"drop rule {text!r} is not HEAD[CLASS] OP THRESHOLD [@ CHANNELS], "
                'e.g. "nuisances[speech] > -0.25" or "nuisances[empty] > 0 @ 1-4"'
            )
        col = m["col"]
        return cls(
            head=m["head"],
            column=int(col) if col.isdigit() else col,
            op=m["op"],
            threshold=float(m["value"]),
            channels=None if m["ch"] is None else _channels(m["ch"]),
        )

    def __str__(self) -> str:
        where = "" if self.channels is None else " @ " + ",".join(map(str, self.channels))
        return f"{self.head}[{self.column}] {self.op} {self.threshold!r}{where}"


@dataclass(frozen=True)
class RowFilter:
    """Which rows of a record to keep: the drop rules and the blocklist together."""

    rules: tuple[DropRule, ...] = ()
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    blocklist: frozenset[tuple[str, float]] = frozenset()

    @property
    def heads(self) -> tuple[str, ...]:
        """The logits heads the rules read (decoded even when not written)."""
        return tuple(sorted({r.head for r in self.rules}))

    def column(self, rule: DropRule, width: int) -> int:
        if isinstance(rule.column, int):
            index = rule.column
        else:
            names = self.classes.get(rule.head) or KNOWN_CLASSES.get(rule.head)
            if not names or rule.column not in names:
                known = f"its classes are {list(names)}" if names else f"give them with --classes {rule.head}=a,b,c"
                raise ValueError(
                    f"drop rule {str(rule)!r}: class {rule.column!r} unknown for head {rule.head!r}; {known}"
                )
            index = names.index(rule.column)
        if not 0 <= index < width:
            raise ValueError(f"drop rule {str(rule)!r}: head {rule.head!r} has {width} classes, not {index + 1}")
        return index

    def keep(
        self, filename: str, timestamp_s: float, windows: int, channels: int, heads: dict[str, np.ndarray]
    ) -> np.ndarray | None:
        """A boolean mask over the record's ``windows * channels`` rows, or None to keep all."""
        rows = windows * channels
        if (filename, float(timestamp_s)) in self.blocklist:
            return np.zeros(rows, dtype=bool)
        drop = np.zeros(rows, dtype=bool)
        channel_of = np.tile(np.arange(channels), windows)
        for rule in self.rules:
            block = heads[rule.head]
            hit = _OPS[rule.op](block[:, self.column(rule, block.shape[1])].astype(np.float64), rule.threshold)
            if rule.channels is not None:
                hit &= np.isin(channel_of, rule.channels)
            drop |= hit
        return None if not drop.any() else ~drop

    def fingerprint(self) -> dict[str, Any]:
        """What decides the kept rows, for the manifest's fingerprint."""
        keys = sorted(self.blocklist)
        return {
            "drop": [str(r) for r in self.rules],
            "classes": {h: list(c) for h, c in sorted(self.classes.items())},
            "blocklist_sha256": hashlib.sha256(repr(keys).encode()).hexdigest() if keys else None,
        }


def parse_classes(items: Iterable[str] | dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """``["nuisances=empty,speech,unknown"]`` (or a dict) -> ``{head: class names}``."""
    if items is None:
        return {}
    if isinstance(items, dict):
        return {str(k): tuple(str(c) for c in v) for k, v in items.items()}
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        head, sep, names = item.partition("=")
        if not sep or not head.strip() or not names.strip():
            raise ValueError(f"classes {item!r} are not HEAD=name,name,...")
        out[head.strip()] = tuple(n.strip() for n in names.split(","))
    return out


def load_blocklist(url: str, storage_options: dict[str, Any] | None = None) -> frozenset[tuple[str, float]]:
    """``(filename, timestamp_s)`` pairs from a CSV (a header row naming the two columns, or none)."""
    with open_url(url, "rb", storage_options=storage_options) as f:
        text = f.read().decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    rows = [r for r in reader if r and any(cell.strip() for cell in r)]
    if not rows:
        return frozenset()
    name_col, ts_col = 0, 1
    header = [c.strip().lower() for c in rows[0]]
    has_header = "filename" in header and "timestamp_s" in header
    if has_header:
        name_col, ts_col = header.index("filename"), header.index("timestamp_s")
        rows = rows[1:]
    out = set()
    for line, row in enumerate(rows, start=2 if has_header else 1):
        try:
            out.add((row[name_col].strip(), float(row[ts_col])))
        except (IndexError, ValueError):
            raise ValueError(f"{url}: line {line} is not filename,timestamp_s: {row!r}") from None
    return frozenset(out)
