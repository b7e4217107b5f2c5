"""What the live cluster says about its partitions and nodes (`scontrol show ... -o`), as plain
data, so `profiles check` can compare a profile's claims against it line by line."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from launcher import slurm
from launcher.recipe import parse_time_minutes

_PAREN = re.compile(r"\([^)]*\)")
_UNLIMITED = {"UNLIMITED", "INFINITE", "NONE", "N/A", ""}


@dataclass
class NodeFacts:
    name: str
    cpus: int
    memory_mb: int
    gres: dict[str, int]  # "gpu" and "gpu:a100" → count
    partitions: list[str]
    state: str


@dataclass
class PartitionFacts:
    name: str
    max_time_minutes: Optional[int]  # None: unlimited
    max_nodes: Optional[int]
    max_cpus_per_node: Optional[int]
    max_mem_per_node_mb: Optional[int]
    state: str
    nodes: list[NodeFacts] = field(default_factory=list)


def parse_records(text: str) -> list[dict[str, str]]:
    """`scontrol show X -o`: one record a line, `Key=Value` pairs split on spaces. Values with
    spaces (Reason=..., OS=...) keep only their first word, which no check here reads."""
    records = []
    for line in text.splitlines():
        record = {}
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep:
                record[key] = value
        if record:
            records.append(record)
    return records


def parse_gres(text: str) -> dict[str, int]:
    """`gpu:a100:4(S:0-1),gpu:v100:2` → {"gpu": 6, "gpu:a100": 4, "gpu:v100": 2}; `(null)` → {}."""
    counts: dict[str, int] = {}
    for item in _PAREN.sub("", text).split(","):
        parts = item.strip().split(":")
        if len(parts) < 2 or not parts[-1].isdigit():
            continue
        count = int(parts[-1])
        name = parts[0]
        counts[name] = counts.get(name, 0) + count
        if len(parts) == 3:
            counts[f"{name}:{parts[1]}"] = counts.get(f"{name}:{parts[1]}", 0) + count
    return counts


def parse_minutes(text: str) -> Optional[int]:
    """Slurm's MaxTime (`UNLIMITED`, `2-00:00:00`, `04:00:00`) in minutes; None: unlimited."""
    return None if text.upper() in _UNLIMITED else parse_time_minutes(text)


def _limit(text: str) -> Optional[int]:
    return None if text.upper() in _UNLIMITED or not text.isdigit() else int(text)


def facts_from(partition_text: str, node_text: str) -> dict[str, PartitionFacts]:
    """Partition name → facts with its nodes, from `scontrol show partition -o` / `node -o`."""
    partitions = {
        rec["PartitionName"]: PartitionFacts(
            name=rec["PartitionName"],
            max_time_minutes=parse_minutes(rec.get("MaxTime", "UNLIMITED")),
            max_nodes=_limit(rec.get("MaxNodes", "UNLIMITED")),
            max_cpus_per_node=_limit(rec.get("MaxCPUsPerNode", "UNLIMITED")),
            max_mem_per_node_mb=_limit(rec.get("MaxMemPerNode", "UNLIMITED")),
            state=rec.get("State", "UNKNOWN"),
        )
        for rec in parse_records(partition_text) if "PartitionName" in rec
    }
    for rec in parse_records(node_text):
        if "NodeName" not in rec:
            continue
        node = NodeFacts(
            name=rec["NodeName"],
            cpus=int(rec.get("CPUTot", "0") or 0),
            memory_mb=int(rec.get("RealMemory", "0") or 0),
            gres=parse_gres(rec.get("Gres", "(null)")),
            partitions=[p for p in rec.get("Partitions", "").split(",") if p],
            state=rec.get("State", "UNKNOWN"),
        )
        for name in node.partitions:
            if name in partitions:
                partitions[name].nodes.append(node)
    return partitions


def read_partitions() -> dict[str, PartitionFacts]:
    """The live cluster's partitions and nodes (two scontrol calls)."""
    return facts_from(slurm.run(["scontrol", "show", "partition", "-o"], timeout=30),
                      slurm.run(["scontrol", "show", "node", "-o"], timeout=30))


def read_config() -> dict[str, str]:
    """`scontrol show config` as a dict (MaxArraySize, MaxJobCount, ...)."""
    out = slurm.run(["scontrol", "show", "config"], timeout=30)
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines()) if v}
