"""Addressing components of a parameter tree by path patterns.

An agent's parameters are one nested dict whose top-level keys name components (docs/design.md,
"Components and parameters")::

  {"world_model": {"encoder": {...}, "dynamics": {...}, "reward": {...}, "termination": {...}},
   "value": {"Dense_0": {"kernel": [in, out], "bias": [out]}, ...},
   "actor": {...}}

**Component rule.** The *component paths* of a tree are the ``"/"``-joined dict paths of

* every dict at depth 1 (``"world_model"``, ``"value"``, ``"actor"``), and
* every dict at depth 2 (``"world_model/dynamics"``) that is not itself a flax module: a dict
  counts as a module when it holds an array directly (a layer such as ``Dense_0`` with its
  ``kernel`` and ``bias``) or when its name follows flax's automatic module naming
  ``CamelCase_<index>`` (``Dense_0``, ``LayerNorm_1``, ``MLP_0``).

Deeper nodes are never components: they are the layers of a component's network.

**Patterns.** A target pattern is one or more terms joined by ``+`` (a union). Each term is an
:func:`fnmatch.fnmatchcase` glob over component paths: an exact path (``"value"``), a glob
(``"world_model/*"``, note that ``*`` also crosses ``/``), or ``"*"`` for every component. Every
term must match at least one component, otherwise a :class:`ValueError` lists the valid paths.
A matched component addresses every parameter below it, so ``"world_model"`` addresses all of its
sub-components.
"""

from __future__ import annotations

import fnmatch
import re
import zlib
from collections.abc import Mapping
from typing import Any, Iterable

import jax
import jax.numpy as jnp

SEPARATOR = "/"
UNION = "+"

_FLAX_MODULE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*_\d+$")
_PATTERN_TERM = re.compile(r"^[A-Za-z0-9_*?\[\]!./-]+$")


# ---------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------


def split_pattern(pattern: str) -> tuple[str, ...]:
  """The union terms of a target pattern, checked for syntax (not against any tree).

  Args:
    pattern: a target such as ``"value+world_model/reward"``.

  Returns:
    The stripped terms, e.g. ``("value", "world_model/reward")``.

  Raises:
    ValueError: if the pattern is not a string, is empty, has an empty term (``"a++b"``) or a
      term with characters outside ``[A-Za-z0-9_*?[]!./-]``.
  """
  if not isinstance(pattern, str):
    raise ValueError(f"target must be a string pattern, got {pattern!r}")
  terms = tuple(term.strip() for term in pattern.split(UNION))
  for term in terms:
    if not term:
      raise ValueError(f"target {pattern!r} has an empty term; expected paths joined by "
                       f"{UNION!r}, e.g. 'value+world_model/reward'")
    if not _PATTERN_TERM.match(term):
      raise ValueError(f"target term {term!r} in {pattern!r} has invalid characters; allowed: "
                       "letters, digits, '_', '/', '.', '-' and the glob characters '*?[]!'")
  return terms


def pattern_matches_path(pattern: str, path: str) -> bool:
  """Whether ``pattern`` addresses ``path`` or one of its ancestors.

  This is the rule for addressing a component *output* (activation faults, training hooks):
  ``"world_model"`` addresses ``"world_model/dynamics"``.

  Args:
    pattern: a target pattern (see module docstring).
    path: a ``"/"``-joined component path.

  Returns:
    True when a term of the pattern matches ``path`` or any ``"/"``-prefix of it.
  """
  parts = path.split(SEPARATOR)
  prefixes = [SEPARATOR.join(parts[:i]) for i in range(1, len(parts) + 1)]
  return any(fnmatch.fnmatchcase(prefix, term)
             for term in split_pattern(pattern) for prefix in prefixes)


# ---------------------------------------------------------------------------------------------
# Components of a tree
# ---------------------------------------------------------------------------------------------


def _is_layer(node: Mapping) -> bool:
  return any(not isinstance(child, Mapping) for child in node.values())


def _is_subcomponent(name: str, node: Any) -> bool:
  return (isinstance(node, Mapping) and not _is_layer(node)
          and not _FLAX_MODULE_NAME.match(str(name)))


def component_paths(params: Mapping) -> tuple[str, ...]:
  """Every component path of a parameter tree (see the component rule in the module docstring).

  Args:
    params: the agent's nested parameter dict.

  Returns:
    Sorted paths, parents before children, e.g. ``("actor", "value", "world_model",
    "world_model/dynamics", "world_model/encoder", ...)``.
  """
  if not isinstance(params, Mapping):
    raise ValueError(f"params must be a nested dict of components, got {type(params).__name__}")
  paths = []
  for name in sorted(params, key=str):
    node = params[name]
    if not isinstance(node, Mapping):
      continue
    paths.append(str(name))
    if _is_layer(node):
      continue
    for sub_name in sorted(node, key=str):
      if _is_subcomponent(sub_name, node[sub_name]):
        paths.append(f"{name}{SEPARATOR}{sub_name}")
  return tuple(paths)


def match_components(params: Mapping, pattern: str) -> tuple[str, ...]:
  """Every component path of ``params`` matched by a term of ``pattern``.

  Args:
    params: the agent's nested parameter dict.
    pattern: a target pattern (see module docstring).

  Returns:
    The matched component paths in the order of :func:`component_paths` (a parent and its
    children may both appear).

  Raises:
    ValueError: when a term of the pattern matches no component; the message lists the valid
      component paths.
  """
  valid = component_paths(params)
  matched = set()
  for term in split_pattern(pattern):
    hits = [path for path in valid if fnmatch.fnmatchcase(path, term)]
    if not hits:
      raise ValueError(f"target {term!r} (in {pattern!r}) matches no component; valid component "
                       f"paths: {', '.join(valid) if valid else '(none)'}")
    matched.update(hits)
  return tuple(path for path in valid if path in matched)


def resolve_target(params: Mapping, pattern: str) -> tuple[str, ...]:
  """The component paths of ``params`` addressed by ``pattern``, without redundancy.

  Args:
    params: the agent's nested parameter dict.
    pattern: a target pattern (see module docstring).

  Returns:
    The matched component paths in the order of :func:`component_paths`, with any path whose
    ancestor is also matched removed (the ancestor already addresses it).

  Raises:
    ValueError: when a term of the pattern matches no component; the message lists the valid
      component paths.
  """
  matched = match_components(params, pattern)
  return tuple(path for path in matched
               if not any(other != path and is_under(path, other) for other in matched))


def is_under(path: str, root: str) -> bool:
  """Whether ``path`` equals ``root`` or lies below it (``"a/b/c"`` is under ``"a/b"``)."""
  return path == root or path.startswith(root + SEPARATOR)


def lowest_components(params: Mapping, roots: Iterable[str]) -> tuple[str, ...]:
  """The components without sub-components at or below each root: the actual networks.

  Args:
    params: the agent's nested parameter dict.
    roots: matched component paths (from :func:`resolve_target`).

  Returns:
    Component paths, e.g. ``"world_model"`` expands to ``"world_model/dynamics"``, ... .
  """
  valid = component_paths(params)
  networks = []
  for root in roots:
    below = [path for path in valid if is_under(path, root)]
    networks.extend(path for path in below
                    if not any(other != path and is_under(other, path) for other in below))
  return tuple(dict.fromkeys(networks))


def get_subtree(params: Mapping, path: str) -> Any:
  """The node of ``params`` at the ``"/"``-joined ``path``."""
  node = params
  for part in path.split(SEPARATOR):
    node = node[part]
  return node


# ---------------------------------------------------------------------------------------------
# Leaves and layers
# ---------------------------------------------------------------------------------------------


def key_name(entry: Any) -> str:
  """The name of one entry of a :func:`jax.tree_util` key path."""
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


def leaf_path(key_path: tuple) -> str:
  """The ``"/"``-joined path of a leaf from its :func:`jax.tree_util` key path."""
  return SEPARATOR.join(key_name(entry) for entry in key_path)


def leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
  """``(path, leaf)`` pairs of ``tree`` in flattening order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(leaf_path(key_path), leaf) for key_path, leaf in flat]


def is_float_array(leaf: Any) -> bool:
  """Whether a leaf is a floating-point array (the only kind of leaf a fault changes)."""
  return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)


def path_hash(path: str) -> int:
  """A stable 31-bit integer for ``path``, to fold into a PRNG key.

  Folding the path (rather than splitting a key by leaf count) makes the randomness a leaf
  receives independent of which other leaves are addressed: ``"world_model"`` and
  ``"world_model/dynamics"`` perturb the dynamics identically for the same key.
  """
  return zlib.crc32(path.encode()) & 0x7FFFFFFF


def path_key(key: jax.Array, path: str) -> jax.Array:
  """``key`` folded with :func:`path_hash` of ``path``."""
  return jax.random.fold_in(key, path_hash(path))


def _natural_key(path: str) -> tuple:
  return tuple((0, int(token), "") if token.isdigit() else (1, 0, token)
               for token in re.split(r"(\d+)", path) if token)


def kernel_layers(params: Mapping, component: str) -> tuple[str, ...]:
  """The paths of the layers holding a ``kernel`` below ``component``, in layer order.

  Layer order is the natural sort of the layer paths (``Dense_2`` before ``Dense_10``), which is
  the call order for flax's automatic names in a plain MLP; the last one is the output layer.

  Args:
    params: the agent's nested parameter dict.
    component: a component path.

  Returns:
    Full paths such as ``("value/Dense_0", "value/Dense_1", "value/Dense_2")``.
  """
  layers = []

  def visit(node: Mapping, path: str) -> None:
    if "kernel" in node and not isinstance(node["kernel"], Mapping):
      layers.append(path)
    for name, child in node.items():
      if isinstance(child, Mapping):
        visit(child, f"{path}{SEPARATOR}{name}")

  visit(get_subtree(params, component), component)
  return tuple(sorted(layers, key=_natural_key))


def replace_leaves(params: Any, replacements: Mapping[str, Any]) -> Any:
  """A new tree with the leaves at the given paths replaced; every other leaf passes through.

  The containers are rebuilt (the input is never mutated) and each untouched leaf is the very
  same object as in ``params``.

  Args:
    params: a parameter tree.
    replacements: leaf path -> new leaf.

  Returns:
    The new tree, same structure as ``params``.
  """
  remaining = set(replacements)

  def substitute(key_path: tuple, leaf: Any) -> Any:
    path = leaf_path(key_path)
    if path in replacements:
      remaining.discard(path)
      return replacements[path]
    return leaf

  out = jax.tree_util.tree_map_with_path(substitute, params)
  if remaining:
    raise ValueError(f"no leaf at paths {sorted(remaining)}")
  return out
