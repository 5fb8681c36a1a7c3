"""The phases of `enteronce run`, derived from the Dagster Definitions (no second list to keep).

Every asset of the Definitions belongs to exactly one asset group; the groups, ordered by the
assets' dependencies, are the phases. Two rules shape them:

- a group that is the only downstream group of its only upstream group, and is partitioned the
  same way, runs in that group's phase (resolution and the golden records it feeds run as one);
- groups that do not depend on each other keep the order in which the Definitions declare their
  first asset (the quality pass before the subscribers' feeds, so the feeds carry the correction
  tasks' events of the same run).

A phase is named after its first group (what `enteronce run` shows while it runs) and carries
its partitions definition's name: per station (ingest), per subscriber (feeds), or none.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class Phase:
    name: str
    groups: tuple[str, ...]
    assets: tuple[dg.AssetsDefinition, ...]
    partitions: str | None

    @property
    def keys(self) -> list[str]:
        return [k.to_user_string() for a in self.assets for k in sorted(a.keys, key=lambda k: k.path)]


def materializable(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    """The Definitions' asset nodes that materialise something (not the asset checks), in order."""
    return [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.keys]


def _group(node: dg.AssetsDefinition) -> str:
    groups = set(node.group_names_by_key.values())
    if len(groups) != 1:
        raise ValueError(f"asset node {node.node_def.name if node.node_def else node.keys} spans groups "
                         f"{sorted(groups)}; `enteronce run` needs one group per node")
    return groups.pop()


def run_phases(defs: dg.Definitions) -> list[Phase]:
    nodes = materializable(defs)
    group_of_node = [_group(n) for n in nodes]
    group_of_key = {k: g for n, g in zip(nodes, group_of_node) for k in n.keys}
    order: dict[str, int] = {}  # group -> index of its first asset in the Definitions
    partitions: dict[str, set[str | None]] = {}
    upstream: dict[str, set[str]] = {}
    for node, group in zip(nodes, group_of_node):
        order.setdefault(group, len(order))
        partitions.setdefault(group, set()).add(node.partitions_def.name if node.partitions_def else None)
        ups = upstream.setdefault(group, set())
        for deps in node.asset_deps.values():
            ups.update(group_of_key[d] for d in deps if d in group_of_key and group_of_key[d] != group)
    for group, parts in partitions.items():
        if len(parts) != 1:
            raise ValueError(f"asset group {group!r} mixes partitions {sorted(map(str, parts))}")
    downstream: dict[str, set[str]] = {g: set() for g in order}
    for group, ups in upstream.items():
        for up in ups:
            downstream[up].add(group)

    # Kahn's order over the groups; ties by declaration order.
    waiting = {g: set(ups) for g, ups in upstream.items()}
    ordered: list[str] = []
    while waiting:
        ready = sorted((g for g, ups in waiting.items() if not ups), key=order.__getitem__)
        if not ready:
            raise ValueError(f"asset groups depend on each other in a cycle: {sorted(waiting)}")
        ordered.append(ready[0])
        del waiting[ready[0]]
        for ups in waiting.values():
            ups.discard(ready[0])

    phase_of: dict[str, list[str]] = {}  # group -> the groups of its phase (shared list)
    phases: list[list[str]] = []
    for group in ordered:
        ups = upstream[group]
        if len(ups) == 1:
            (up,) = ups
            if downstream[up] == {group} and partitions[up] == partitions[group]:
                phase_of[up].append(group)
                phase_of[group] = phase_of[up]
                continue
        phase_of[group] = [group]
        phases.append(phase_of[group])
    return [
        Phase(
            name=groups[0],
            groups=tuple(groups),
            assets=tuple(n for g in groups for n, ng in zip(nodes, group_of_node) if ng == g),
            partitions=next(iter(partitions[groups[0]])),
        )
        for groups in phases
    ]
