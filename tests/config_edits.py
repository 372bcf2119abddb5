"""Building bad stack configs for table-driven tests: one edit at a dotted key path."""
from __future__ import annotations

import copy
from typing import Any

DELETE = object()


def with_change(path: str, value: Any, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with one value set (or removed, for value=DELETE) at a dotted path like gpuPools.0.maxSize."""
    raw = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw
