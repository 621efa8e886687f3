"""Activation faults: corrupt a component's *output* at run time instead of its weights.

The pure functions take ``(key, activations [..., units], severity)`` and return activations of
the same shape; severity 0 is exactly the identity. The agent wires them in with one call per
component output::

  out = fault.apply_to("world_model/dynamics", key, out, severity)

which returns ``out`` itself when the fault's target does not address that component. A target
addresses a component output when a term of the pattern matches its path or an ancestor of it
(``"world_model"`` addresses ``"world_model/dynamics"``). For an agent that takes an
``output_hook(path, output)``, :meth:`ActivationFault.as_hook` builds the hook.

Randomness. Unit-level faults (stuck-at, ablation) model broken neurons, so the *same* units
must stay broken at every call of an episode: they are chosen by the fault's own ``seed``
(folded with the component path), not by the call's key. Noise is fresh at every call: it is
drawn from the call's key folded with the component path. Pass a different key at every step
(e.g. ``jax.random.fold_in(key, t)``) for independent noise over time.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from mbrl_drift.faults.paths import (
    component_paths,
    pattern_matches_path,
    path_key,
    split_pattern,
)
from mbrl_drift.faults.weight import as_severity


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def noise_activations(key: jax.Array, activations: jax.Array, severity: jax.Array, scale: float,
                      relative: bool = False) -> jax.Array:
  """Additive Gaussian noise on activations.

  ``y = x + scale * severity * eps`` with ``eps ~ N(0, 1)`` per entry, times the RMS of ``x``
  over its last axis when ``relative``.

  Args:
    key: PRNG key for the noise.
    activations: ``[..., units]`` floating-point activations.
    severity: float32 scalar ``[]``.
    scale: noise standard deviation at severity 1.
    relative: scale by the per-example RMS over units.

  Returns:
    ``[..., units]`` noisy activations.
  """
  std = scale * severity
  if relative:
    std = std * jnp.sqrt(jnp.mean(jnp.square(activations), axis=-1, keepdims=True))
  noisy = activations + (std * jax.random.normal(key, activations.shape)).astype(activations.dtype)
  return jnp.where(severity == 0, activations, noisy)


def broken_units(key: jax.Array, num_units: int, severity: jax.Array) -> jax.Array:
  """Which of ``num_units`` units are broken: exactly ``round(severity * num_units)`` of them.

  The units are ranked by a random permutation fixed by ``key``, so the broken set for a larger
  severity contains the set for a smaller one.

  Args:
    key: PRNG key choosing the units.
    num_units: number of units.
    severity: float32 scalar ``[]`` (clipped to ``[0, 1]``).

  Returns:
    bool ``[num_units]``.
  """
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(key, (num_units,))))
  return ranks < jnp.floor(jnp.clip(severity, 0.0, 1.0) * num_units + 0.5)


def stuck_activations(key: jax.Array, activations: jax.Array, severity: jax.Array,
                      value: float) -> jax.Array:
  """A fraction ``severity`` of the units output the constant ``value`` (dead or saturated).

  Args:
    key: PRNG key choosing the units (the same units for every example of the batch).
    activations: ``[..., units]``.
    severity: float32 scalar ``[]``.
    value: the stuck output.

  Returns:
    ``[..., units]``.
  """
  stuck = broken_units(key, activations.shape[-1], severity)
  return jnp.where(stuck, jnp.asarray(value, activations.dtype), activations)


def ablate_activations(key: jax.Array, activations: jax.Array, severity: jax.Array) -> jax.Array:
  """A fraction ``severity`` of the units output 0 (ablation).

  Args:
    key: PRNG key choosing the units.
    activations: ``[..., units]``.
    severity: float32 scalar ``[]``.

  Returns:
    ``[..., units]``.
  """
  return stuck_activations(key, activations, severity, 0.0)


# ---------------------------------------------------------------------------------------------
# Packaged faults
# ---------------------------------------------------------------------------------------------


@struct.dataclass(eq=False)
class ActivationFault:
  """An activation fault bound to a target pattern.

  Attributes:
    name: ``"activation_noise"``, ``"activation_stuck_at"`` or ``"activation_ablation"``.
    target: target pattern over component paths.
    transform: ``transform(fault, noise_key, unit_key, activations, severity) -> activations``.
    settings: numeric settings (pytree leaves), e.g. ``{"scale": 0.1}``.
    seed: int32 ``[]`` choosing the broken units (pytree leaf: vmap it for unit draws).
    options: static ``(name, value)`` pairs.
  """

  name: str = struct.field(pytree_node=False)
  target: str = struct.field(pytree_node=False)
  transform: Callable[..., jax.Array] = struct.field(pytree_node=False)
  settings: dict[str, Any] = struct.field(default_factory=dict)
  seed: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.int32))
  options: tuple[tuple[str, Any], ...] = struct.field(pytree_node=False, default=())

  def option(self, name: str) -> Any:
    """The static option ``name``."""
    return dict(self.options)[name]

  @property
  def spec(self) -> str:
    """This fault in the spec grammar, e.g. ``"value:act_noise(scale=0.5, relative=false)"``."""
    items = [f"{name}={float(value):g}" for name, value in self.settings.items()]
    items += [f"{name}={str(value).lower()}" for name, value in self.options]
    if self.name != "activation_noise":
      items.append(f"seed={int(self.seed)}")
    short = {"activation_noise": "act_noise", "activation_stuck_at": "act_stuck",
             "activation_ablation": "act_ablate"}[self.name]
    return f"{self.target}:{short}({', '.join(items)})"

  def matches(self, component_path: str) -> bool:
    """Whether the target addresses ``component_path`` (or an ancestor of it)."""
    return pattern_matches_path(self.target, component_path)

  def validate(self, params: Any) -> tuple[str, ...]:
    """Checks the target against a parameter tree.

    Args:
      params: the agent's nested parameter dict.

    Returns:
      The component paths the target addresses.

    Raises:
      ValueError: when a term of the target matches no component (listing the valid paths).
    """
    valid = component_paths(params)
    for term in split_pattern(self.target):
      if not any(pattern_matches_path(term, path) for path in valid):
        raise ValueError(f"target {term!r} (in {self.target!r}) matches no component; valid "
                         f"component paths: {', '.join(valid)}")
    return tuple(path for path in valid if self.matches(path))

  def __call__(self, key: jax.Array, activations: jax.Array,
               severity: jax.Array | float) -> jax.Array:
    """Applies the fault unconditionally (units chosen by ``seed``, noise by ``key``).

    Args:
      key: PRNG key for the noise.
      activations: ``[..., units]``.
      severity: float32 scalar ``[]``; 0 is the identity.

    Returns:
      ``[..., units]``.
    """
    unit_key = jax.random.fold_in(jax.random.key(0), self.seed)
    return self.transform(self, key, unit_key, activations, as_severity(severity))

  def apply_to(self, component_path: str, key: jax.Array, activations: jax.Array,
               severity: jax.Array | float) -> jax.Array:
    """Applies the fault to a component's output when the target addresses the component.

    Args:
      component_path: the producing component, e.g. ``"world_model/dynamics"``.
      key: PRNG key for the noise (folded with the path, so components get different noise).
      activations: ``[..., units]`` the component's output.
      severity: float32 scalar ``[]``.

    Returns:
      ``[..., units]``; ``activations`` itself when the path is not addressed.
    """
    if not self.matches(component_path):
      return activations
    unit_key = path_key(jax.random.fold_in(jax.random.key(0), self.seed), component_path)
    return self.transform(self, path_key(key, component_path), unit_key, activations,
                          as_severity(severity))

  def as_hook(self, key: jax.Array,
              severity: jax.Array | float) -> Callable[[str, jax.Array], jax.Array]:
    """An ``output_hook(component_path, output) -> output`` calling :meth:`apply_to`."""
    return lambda component_path, output: self.apply_to(component_path, key, output, severity)


def _checked(name: str, target: str) -> str:
  try:
    split_pattern(target)
  except ValueError as error:
    raise ValueError(f"{name}: {error}") from None
  return target


def _float_setting(name: str, field: str, value: Any, minimum: float | None = None) -> jax.Array:
  if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "dtype"):
    raise ValueError(f"{name}: {field} must be a number, got {value!r}")
  if isinstance(value, (int, float)) and minimum is not None and value < minimum:
    raise ValueError(f"{name}: {field} must be >= {minimum}, got {value!r}")
  return jnp.asarray(value, jnp.float32)


def activation_key(key: jax.Array, activations: jax.Array) -> jax.Array:
  """``key`` folded with a hash of the bits of ``activations``.

  A hook inside ``jax.vmap`` sees one example at a time and the same key for every example, so
  noise drawn from the key alone would be identical across the batch: the same shift for every
  candidate plan of a vmapped planner, which changes no decision. Keyed by the activations as
  well, the noise is a fixed random function of what the component computed: different for
  different inputs, the same whenever the same activation is computed again.

  Args:
    key: PRNG key.
    activations: ``[...]`` floating-point activations of one example (or a batch).

  Returns:
    A PRNG key.
  """
  bits = jax.lax.bitcast_convert_type(activations.astype(jnp.float32), jnp.uint32).ravel()
  weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
  return jax.random.fold_in(key, jnp.sum(bits * weights, dtype=jnp.uint32))


def _noise_transform(fault, noise_key, unit_key, activations, severity):
  del unit_key
  return noise_activations(activation_key(noise_key, activations), activations, severity,
                           fault.settings["scale"], fault.option("relative"))


def _stuck_transform(fault, noise_key, unit_key, activations, severity):
  del noise_key
  stuck = stuck_activations(unit_key, activations, severity, fault.settings["value"])
  return jnp.where(severity == 0, activations, stuck)


def _ablation_transform(fault, noise_key, unit_key, activations, severity):
  del fault, noise_key
  return jnp.where(severity == 0, activations, ablate_activations(unit_key, activations, severity))


def activation_noise(target: str, scale: float = 0.1, relative: bool = False) -> ActivationFault:
  """Gaussian noise on the addressed components' outputs (see :func:`noise_activations`).

  Args:
    target: target pattern.
    scale: noise standard deviation at severity 1.
    relative: scale by the per-example RMS of the output.

  Returns:
    The :class:`ActivationFault`.
  """
  return ActivationFault(name="activation_noise", target=_checked("activation_noise", target),
                         transform=_noise_transform,
                         settings={"scale": _float_setting("activation_noise", "scale", scale,
                                                           minimum=0.0)},
                         options=(("relative", bool(relative)),))


def activation_stuck_at(target: str, value: float = 0.0, seed: int = 0) -> ActivationFault:
  """A fraction ``severity`` of the output units stuck at ``value``.

  See :func:`stuck_activations`; the units are fixed by ``seed`` across calls.

  Args:
    target: target pattern.
    value: the stuck output.
    seed: chooses the stuck units.

  Returns:
    The :class:`ActivationFault`.
  """
  return ActivationFault(name="activation_stuck_at", target=_checked("activation_stuck_at", target),
                         transform=_stuck_transform,
                         settings={"value": _float_setting("activation_stuck_at", "value", value)},
                         seed=jnp.asarray(seed, jnp.int32))


def activation_ablation(target: str, seed: int = 0) -> ActivationFault:
  """A fraction ``severity`` of the output units set to 0.

  See :func:`ablate_activations`; the units are fixed by ``seed`` across calls.

  Args:
    target: target pattern.
    seed: chooses the ablated units.

  Returns:
    The :class:`ActivationFault`.
  """
  return ActivationFault(name="activation_ablation", target=_checked("activation_ablation", target),
                         transform=_ablation_transform, seed=jnp.asarray(seed, jnp.int32))
