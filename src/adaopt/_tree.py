"""Trees of arrays: nested lists, tuples and dicts with arrays at the leaves.

Each leaf gets a name, the path of keys and indices that leads to it joined by
dots (``{"layer": [w, b]}`` names ``"layer.0"`` and ``"layer.1"``), so state and
checkpoints are keyed by parameter name, not by position.
"""

from __future__ import annotations

import numpy as np

_CONTAINERS = (list, tuple, dict)
_ARRAYS_ONLY = frozenset((np.ndarray,))


def flatten(tree, prefix: str = "") -> tuple[list, list[str]]:
    """Leaves and their names, depth first, in the tree's own order."""
    leaves: list = []
    names: list[str] = []

    def walk(node, path):
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, (list, tuple)):
            items = enumerate(node)
        else:
            leaves.append(node)
            names.append(path or "param")
            return
        for key, child in items:
            walk(child, f"{path}.{key}" if path else str(key))

    walk(tree, prefix)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"parameter names must be unique; {dup} appear more than once")
    return leaves, names


def flatten_like(reference, tree, what: str = "grads") -> list:
    """The leaves of ``tree``, which must have the same structure as ``reference``.

    Raises ``ValueError`` naming the first place where the structures differ.
    """
    flat = _flat_leaves(reference, tree)
    if flat is not None:
        return flat
    out: list = []

    def walk(ref, node, path):
        where = path or "the top level"
        if isinstance(ref, dict):
            if not isinstance(node, dict) or set(node) != set(ref):
                got = sorted(map(str, node)) if isinstance(node, dict) else type(node).__name__
                raise ValueError(f"{what} do not match the params at {where}: "
                                 f"expected keys {sorted(map(str, ref))}, got {got}")
            for key in ref:
                walk(ref[key], node[key], f"{path}.{key}" if path else str(key))
        elif isinstance(ref, (list, tuple)):
            if not isinstance(node, (list, tuple)) or len(node) != len(ref):
                got = f"length {len(node)}" if isinstance(node, (list, tuple)) else type(node).__name__
                raise ValueError(f"{what} do not match the params at {where}: "
                                 f"expected a sequence of length {len(ref)}, got {got}")
            for i, (r, n) in enumerate(zip(ref, node)):
                walk(r, n, f"{path}.{i}" if path else str(i))
        else:
            if isinstance(node, _CONTAINERS):
                raise ValueError(f"{what} do not match the params at {where}: "
                                 f"expected an array, got a {type(node).__name__}")
            out.append(node)

    walk(reference, tree, "")
    return out


def _is_leafy(values) -> bool:
    if _ARRAYS_ONLY.issuperset(map(type, values)):  # the common case, at C speed
        return True
    for v in values:
        if isinstance(v, _CONTAINERS):
            return False
    return True


def _flat_leaves(reference, tree):
    """The common one-level case (a list or dict of arrays), without the recursive walk."""
    if isinstance(reference, (list, tuple)):
        if isinstance(tree, (list, tuple)) and len(tree) == len(reference) and _is_leafy(tree) \
                and _is_leafy(reference):
            return list(tree)
    elif isinstance(reference, dict):
        if isinstance(tree, dict) and tree.keys() == reference.keys() and _is_leafy(tree.values()) \
                and _is_leafy(reference.values()):
            return [tree[k] for k in reference]
    return None


def unflatten(reference, leaves) -> object:
    """A tree shaped like ``reference`` with ``leaves`` in place of its leaves."""
    it = iter(leaves)

    def build(ref):
        if isinstance(ref, dict):
            return {k: build(v) for k, v in ref.items()}
        if isinstance(ref, (list, tuple)):
            return type(ref)(build(v) for v in ref)
        return next(it)

    return build(reference)
