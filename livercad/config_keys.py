"""Dotted config keys: ``--set`` overrides, the keys older versions wrote, one-line validation messages.

:mod:`livercad.config` validates; this module only handles the plain tree (nested dicts) around it.

Example:
    >>> tree = {}
    >>> set_dotted(tree, "segment.train.lr=0.01")
    >>> tree
    {'segment': {'train': {'lr': 0.01}}}
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import ValidationError

from livercad.errors import ConfigError

#: Keys older versions wrote that this one no longer has (dotted key -> why, or what replaces it). The
#: ``config.yaml`` of an older bundle loads with them dropped (``drop_retired_keys=True`` of
#: :func:`livercad.config.load_config`); a config a user writes is refused with the hint.
RETIRED_KEYS: dict[str, str] = {
    "inference.write_prob": "it was never read",
    "inference.ray_address": "it was never read; give the Ray address with 'livercad predict --address'",
    "segment.model.extra_channels": "no dataset supplied extra channels and inference refused them",
    "ablation.shortcut": "use data.phantom.shortcut",
}


def format_validation(err: ValidationError, source: str) -> str:
    """One line naming every unknown, retired or invalid key of a pydantic validation error."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden" and key in RETIRED_KEYS:
            parts.append(f"retired key '{key}' ({RETIRED_KEYS[key]})")
        elif e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        else:
            parts.append(f"'{key}': {e['msg']} (got {e.get('input')!r})")
    return f"{source}: invalid config: " + "; ".join(parts)


def set_dotted(tree: dict[str, Any], dotted: str) -> None:
    """Apply one ``section.key=value`` override to ``tree`` in place (the value parsed as YAML)."""
    if "=" not in dotted:
        raise ConfigError(f"override '{dotted}' must look like section.key=value")
    key, raw = dotted.split("=", 1)
    node = tree
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def drop_retired(tree: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of a config tree without the :data:`RETIRED_KEYS`, and the dotted keys it dropped.

    Example:
        >>> drop_retired({"inference": {"write_prob": False, "batch_size": 2}})
        ({'inference': {'batch_size': 2}}, ['inference.write_prob'])
    """
    out, dropped = copy.deepcopy(tree), []
    for dotted in RETIRED_KEYS:
        *parents, leaf = dotted.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            del node[leaf]
            dropped.append(dotted)
    return out, dropped


__all__ = ["RETIRED_KEYS", "drop_retired", "format_validation", "set_dotted"]
