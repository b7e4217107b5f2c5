"""Cut the work of an array stage into elements: the pure scheduling half of `shards: auto`.

The work is a list of units, one per (model, benchmark), each with an estimated cost per problem
(`launcher.cost_model`). An element holds one or more pieces, each a contiguous range of problems
of one unit. Three layouts:

- `balanced`: the units are laid end to end (model-major, so an element rarely needs two models)
  and the line is cut at the problem boundaries nearest to equal shares of the total cost. Every
  element then costs the mean give or take one problem (plus a start-up per model it loads),
  which one-element-per-benchmark cannot do when MBPP has 500 problems and the others 164.
- `per_unit`: one element per (model, benchmark), as before auto balancing.
- `sharded`: `shards: {benchmark: n}`: that benchmark in n parts of equal problem count (the
  others whole), per model.

No torch and no jobs import: the planner runs this on a login node.
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Optional, Sequence


@dataclass
class Unit:
    """The problems of one benchmark for one model, with an estimated cost (seconds) per problem."""

    model: str
    benchmark: str
    costs: list[float]

    @property
    def total(self) -> float:
        return sum(self.costs)


@dataclass
class Piece:
    model: str
    benchmark: str
    start: int
    stop: int
    num_problems: int  # problems of the whole (limited) benchmark, so a job can check the range

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "benchmark": self.benchmark, "start": self.start, "stop": self.stop,
                "num_problems": self.num_problems}

    @property
    def label(self) -> str:
        whole = self.start == 0 and self.stop == self.num_problems
        return self.benchmark if whole else f"{self.benchmark}[{self.start}:{self.stop}]"


@dataclass
class Element:
    key: str
    pieces: list[Piece] = field(default_factory=list)
    cost: float = 0.0  # estimated seconds, start-up included

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(p.model for p in self.pieces))

    def to_item(self) -> dict[str, Any]:
        return {"key": self.key, "cost": round(self.cost, 3), "pieces": [p.to_dict() for p in self.pieces]}


def _cost(unit: Unit, start: int, stop: int) -> float:
    return sum(unit.costs[start:stop])


def _finish(elements: list[Element], units: dict[tuple[str, str], Unit], startup_s: float) -> list[Element]:
    for element in elements:
        work = sum(_cost(units[(p.model, p.benchmark)], p.start, p.stop) for p in element.pieces)
        element.cost = work + startup_s * len(element.models)
    return elements


def _unit_key(unit: Unit, multi_model: bool, suffix: str = "") -> str:
    name = unit.benchmark + suffix
    return f"{unit.model}:{name}" if multi_model else name


def per_unit(units: Sequence[Unit], startup_s: float = 0.0) -> list[Element]:
    """One element per (model, benchmark)."""
    multi = len({u.model for u in units}) > 1
    elements = [Element(_unit_key(u, multi), [Piece(u.model, u.benchmark, 0, len(u.costs), len(u.costs))])
                for u in units]
    return _finish(elements, {(u.model, u.benchmark): u for u in units}, startup_s)


def equal_count_range(num_problems: int, part: int, parts: int) -> range:
    """Part `part` of `parts` contiguous ranges of equal problem count (the first ones one longer)."""
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"part {part} of {parts} is out of range")
    base, extra = divmod(num_problems, parts)
    start = part * base + min(part, extra)
    return range(start, start + base + (1 if part < extra else 0))


def sharded(units: Sequence[Unit], shards: dict[str, int], startup_s: float = 0.0) -> list[Element]:
    """`shards: {benchmark: n}`: n equal-count parts of that benchmark, the others whole."""
    multi = len({u.model for u in units}) > 1
    elements = []
    for unit in units:
        n = len(unit.costs)
        parts = min(shards.get(unit.benchmark, 1), n) or 1
        for part in range(parts):
            r = equal_count_range(n, part, parts)
            suffix = "" if parts == 1 else f"-s{part}of{parts}"
            elements.append(Element(_unit_key(unit, multi, suffix), [Piece(unit.model, unit.benchmark, r.start, r.stop, n)]))
    return _finish(elements, {(u.model, u.benchmark): u for u in units}, startup_s)


def balanced(units: Sequence[Unit], count: int, startup_s: float = 0.0) -> list[Element]:
    """`count` elements of near-equal cost: cut the end-to-end line of problems at equal shares."""
    line: list[tuple[int, int]] = [(u, i) for u, unit in enumerate(units) for i in range(len(unit.costs))]
    if not line:
        return []
    count = max(1, min(count, len(line)))
    prefix = [0.0] + list(accumulate(units[u].costs[i] for u, i in line))
    total = prefix[-1]
    cuts = [0]
    for j in range(1, count):
        target = total * j / count
        k = bisect_left(prefix, target)
        if k > 0 and (k >= len(prefix) or target - prefix[k - 1] <= prefix[k] - target):
            k -= 1
        cuts.append(min(max(k, cuts[-1] + 1), len(line) - (count - j)))
    cuts.append(len(line))
    width = len(str(count))
    multi = len({u.model for u in units}) > 1
    elements = []
    for number in range(count):
        element = Element(f"part{number + 1:0{width}d}of{count}")
        position = cuts[number]
        while position < cuts[number + 1]:
            u, start = line[position]
            unit = units[u]
            stop = min(len(unit.costs), start + cuts[number + 1] - position)
            element.pieces.append(Piece(unit.model, unit.benchmark, start, stop, len(unit.costs)))
            position += stop - start
        only = element.pieces[0]
        if len(element.pieces) == 1 and only.start == 0 and only.stop == only.num_problems:
            element.key = f"{only.model}:{only.benchmark}" if multi else only.benchmark
        elements.append(element)
    return _finish(elements, {(u.model, u.benchmark): u for u in units}, startup_s)


def elements_for_minutes(units: Sequence[Unit], minutes: float, startup_s: float) -> int:
    """How many elements make each about `minutes` long (start-up included)."""
    total = sum(u.total for u in units)
    per_element = max(minutes * 60.0 - startup_s, 1e-9)
    return max(1, math.ceil(total / per_element))


def makespan(costs: Sequence[float], parallel: Optional[int]) -> float:
    """Wall time of the array when at most `parallel` elements run at once (None: all at once),
    longest first onto the slot that frees first, as a throttled Slurm array roughly does."""
    if not costs:
        return 0.0
    slots = len(costs) if not parallel else max(1, min(parallel, len(costs)))
    heap = [0.0] * slots
    for cost in sorted(costs, reverse=True):
        heapq.heapreplace(heap, heap[0] + cost)
    return max(heap)


@dataclass
class LayoutSummary:
    """What `plan` prints for one layout of one array."""

    elements: int
    max_s: float
    mean_s: float
    makespan_s: float

    @property
    def ratio(self) -> float:
        """Largest element over the mean: 1.0 is perfect balance."""
        return self.max_s / self.mean_s if self.mean_s else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"elements": self.elements, "max_s": round(self.max_s, 3), "mean_s": round(self.mean_s, 3),
                "makespan_s": round(self.makespan_s, 3), "max_over_mean": round(self.ratio, 4)}


def summarize(elements: Sequence[Element], parallel: Optional[int]) -> LayoutSummary:
    costs = [e.cost for e in elements]
    mean = sum(costs) / len(costs) if costs else 0.0
    return LayoutSummary(len(costs), max(costs, default=0.0), mean, makespan(costs, parallel))
