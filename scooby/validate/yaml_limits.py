"""Bounds on what a YAML file may cost to read: nesting depth (measured on parser events,
before libyaml's recursive composer can crash the interpreter) and the number of values a
document stands for once its aliases are expanded. Split from `manifests`, which uses them.
"""

from __future__ import annotations

from typing import Any


def loader():
    """libyaml's safe loader where it is built in, else PyYAML's."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# libyaml's composer recurses in C once per level: 100,000 `[` crash the interpreter (no
# RecursionError). Its event parser does not recurse, so depth is measured on events first.
MAX_DEPTH = 100


def nesting(text: str) -> tuple[int, int | None]:
    """The deepest nesting of collections in `text`, and the line where it first gets there."""
    import yaml

    depth, deepest, line = 0, 0, None
    for event in yaml.parse(text, Loader=loader()):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > deepest:
                deepest, line = depth, event.start_mark.line + 1
                if deepest > MAX_DEPTH:
                    break
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return deepest, line


# A manifest is a few hundred values; YAML aliases can make a 1 KB file stand for billions
# (each `*a` repeats a whole subtree), which every later walk would visit one by one.
MAX_NODES = 100_000


def expanded_size(root: Any) -> int:
    """How many values `root` stands for with every alias expanded, counting stops soon
    after MAX_NODES. Linear in the file: each distinct node's size is computed once."""
    from yaml.nodes import MappingNode, SequenceNode

    memo: dict[int, int] = {}

    def size(node: Any) -> int:
        if id(node) in memo:
            return memo[id(node)]
        memo[id(node)] = MAX_NODES + 1  # a node reached again while counting it: a cycle
        total = 1
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                break
        memo[id(node)] = total
        return total

    return size(root)
