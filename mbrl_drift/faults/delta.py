"""Fine-tuning-delta faults: break what fine-tuning added, relative to the run's frozen base.

A run fine-tuned from a base keeps the base's copy of each fine-tuned component under
``base/<path>`` (the policy agent's ``base/actor``). For an addressed component with parameters
``w`` and base ``w_base`` the *fine-tuning delta* is ``d = w - w_base``, and:

* :func:`delta_scale` moves ``w`` along the delta toward the base, ``w' = w - severity * d``
  (severity 1 is the base exactly; severity 1 on chosen components only ablates their delta);
* :func:`delta_noise` adds noise of the delta's own norm in a random direction,
  ``w' = w + severity * ||d|| * u`` with ``u`` uniform on the unit sphere of the component's
  parameters (a random perturbation matched in size to what fine-tuning changed);
* :func:`delta_dropout` drops each delta entry with probability ``p = severity`` and rescales the
  survivors, ``w' = w_base + m * d / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` (DARE; Yu et al.
  2024); ``p >= 1`` gives the base.

They are ordinary weight faults (:class:`~mbrl_drift.faults.weight.Fault`): exactly the identity
at severity 0, never mutating their input, never raising on non-finite values. Addressing a
component without a base raises a ``ValueError`` that lists the components that have one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mbrl_drift.faults.paths import (
    get_subtree,
    is_float_array,
    leaves_with_paths,
    replace_leaves,
    resolve_target,
)
from mbrl_drift.faults.weight import Fault, Params, _checked_target, _guard

BASE_PREFIX = "base/"


def components_with_base(params: Params) -> tuple[str, ...]:
  """The component paths of ``params`` that have a frozen base copy under ``base/<path>``."""
  base = params.get("base", {}) if isinstance(params, dict) else {}
  found = []
  for path, _ in leaves_with_paths(base):
    component = path.split("/")[0]
    if component not in found:
      found.append(component)
  return tuple(found)


def with_base_components(params: Params) -> Params:
  """``params`` with every fine-tuned component replaced by its frozen base copy: the base
  (pre-fine-tuning) agent. Components without a base are unchanged."""
  out = params
  for component in components_with_base(params):
    out = {**out, component: params["base"][component]}
  return out


def _delta_pairs(fault: Fault, params: Params) -> list[tuple[str, dict, dict]]:
  """``(component path, own leaves, base leaves)`` of every addressed component."""
  with_base = components_with_base(params)
  roots = [root for root in resolve_target(params, fault.target)
           if not root.startswith(BASE_PREFIX) and root != "base"]
  pairs = []
  for root in roots:
    if root not in with_base:
      choices = ", ".join(with_base) or "none: this run was not fine-tuned from a base"
      raise ValueError(f"{fault.name}: component {root!r} has no fine-tuning base "
                       f"(base/{root}); components with a base: {choices}")
    own = dict(leaves_with_paths(get_subtree(params, root)))
    base = dict(leaves_with_paths(get_subtree(params, BASE_PREFIX + root)))
    if set(own) != set(base):
      raise ValueError(f"{fault.name}: base/{root} has a different structure from {root}")
    pairs.append((root, own, base))
  return pairs


def _scale_transform(fault: Fault, key: jax.Array, params: Params, severity: jax.Array) -> Params:
  del key
  replacements = {}
  for root, own, base in _delta_pairs(fault, params):
    for path, leaf in own.items():
      if not is_float_array(leaf):
        continue
      moved = leaf - severity.astype(leaf.dtype) * (leaf - base[path])
      moved = jnp.where(severity == 1, base[path], moved)
      replacements[f"{root}/{path}"] = _guard(severity, leaf, moved)
  return replace_leaves(params, replacements)


def _noise_transform(fault: Fault, key: jax.Array, params: Params, severity: jax.Array) -> Params:
  replacements = {}
  for index, (root, own, base) in enumerate(_delta_pairs(fault, params)):
    paths = [p for p, leaf in own.items() if is_float_array(leaf)]
    keys = jax.random.split(jax.random.fold_in(key, index), max(len(paths), 1))
    directions = {p: jax.random.normal(k, own[p].shape, own[p].dtype) for p, k in zip(paths, keys)}
    delta_norm = jnp.sqrt(sum(jnp.sum((own[p] - base[p]) ** 2) for p in paths))
    direction_norm = jnp.sqrt(sum(jnp.sum(d ** 2) for d in directions.values()))
    scale = severity * delta_norm / jnp.maximum(direction_norm, 1e-30)
    for path in paths:
      noisy = own[path] + scale.astype(own[path].dtype) * directions[path]
      replacements[f"{root}/{path}"] = _guard(severity, own[path], noisy)
  return replace_leaves(params, replacements)


def _dropout_transform(fault: Fault, key: jax.Array, params: Params,
                       severity: jax.Array) -> Params:
  drop = jnp.clip(severity, 0.0, 1.0)
  replacements = {}
  for index, (root, own, base) in enumerate(_delta_pairs(fault, params)):
    paths = [p for p, leaf in own.items() if is_float_array(leaf)]
    keys = jax.random.split(jax.random.fold_in(key, index), max(len(paths), 1))
    for path, key_leaf in zip(paths, keys):
      leaf, base_leaf = own[path], base[path]
      # Uniform draws compared with the drop rate: the dropped entries are nested in severity.
      keep = jax.random.uniform(key_leaf, leaf.shape) >= drop
      rescaled = base_leaf + jnp.where(keep, (leaf - base_leaf) / jnp.maximum(1.0 - drop, 1e-6),
                                       0.0).astype(leaf.dtype)
      rescaled = jnp.where(drop >= 1.0, base_leaf, rescaled)
      replacements[f"{root}/{path}"] = _guard(severity, leaf, rescaled)
  return replace_leaves(params, replacements)


def delta_scale(target: str) -> Fault:
  """Moves the addressed components along their fine-tuning delta toward the base.

  ``w' = w - severity * (w - w_base)``: severity 1 is the base (the delta ablated), severity
  ``1 - alpha`` keeps a fraction ``alpha`` of the delta.

  Args:
    target: target pattern of fine-tuned components (e.g. ``"actor"``).

  Returns:
    The :class:`~mbrl_drift.faults.weight.Fault`.
  """
  return Fault(name="delta_scale", target=_checked_target("delta_scale", target),
               transform=_scale_transform)


def delta_noise(target: str) -> Fault:
  """Adds noise of the fine-tuning delta's norm, in a random direction.

  ``w' = w + severity * ||w - w_base|| * u`` with ``u`` uniform on the unit sphere over each
  addressed component's parameters: at severity 1 the perturbation is as large as everything
  fine-tuning changed in that component.

  Args:
    target: target pattern of fine-tuned components.

  Returns:
    The :class:`~mbrl_drift.faults.weight.Fault`.
  """
  return Fault(name="delta_noise", target=_checked_target("delta_noise", target),
               transform=_noise_transform)


def delta_dropout(target: str) -> Fault:
  """DARE-style random dropout of the fine-tuning delta (Yu et al. 2024).

  Each entry of ``d = w - w_base`` is dropped with probability ``p = severity`` (clipped to
  ``[0, 1]``) and the survivors are rescaled by ``1 / (1 - p)``: ``w' = w_base + m * d / (1 - p)``.

  Args:
    target: target pattern of fine-tuned components.

  Returns:
    The :class:`~mbrl_drift.faults.weight.Fault`.
  """
  return Fault(name="delta_dropout", target=_checked_target("delta_dropout", target),
               transform=_dropout_transform)
