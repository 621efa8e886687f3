"""Weight faults: pure functions ``fault(key, params, severity) -> params`` on one target.

Every factory returns a :class:`Fault`. A fault

* changes only the parameters below the components its ``target`` pattern addresses (see
  :mod:`mbrl_drift.faults.paths`); every other leaf is returned as the very same array;
* takes ``severity`` as a float32 array scalar, so one jitted function serves every severity and
  a sweep is ``jax.vmap(fault, in_axes=(None, None, 0))(key, params, severities)``;
* is exactly the identity at severity 0 (bit for bit) and moves further from the input as the
  severity grows (for a fixed key the randomly chosen weights, bits or units are nested);
* is deterministic in ``key``, never mutates its input, and never raises on non-finite results:
  count them with :func:`count_nonfinite`.

Only floating-point leaves are ever changed. Severity is meant to be non-negative; faults whose
severity is a fraction (:func:`stuck_at`, :func:`unit_ablation`) saturate at 1, :func:`bit_flip`
saturates when ``rate * severity`` reaches 1, and the scaling and interpolation faults
extrapolate linearly beyond 1.

A :class:`Fault` is a pytree: its numeric settings (and any reference parameters) are leaves, its
name, target and options are static. Passing the fault itself as an argument of a jitted function
therefore reuses one compilation for every scale, rate or reference of the same fault kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from mbrl_drift.faults.paths import (
    component_paths,
    get_subtree,
    is_float_array,
    is_under,
    kernel_layers,
    leaves_with_paths,
    lowest_components,
    match_components,
    path_key,
    replace_leaves,
    resolve_target,
    split_pattern,
)

Params = Any
BIT_GROUPS = ("any", "sign", "exponent", "mantissa")
#: Fault name -> its name in the spec grammar (:mod:`mbrl_drift.faults.spec`).
SPEC_NAMES = {
    "gaussian_noise": "gaussian",
    "bit_flip": "bitflip",
    "stuck_at": "stuck",
    "unit_ablation": "ablate",
    "output_scale": "scale",
    "sign_flip": "signflip",
    "reinitialize": "reinit",
    "interpolate": "interpolate",
    "swap": "swap",
}


# ---------------------------------------------------------------------------------------------
# The Fault object
# ---------------------------------------------------------------------------------------------


@struct.dataclass(eq=False)
class Fault:
  """A weight fault: ``fault(key, params, severity) -> params``.

  Build faults with the factories below rather than directly. Equality and hashing are by
  identity, so a fault can be wrapped by ``jax.jit`` directly or passed to a jitted function as
  a pytree argument (faults of the same kind and target then share one compilation).

  Attributes:
    name: the kind of fault (``"gaussian_noise"``, ``"bit_flip"``, ...).
    target: the target pattern, e.g. ``"world_model/*"`` or ``"value+world_model/reward"``.
    transform: ``transform(fault, key, params, severity) -> params`` (static).
    settings: numeric settings and reference parameters (pytree leaves, e.g. ``{"scale": 0.5}``).
    options: static ``(name, value)`` pairs, e.g. ``(("bits", "exponent"),)``.
  """

  name: str = struct.field(pytree_node=False)
  target: str = struct.field(pytree_node=False)
  transform: Callable[..., Params] = struct.field(pytree_node=False)
  settings: dict[str, Any] = struct.field(default_factory=dict)
  options: tuple[tuple[str, Any], ...] = struct.field(pytree_node=False, default=())

  def __call__(self, key: jax.Array, params: Params, severity: jax.Array | float) -> Params:
    """Applies the fault.

    Args:
      key: a PRNG key.
      params: the agent's nested parameter dict (never modified).
      severity: float32 scalar ``[]``; 0 is the identity.

    Returns:
      New parameters with the same structure, shapes and dtypes.

    Raises:
      ValueError: when the target matches no component of ``params`` (listing the valid paths),
        or ``severity`` is not a scalar.
    """
    return self.transform(self, key, params, as_severity(severity))

  def option(self, name: str) -> Any:
    """The static option ``name`` (e.g. ``fault.option("bits")``)."""
    return dict(self.options)[name]

  def target_paths(self, params: Params) -> tuple[str, ...]:
    """The component paths of ``params`` this fault addresses (raises like ``__call__``)."""
    if self.name == "compose":
      return tuple(dict.fromkeys(path for fault in self.settings["faults"]
                                 for path in fault.target_paths(params)))
    return resolve_target(params, self.target)

  @property
  def spec(self) -> str:
    """This fault in the spec grammar, e.g. ``"value:gaussian(scale=0.5, relative=false)"``.

    It parses back to an equivalent fault with :func:`~mbrl_drift.faults.parse_fault_spec`,
    except that reference parameters are shown only through the ``run`` they were loaded from
    (when the fault came from a spec).
    """
    if self.name == "compose":
      return "; ".join(f.spec for f in self.settings["faults"])
    items = []
    for name, value in self.settings.items():
      try:
        items.append(f"{name}={float(value):g}")
      except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        continue  # reference parameters, or a traced setting
    for name, value in self.options:
      if isinstance(value, bool):
        items.append(f"{name}={str(value).lower()}")
      elif isinstance(value, (str, int, float)):
        text = str(value)
        items.append(f"{name}={text!r}" if any(c in text for c in ",;() '\"") else
                     f"{name}={text}")
    return f"{self.target}:{SPEC_NAMES.get(self.name, self.name)}({', '.join(items)})"


def as_severity(severity: jax.Array | float) -> jax.Array:
  """``severity`` as a float32 scalar array; a ``ValueError`` for any other shape."""
  severity = jnp.asarray(severity, jnp.float32)
  if severity.ndim != 0:
    raise ValueError(f"severity must be a scalar, got shape {severity.shape}; sweep severities "
                     "with jax.vmap(fault, in_axes=(None, None, 0))")
  return severity


def _guard(severity: jax.Array, old: jax.Array, new: jax.Array) -> jax.Array:
  """``new``, except exactly ``old`` where the severity is 0 (bit-identical identity)."""
  return jnp.where(severity == 0, old, new.astype(old.dtype))


def _number(fault: str, field: str, value: Any, minimum: float | None = None) -> jax.Array:
  """A float32 setting, checked when it is a concrete Python number."""
  is_number = isinstance(value, (int, float)) or hasattr(value, "dtype")
  if isinstance(value, bool) or not is_number:
    raise ValueError(f"{fault}: {field} must be a number, got {value!r}")
  if isinstance(value, (int, float)):
    if value != value or value in (float("inf"), float("-inf")):
      raise ValueError(f"{fault}: {field} must be finite, got {value!r}")
    if minimum is not None and value < minimum:
      raise ValueError(f"{fault}: {field} must be >= {minimum}, got {value!r}")
  return jnp.asarray(value, jnp.float32)


def _checked_target(fault: str, target: str) -> str:
  try:
    split_pattern(target)
  except ValueError as error:
    raise ValueError(f"{fault}: {error}") from None
  return target


# ---------------------------------------------------------------------------------------------
# Transform builders
# ---------------------------------------------------------------------------------------------

LeafFn = Callable[[jax.Array, jax.Array, jax.Array, Fault], jax.Array]
NetworkFn = Callable[[jax.Array, Params, str, jax.Array, Fault], dict[str, jax.Array]]


def _leafwise(leaf_fn: LeafFn) -> Callable[..., Params]:
  """A transform applying ``leaf_fn(leaf_key, leaf, severity, fault)`` to each addressed leaf."""

  def transform(fault: Fault, key: jax.Array, params: Params, severity: jax.Array) -> Params:
    roots = resolve_target(params, fault.target)
    replacements = {}
    for path, leaf in leaves_with_paths(params):
      if is_float_array(leaf) and any(is_under(path, root) for root in roots):
        replacements[path] = _guard(severity, leaf, leaf_fn(path_key(key, path), leaf, severity,
                                                            fault))
    return replace_leaves(params, replacements)

  return transform


def _networkwise(network_fn: NetworkFn) -> Callable[..., Params]:
  """A transform applying ``network_fn`` to each lowest component (network) addressed.

  ``network_fn(key, params, network_path, severity, fault)`` returns ``{leaf path: new leaf}``.
  """

  def transform(fault: Fault, key: jax.Array, params: Params, severity: jax.Array) -> Params:
    roots = resolve_target(params, fault.target)
    replacements = {}
    for network in lowest_components(params, roots):
      for path, new in network_fn(key, params, network, severity, fault).items():
        old = get_subtree(params, path)
        replacements[path] = _guard(severity, old, new)
    return replace_leaves(params, replacements)

  return transform


def _uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  return jax.random.uniform(key, shape, jnp.float32)


# ---------------------------------------------------------------------------------------------
# Element-wise faults
# ---------------------------------------------------------------------------------------------


def _gaussian_leaf(key: jax.Array, leaf: jax.Array, severity: jax.Array, fault: Fault) -> jax.Array:
  std = fault.settings["scale"] * severity
  if fault.option("relative"):
    std = std * jnp.sqrt(jnp.mean(jnp.square(leaf.astype(jnp.float32))))
  return leaf + (std * jax.random.normal(key, leaf.shape, jnp.float32)).astype(leaf.dtype)


_GAUSSIAN = _leafwise(_gaussian_leaf)


def gaussian_noise(target: str, scale: float = 0.1, relative: bool = False) -> Fault:
  """Additive Gaussian weight noise.

  ``w' = w + sigma * eps`` with ``eps ~ N(0, 1)`` per weight and ``sigma = scale * severity``,
  times the tensor's root mean square ``sqrt(mean(w^2))`` when ``relative`` (so every tensor is
  perturbed in proportion to its own magnitude; an all-zero tensor is left unchanged).

  Args:
    target: target pattern, e.g. ``"value"``.
    scale: noise standard deviation at severity 1 (absolute, or relative to each tensor's RMS).
    relative: scale the noise by each tensor's RMS.

  Returns:
    The :class:`Fault`.
  """
  return Fault(name="gaussian_noise", target=_checked_target("gaussian_noise", target),
               transform=_GAUSSIAN,
               settings={"scale": _number("gaussian_noise", "scale", scale, minimum=0.0)},
               options=(("relative", bool(relative)),))


def _bit_positions(dtype: Any, bits: str) -> tuple[int, ...]:
  info = jnp.finfo(dtype)
  num_bits, num_mantissa = info.bits, info.nmant
  return {
      "any": tuple(range(num_bits)),
      "sign": (num_bits - 1,),
      "exponent": tuple(range(num_mantissa, num_bits - 1)),
      "mantissa": tuple(range(num_mantissa)),
  }[bits]


def _bit_flip_leaf(key: jax.Array, leaf: jax.Array, severity: jax.Array, fault: Fault) -> jax.Array:
  positions = _bit_positions(leaf.dtype, fault.option("bits"))
  uint = {16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}[jnp.finfo(leaf.dtype).bits]
  probability = jnp.clip(fault.settings["rate"] * severity, 0.0, 1.0)
  flips = (_uniform(key, (len(positions),) + leaf.shape) < probability).astype(uint)
  shifts = jnp.asarray(positions, uint).reshape((-1,) + (1,) * leaf.ndim)
  mask = jnp.sum(flips << shifts, axis=0, dtype=uint)  # distinct bits: the sum is their union
  return lax.bitcast_convert_type(lax.bitcast_convert_type(leaf, uint) ^ mask, leaf.dtype)


_BIT_FLIP = _leafwise(_bit_flip_leaf)


def bit_flip(target: str, rate: float = 1e-3, bits: str = "any") -> Fault:
  """Random bit flips in the IEEE-754 representation of the weights (soft errors).

  Each chosen bit of each weight flips independently with probability
  ``min(1, rate * severity)``. For float32 the groups are ``"sign"`` (bit 31), ``"exponent"``
  (bits 23-30), ``"mantissa"`` (bits 0-22) and ``"any"`` (all 32). Exponent flips can produce
  huge values, Inf or NaN: they are returned as they are (see :func:`count_nonfinite`).
  Memory: one uniform draw per (weight, chosen bit).

  Args:
    target: target pattern.
    rate: per-bit flip probability at severity 1.
    bits: one of ``"any"``, ``"sign"``, ``"exponent"``, ``"mantissa"``.

  Returns:
    The :class:`Fault`.
  """
  if bits not in BIT_GROUPS:
    raise ValueError(f"bit_flip: bits must be one of {', '.join(BIT_GROUPS)}; got {bits!r}")
  return Fault(name="bit_flip", target=_checked_target("bit_flip", target),
               transform=_BIT_FLIP,
               settings={"rate": _number("bit_flip", "rate", rate, minimum=0.0)},
               options=(("bits", bits),))


def _stuck_leaf(key: jax.Array, leaf: jax.Array, severity: jax.Array, fault: Fault) -> jax.Array:
  stuck = _uniform(key, leaf.shape) < severity
  return jnp.where(stuck, fault.settings["value"].astype(leaf.dtype), leaf)


_STUCK = _leafwise(_stuck_leaf)


def stuck_at(target: str, value: float = 0.0) -> Fault:
  """Stuck-at weights: each weight is stuck at ``value`` with probability ``severity``.

  The stuck weights for a larger severity include those for a smaller one (same key).

  Args:
    target: target pattern.
    value: the value stuck weights take.

  Returns:
    The :class:`Fault`.
  """
  return Fault(name="stuck_at", target=_checked_target("stuck_at", target),
               transform=_STUCK,
               settings={"value": _number("stuck_at", "value", value)})


# ---------------------------------------------------------------------------------------------
# Layer-structured faults
# ---------------------------------------------------------------------------------------------


def _ablation_network(key: jax.Array, params: Params, network: str, severity: jax.Array,
                      fault: Fault) -> dict[str, jax.Array]:
  del fault
  layers = kernel_layers(params, network)
  if len(layers) < 2:
    raise ValueError(f"unit_ablation: component {network!r} has no hidden layer "
                     f"(kernel layers: {', '.join(layers) or 'none'})")
  fraction = jnp.clip(severity, 0.0, 1.0)
  new: dict[str, jax.Array] = {}

  def current(path: str) -> jax.Array:
    return new[path] if path in new else get_subtree(params, path)

  layer_nodes = {layer: get_subtree(params, layer) for layer in layers}
  for layer, next_layer in zip(layers[:-1], layers[1:]):
    kernel_path = f"{layer}/kernel"
    units = layer_nodes[layer]["kernel"].shape[-1]
    # Exactly round(fraction * units) units die, chosen by a random ranking fixed by the key.
    ranks = jnp.argsort(jnp.argsort(_uniform(path_key(key, layer), (units,))))
    dead = ranks < jnp.floor(fraction * units + 0.5)
    new[kernel_path] = jnp.where(dead, 0, current(kernel_path))
    bias = layer_nodes[layer].get("bias")
    if bias is not None and bias.shape == (units,):
      new[f"{layer}/bias"] = jnp.where(dead, 0, current(f"{layer}/bias"))
    next_kernel_path = f"{next_layer}/kernel"
    next_kernel = layer_nodes[next_layer]["kernel"]
    if next_kernel.ndim >= 2 and next_kernel.shape[-2] == units:
      new[next_kernel_path] = jnp.where(dead[:, None], 0, current(next_kernel_path))
  return new


_ABLATION = _networkwise(_ablation_network)


def unit_ablation(target: str) -> Fault:
  """Ablates a fraction ``severity`` of the hidden units of each addressed network.

  In every hidden layer (every kernel layer but the output layer, see
  :func:`~mbrl_drift.faults.paths.kernel_layers`) exactly ``round(severity * units)`` units,
  chosen by a random ranking fixed by the key, are silenced: their kernel column and bias entry
  are zeroed (the unit's pre-activation is constant 0) and so is their row in the next layer's
  kernel (the unit has no effect downstream whatever the activation or normalisation between
  the layers). A target such as ``"world_model"`` ablates each of its sub-networks.

  Args:
    target: target pattern.

  Returns:
    The :class:`Fault`. Calling it raises ``ValueError`` for a network without hidden layers.
  """
  return Fault(name="unit_ablation", target=_checked_target("unit_ablation", target),
               transform=_ABLATION)


def _output_layer_scaled(params: Params, network: str, factor: jax.Array,
                         fault_name: str) -> dict[str, jax.Array]:
  layers = kernel_layers(params, network)
  if not layers:
    raise ValueError(f"{fault_name}: component {network!r} has no layer with a kernel")
  node = get_subtree(params, layers[-1])
  return {f"{layers[-1]}/{name}": node[name] * factor.astype(node[name].dtype)
          for name in ("kernel", "bias") if name in node and is_float_array(node[name])}


def _output_scale_network(key: jax.Array, params: Params, network: str, severity: jax.Array,
                          fault: Fault) -> dict[str, jax.Array]:
  del key
  factor = 1.0 + severity * (fault.settings["factor"] - 1.0)
  return _output_layer_scaled(params, network, factor, "output_scale")


_OUTPUT_SCALE = _networkwise(_output_scale_network)


def output_scale(target: str, factor: float) -> Fault:
  """Scales the output layer (last kernel layer) of each addressed network.

  The output layer's kernel and bias are multiplied by ``1 + severity * (factor - 1)``, so the
  network's pre-transform output is scaled by ``factor`` at severity 1 (0 silences it, a
  negative factor also flips it).

  Args:
    target: target pattern.
    factor: output scale at severity 1.

  Returns:
    The :class:`Fault`.
  """
  return Fault(name="output_scale", target=_checked_target("output_scale", target),
               transform=_OUTPUT_SCALE,
               settings={"factor": _number("output_scale", "factor", factor)})


def _sign_flip_network(key: jax.Array, params: Params, network: str, severity: jax.Array,
                       fault: Fault) -> dict[str, jax.Array]:
  del key, fault
  return _output_layer_scaled(params, network, 1.0 - 2.0 * severity, "sign_flip")


_SIGN_FLIP = _networkwise(_sign_flip_network)


def sign_flip(target: str) -> Fault:
  """Flips the sign of each addressed network's output layer (e.g. a value that rewards harm).

  The output layer's kernel and bias are multiplied by ``1 - 2 * severity``: the output is
  negated at severity 1 and silenced at 0.5.

  Args:
    target: target pattern.

  Returns:
    The :class:`Fault`.
  """
  return Fault(name="sign_flip", target=_checked_target("sign_flip", target),
               transform=_SIGN_FLIP)


# ---------------------------------------------------------------------------------------------
# Moving toward reference parameters
# ---------------------------------------------------------------------------------------------


def _interpolated(params: Params, reference: Params, roots: tuple[str, ...], severity: jax.Array,
                  fault_name: str) -> Params:
  replacements = {}
  for root in roots:
    try:
      reference_node = get_subtree(reference, root)
    except (KeyError, TypeError):
      raise ValueError(f"{fault_name}: reference parameters have no component {root!r}; "
                       f"their components: {', '.join(_safe_components(reference))}") from None
    own = dict(leaves_with_paths(get_subtree(params, root)))
    other = dict(leaves_with_paths(reference_node))
    if set(own) != set(other):
      missing = sorted(set(own) - set(other))
      extra = sorted(set(other) - set(own))
      raise ValueError(f"{fault_name}: reference structure differs at {root!r}: missing "
                       f"{[f'{root}/{p}' for p in missing]}, unexpected "
                       f"{[f'{root}/{p}' for p in extra]}")
    for relative_path, leaf in own.items():
      path = f"{root}/{relative_path}"
      target_leaf = other[relative_path]
      if jnp.shape(target_leaf) != jnp.shape(leaf) or jnp.result_type(target_leaf) != leaf.dtype:
        raise ValueError(f"{fault_name}: reference leaf {path!r} has shape "
                         f"{jnp.shape(target_leaf)} and dtype {jnp.result_type(target_leaf)}, "
                         f"expected {jnp.shape(leaf)} and {leaf.dtype}")
      if not is_float_array(leaf):
        continue
      target_leaf = jnp.asarray(target_leaf)
      blended = leaf + severity.astype(leaf.dtype) * (target_leaf - leaf)
      new = jnp.where(severity == 1, target_leaf, blended)
      replacements[path] = _guard(severity, leaf, new)
  return replace_leaves(params, replacements)


def _safe_components(tree: Any) -> tuple[str, ...]:
  try:
    return component_paths(tree)
  except ValueError:
    return ()


def _interpolate_transform(fault: Fault, key: jax.Array, params: Params,
                           severity: jax.Array) -> Params:
  roots = resolve_target(params, fault.target)
  init_fn = dict(fault.options).get("init_fn")
  reference = init_fn(key) if init_fn is not None else fault.settings["reference"]
  return _interpolated(params, reference, roots, severity, fault.name)


def interpolate(target: str, reference_params: Params) -> Fault:
  """Moves the addressed components toward ``reference_params`` by the fraction ``severity``.

  ``w' = w + severity * (w_ref - w)``: severity 1 replaces the components by the reference
  exactly, severities above 1 extrapolate beyond it. With the base (pre-fine-tuning) model as
  reference this is reversion; severity ``1 - alpha`` scales the fine-tuning delta by ``alpha``.
  ``reference_params`` needs the addressed components only (a whole checkpoint is fine).

  Args:
    target: target pattern.
    reference_params: a parameter tree with the same structure, shapes and dtypes below every
      addressed component.

  Returns:
    The :class:`Fault`. Calling it raises ``ValueError`` naming the first path where the
    reference does not match.
  """
  return Fault(name="interpolate", target=_checked_target("interpolate", target),
               transform=_interpolate_transform, settings={"reference": reference_params})


def swap(target: str, reference_params: Params) -> Fault:
  """Replaces the addressed components by those of another checkpoint (at severity 1).

  The same arithmetic as :func:`interpolate`, named for its use: e.g. a value function trained
  for a different goal inside an intact world model. Intermediate severities blend the two.

  Args:
    target: target pattern, e.g. ``"value"``.
    reference_params: the other checkpoint's parameters (same structure below the target).

  Returns:
    The :class:`Fault`.
  """
  return Fault(name="swap", target=_checked_target("swap", target),
               transform=_interpolate_transform, settings={"reference": reference_params})


def reinitialize(target: str, init_params: Params | Callable[[jax.Array], Params]) -> Fault:
  """Moves the addressed components toward freshly initialised parameters.

  Args:
    target: target pattern.
    init_params: initial parameters, or ``init_fn(key) -> params`` (e.g. the agent's ``init``),
      called with the fault's key so that each key gives a new initialisation.

  Returns:
    The :class:`Fault` (severity 1 is a complete re-initialisation of the target).
  """
  target = _checked_target("reinitialize", target)
  if callable(init_params):
    return Fault(name="reinitialize", target=target, transform=_interpolate_transform,
                 options=(("init_fn", init_params),))
  return Fault(name="reinitialize", target=target, transform=_interpolate_transform,
               settings={"reference": init_params})


# ---------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------


def _compose_transform(fault: Fault, key: jax.Array, params: Params,
                       severity: jax.Array) -> Params:
  faults = fault.settings["faults"]
  for fault_key, inner in zip(jax.random.split(key, len(faults)), faults):
    params = inner(fault_key, params, severity)
  return params


def compose(*faults: Fault) -> Fault:
  """Applies ``faults`` in order, each with its own key split from the call's key.

  Every fault receives the same severity.

  Args:
    *faults: one or more :class:`Fault`.

  Returns:
    The composed :class:`Fault` (target: the union of the targets).
  """
  if not faults:
    raise ValueError("compose: needs at least one fault")
  for fault in faults:
    if not isinstance(fault, Fault):
      raise ValueError(f"compose: expected Fault objects, got {type(fault).__name__}")
  target = "+".join(dict.fromkeys(t for f in faults for t in split_pattern(f.target)))
  return Fault(name="compose", target=target, transform=_compose_transform,
               settings={"faults": tuple(faults)})


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------


def count_nonfinite(params: Params) -> jax.Array:
  """The number of NaN or infinite entries over all floating-point leaves.

  Args:
    params: any parameter tree.

  Returns:
    int32 ``[]``.
  """
  total = jnp.zeros((), jnp.int32)
  for leaf in jax.tree_util.tree_leaves(params):
    if is_float_array(leaf):
      total = total + jnp.sum(~jnp.isfinite(leaf), dtype=jnp.int32)
  return total


def param_distance(params: Params, reference: Params,
                   target: str | None = None) -> dict[str, jax.Array]:
  """Relative L2 distance of each component from a reference: ``||w - w_ref|| / ||w_ref||``.

  The norms run over all floating-point leaves of the component. The distance is 0 when the
  component equals the reference, Inf when only the reference is all zero, and NaN or Inf when
  ``params`` holds non-finite values.

  Args:
    params: e.g. the faulted parameters.
    reference: e.g. the original parameters (same structure below each reported component).
    target: a target pattern choosing the components; ``None`` reports every component path
      (parents and sub-components alike).

  Returns:
    ``{component path: float32 []}``.
  """
  paths = component_paths(reference) if target is None else match_components(reference, target)
  distances = {}
  for path in paths:
    own = dict(leaves_with_paths(get_subtree(params, path)) if _has_path(params, path) else [])
    ref = dict(leaves_with_paths(get_subtree(reference, path)))
    if set(own) != set(ref):
      raise ValueError(f"param_distance: structures differ at {path!r}: params has "
                       f"{sorted(own)}, reference has {sorted(ref)}")
    diffs, refs = [], []
    for name, ref_leaf in ref.items():
      if not is_float_array(ref_leaf):
        continue
      if jnp.shape(own[name]) != jnp.shape(ref_leaf):
        raise ValueError(f"param_distance: shapes differ at {path}/{name}: "
                         f"{jnp.shape(own[name])} vs {jnp.shape(ref_leaf)}")
      diffs.append(own[name].astype(jnp.float32) - ref_leaf.astype(jnp.float32))
      refs.append(ref_leaf.astype(jnp.float32))
    distance = _l2_norm(diffs)
    distances[path] = jnp.where(distance == 0, 0.0, distance / _l2_norm(refs))
  return distances


def _l2_norm(arrays: list[jax.Array]) -> jax.Array:
  """The L2 norm of the concatenated arrays, rescaled by the largest entry so that huge finite
  values (e.g. after exponent bit flips) do not overflow to Inf; Inf or NaN entries propagate."""
  if not arrays:
    return jnp.zeros((), jnp.float32)
  largest = jnp.max(jnp.stack([jnp.max(jnp.abs(a), initial=0.0) for a in arrays]))
  safe = jnp.where(jnp.isfinite(largest) & (largest > 0), largest, 1.0)
  norm = safe * jnp.sqrt(sum(jnp.sum(jnp.square(a / safe)) for a in arrays))
  return jnp.where(jnp.isfinite(largest), norm, largest)


def _has_path(tree: Any, path: str) -> bool:
  try:
    get_subtree(tree, path)
  except (KeyError, TypeError):
    return False
  return isinstance(get_subtree(tree, path), Mapping)
