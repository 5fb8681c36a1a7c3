"""The phases of `enteronce run`, derived from the Dagster Definitions (no second list to keep).

Every asset of the Definitions belongs to exactly one asset group; the groups, ordered by the
assets' dependencies, are the phases. Two rules shape them:

- a group that is the only downstream group of its only upstream group, and is partitioned the
  same way, runs in that group's phase (resolution and the golden records it feeds run as one);
- groups that do not depend on each other keep the order in which the Definitions declare their
  first asset (the subscribers' feeds before the quality pass: a drop's changes reach the
  subscribers without waiting for the checks; `enteronce run` builds the feeds again after the
  quality pass when it wrote correction tasks' events).

An asset check runs with the assets it checks, unless its specs name another group in their
metadata (`RUNS_WITH`): the golden suites judge what was published, gate nothing, and run in the
quality pass, after the feeds.

A phase is named after its first group (what `enteronce run` shows while it runs) and carries
its partitions definition's name: per station (ingest), per subscriber (feeds), or none.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


RUNS_WITH = "enteronce/runs_with_group"  # an asset check spec's metadata: the group whose phase runs it


@dataclass(frozen=True)
class Phase:
    name: str
    groups: tuple[str, ...]
    assets: tuple[dg.AssetsDefinition, ...]
    partitions: str | None
    checks_in: tuple[dg.AssetCheckKey, ...] = ()  # checks of other phases' assets that run here
    checks_out: tuple[dg.AssetCheckKey, ...] = ()  # checks of this phase's assets that run elsewhere

    @property
    def keys(self) -> list[str]:
        return [k.to_user_string() for a in self.assets for k in sorted(a.keys, key=lambda k: k.path)]

    @property
    def selection(self) -> dg.AssetSelection:
        """What a run of this phase materialises and checks."""
        selected = dg.AssetSelection.assets(*(k for a in self.assets for k in a.keys))
        if self.checks_out:
            selected = selected - dg.AssetSelection.checks(*self.checks_out)
        if self.checks_in:
            selected = selected | dg.AssetSelection.checks(*self.checks_in)
        return selected


def moved_checks(defs: dg.Definitions) -> dict[str, list[dg.AssetCheckKey]]:
    """group -> the asset checks that run in its phase rather than with the assets they check."""
    moved: dict[str, list[dg.AssetCheckKey]] = {}
    for node in defs.assets or []:
        if isinstance(node, dg.AssetChecksDefinition):
            for spec in node.check_specs:
                group = (spec.metadata or {}).get(RUNS_WITH)
                if group is not None:
                    moved.setdefault(str(group), []).append(spec.key)
    return moved


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
    moved = moved_checks(defs)
    unknown = sorted(set(moved) - set(order))
    if unknown:
        raise ValueError(f"asset checks name groups with no asset: {unknown} ({RUNS_WITH})")
    every_moved = {k for keys in moved.values() for k in keys}
    out = []
    for groups in phases:
        assets = tuple(n for g in groups for n, ng in zip(nodes, group_of_node) if ng == g)
        keys = {k for a in assets for k in a.keys}
        out.append(Phase(
            name=groups[0],
            groups=tuple(groups),
            assets=assets,
            partitions=next(iter(partitions[groups[0]])),
            checks_in=tuple(k for g in groups for k in moved.get(g, [])),
            checks_out=tuple(sorted((k for k in every_moved if k.asset_key in keys), key=str)),
        ))
    return out
