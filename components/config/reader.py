"""Reading the raw config tree: every key read through a Node that knows its full key path,
and every problem collected in one Problems list, reported together as one ConfigError."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from components.config.model import DNS1035, QUANTITY, is_dns_label
from components.constants import PROJECT


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def bad(self, path: str, value: Any, allowed: str) -> None:
        self.items.append(f"{path}: got {_show(value)}; {allowed}")

    def missing(self, path: str, example: str) -> None:
        self.items.append(f"{path}: required but not set; fix: {_set_cmd(path, example)}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _set_cmd(path: str, example: str) -> str:
    nested = "." in path.split(":", 1)[1] or "[" in path
    return f"pulumi config set {'--path ' if nested else ''}'{path}' {example}"


MISSING = object()


class Node:
    """A mapping in the config tree that knows its key path and reports into Problems."""

    def __init__(self, problems: Problems, path: str, data: Mapping[str, Any]) -> None:
        self.p = problems
        self.path = path
        self.data = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path and not self.path.endswith(":") else f"{self.path}{name}"

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        return self.data.get(name, MISSING)

    def _typed(self, name: str, kinds: tuple[type, ...], what: str, default: Any, example: str) -> Any:
        value = self.raw(name)
        if value is MISSING or value is None:
            if default is MISSING:
                self.p.missing(self.key(name), example)
                return None
            return default
        # bool is an int to isinstance; `true` is not a number here.
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.p.bad(self.key(name), value, f"expected {what}")
            return None if default is MISSING else default
        return value

    def str(self, name: str, default: Any = MISSING, example: str = "<value>",
            choices: tuple[str, ...] | None = None, pattern: re.Pattern[str] | None = None,
            rule: str = "") -> Any:
        value = self._typed(name, (str,), "a string", default, example)
        if value is None or value == default:
            return value
        if choices is not None and value not in choices:
            self.p.bad(self.key(name), value, f"allowed: {', '.join(choices)}")
        elif pattern is not None and not pattern.match(value):
            self.p.bad(self.key(name), value, rule)
        return value

    def int(self, name: str, default: Any = MISSING, example: str = "1", minimum: int | None = None,
            maximum: int | None = None) -> Any:
        value = self._typed(name, (int,), "an integer", default, example)
        if isinstance(value, int) and not isinstance(value, bool):
            if minimum is not None and value < minimum:
                self.p.bad(self.key(name), value, f"must be >= {minimum}")
            elif maximum is not None and value > maximum:
                self.p.bad(self.key(name), value, f"must be <= {maximum}")
        return value

    def number(self, name: str, minimum: float = 0) -> float | None:
        value = self._typed(name, (int, float), "a number", None, "1")
        if value is not None and value < minimum:
            self.p.bad(self.key(name), value, f"must be >= {minimum}")
        return None if value is None else float(value)

    def bool(self, name: str, default: bool) -> bool:
        value = self._typed(name, (bool,), "true or false", default, "true")
        return bool(value)

    def quantity(self, name: str, default: Any = MISSING, example: str = "4") -> Any:
        value = self.raw(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
            self.data = {**self.data, name: value}
        self.seen.discard(name)
        return self.str(name, default, example, pattern=QUANTITY,
                        rule="expected a Kubernetes quantity such as 4, 500m, 16Gi")

    def str_list(self, name: str, default: Any = MISSING, example: str = "'[\"a\"]'",
                 item: Callable[[str, Any], None] | None = None) -> tuple[str, ...]:
        value = self._typed(name, (list,), "a list of strings", default, example)
        if value is None:
            return ()
        out: list[str] = []
        for i, v in enumerate(value):
            if not isinstance(v, str):
                self.p.bad(f"{self.key(name)}[{i}]", v, "expected a string")
                continue
            if item is not None:
                item(f"{self.key(name)}[{i}]", v)
            out.append(v)
        return tuple(out)

    def str_map(self, name: str) -> dict[str, str]:
        value = self._typed(name, (dict,), "a map of string to string", {}, "")
        out: dict[str, str] = {}
        for k, v in (value or {}).items():
            if not isinstance(v, str):
                self.p.bad(f"{self.key(name)}.{k}", v, "expected a string (quote numbers and booleans)")
            else:
                out[str(k)] = v
        return out

    def any_map(self, name: str) -> dict[str, Any]:
        return dict(self._typed(name, (dict,), "a map", {}, "") or {})

    def child(self, name: str, required: bool = False, example: str = "'{...}'") -> "Node | None":
        value = self._typed(name, (dict,), "a map", MISSING if required else None, example)
        return None if value is None else Node(self.p, self.key(name), value)

    def children(self, name: str, required: bool = False) -> list["Node"]:
        value = self._typed(name, (list,), "a list of maps", MISSING if required else [], "'[...]'")
        nodes: list[Node] = []
        for i, item in enumerate(value or []):
            if not isinstance(item, dict):
                self.p.bad(f"{self.key(name)}[{i}]", item, "expected a map")
                continue
            nodes.append(Node(self.p, f"{self.key(name)}[{i}]", item))
        return nodes

    def done(self) -> None:
        """Report keys nobody read: a typo must not silently fall back to a default."""
        for extra in sorted(set(self.data) - self.seen):
            allowed = ", ".join(sorted(self.seen))
            self.p.bad(self.key(extra), self.data[extra], f"unknown key; known keys here: {allowed}")


def ns(key: str) -> str:
    return f"{PROJECT}:{key}"


def check_dns(p: Problems, path: str, value: str | None, max_len: int, what: str,
              pattern: re.Pattern[str] = DNS1035) -> None:
    if value is None:
        return
    if not is_dns_label(value, max_len, pattern):
        kind = "DNS-1035 label" if pattern is DNS1035 else "DNS-1123 label"
        p.bad(path, value, f"{what} must be a {kind}: lowercase letters, digits and '-', "
                           f"starting with a letter, ending alphanumeric, at most {max_len} characters")


def check_range(p: Problems, node: Node, lo: str, mid: str | None, hi: str,
                vals: tuple[int | None, int | None, int | None]) -> None:
    low, desired, high = vals
    if low is None or high is None:
        return
    if low > high:
        p.bad(node.key(lo), low, f"{lo} must be <= {hi} ({high})")
    if mid is not None and desired is not None and not (low <= desired <= high):
        p.bad(node.key(mid), desired, f"{mid} must lie between {lo} ({low}) and {hi} ({high})")


def check_unique(p: Problems, list_path: str, names: list[str], message: str) -> None:
    """Report every repeat of a name at `<list_path>[i].name`; `{first}` in `message` is the first index."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            p.bad(f"{list_path}[{i}].name", name, message.format(first=first[name]))
        first.setdefault(name, i)
