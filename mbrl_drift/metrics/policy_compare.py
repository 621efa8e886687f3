"""Comparisons between policies, representations and parameters.

Policies are tables ``[S, A]`` of action probabilities over a probe set of ``S`` states (every
tabular state of a grid world, or a fixed batch of observations for a network policy). Averages
over probe states take optional non-negative ``weights`` ``[S]`` (a visitation distribution, or a
0/1 mask selecting the probe states); uniform when omitted.

* Jensen-Shannon distance: ``sqrt(JS)`` with base-2 logarithms, a metric in ``[0, 1]``
  (Endres & Schindelin 2003).
* Attractor distances: mean JS distance to reference policies (uniform, base, healthy, oracles).
* Reversion coefficient: ``lambda* = argmin_lambda JS(pi, normalise(pi_base^(1 - lambda) *
  pi_ft^lambda))`` over a grid, with the residual JS distance at ``lambda*``. ``lambda* = 0``
  means the policy is the base policy, ``1`` the fine-tuned one; values outside ``[0, 1]`` (when
  the grid extends there) mean "further from the base than the fine-tuned policy" (``> 1``) or
  "moved away from the fine-tuned policy beyond the base" (``< 0``).
* Drift: ``KL(pi_t || pi_base)`` and ``sqrt(KL)``; linear CKA of representations (Kornblith et
  al. 2019); relative weight distance per parameter component.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

#: Probabilities are floored here before taking logarithms, so one-hot policies stay finite.
PROBABILITY_FLOOR = 1e-30


def _safe_log(p: Array) -> Array:
  return jnp.log(jnp.maximum(p, PROBABILITY_FLOOR))


def _xlogy_ratio(p: Array, q: Array) -> Array:
  """``p * log2(p / q)`` with the convention ``0 * log(0 / q) = 0``."""
  return jnp.where(p > 0, p * (_safe_log(p) - _safe_log(q)), 0.0) / jnp.log(2.0)


def _weighted_mean(values: Array, weights: Array | None) -> Array:
  if weights is None:
    return jnp.mean(values, axis=-1)
  weights = jnp.asarray(weights, values.dtype)
  return jnp.sum(values * weights, axis=-1) / jnp.maximum(jnp.sum(weights, axis=-1), 1e-12)


def js_divergence(p: Array, q: Array) -> Array:
  """Jensen-Shannon divergence in bits over the last axis (Lin 1991).

  ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``; lies in ``[0, 1]``.

  Args:
    p: ``[..., A]`` probabilities.
    q: ``[..., A]`` probabilities.

  Returns:
    ``[...]`` divergences.
  """
  m = 0.5 * (p + q)
  divergence = 0.5 * jnp.sum(_xlogy_ratio(p, m), axis=-1) + 0.5 * jnp.sum(_xlogy_ratio(q, m), -1)
  return jnp.clip(divergence, 0.0, 1.0)


def js_distance(p: Array, q: Array) -> Array:
  """Jensen-Shannon distance ``sqrt(JS)`` (base 2), a metric in ``[0, 1]``.

  Args:
    p: ``[..., A]`` probabilities.
    q: ``[..., A]`` probabilities.

  Returns:
    ``[...]`` distances.
  """
  return jnp.sqrt(js_divergence(p, q))


def mean_js_distance(policy: Array, other: Array, weights: Array | None = None) -> Array:
  """Mean Jensen-Shannon distance between two policies over probe states.

  Args:
    policy: ``[S, A]`` action probabilities.
    other: ``[S, A]`` action probabilities.
    weights: optional ``[S]`` non-negative probe-state weights.

  Returns:
    ``[]`` mean distance in ``[0, 1]``.
  """
  return _weighted_mean(js_distance(policy, other), weights)


def kl_divergence(p: Array, q: Array) -> Array:
  """``KL(p || q)`` in nats over the last axis (zeros of ``q`` floored at 1e-30).

  Args:
    p: ``[..., A]`` probabilities.
    q: ``[..., A]`` probabilities.

  Returns:
    ``[...]`` non-negative divergences.
  """
  kl = jnp.sum(jnp.where(p > 0, p * (_safe_log(p) - _safe_log(q)), 0.0), axis=-1)
  return jnp.maximum(kl, 0.0)


def policy_kl(policy: Array, base_policy: Array, weights: Array | None = None) -> dict[str, Array]:
  """Drift of a policy from its base: mean ``KL(pi_t || pi_base)`` and ``sqrt`` of it.

  Args:
    policy: ``[S, A]`` current policy ``pi_t``.
    base_policy: ``[S, A]`` base policy.
    weights: optional ``[S]`` probe-state weights.

  Returns:
    ``{"drift/kl_to_base": [], "drift/kl_distance_to_base": []}``.
  """
  kl = _weighted_mean(kl_divergence(policy, base_policy), weights)
  return {"drift/kl_to_base": kl, "drift/kl_distance_to_base": jnp.sqrt(kl)}


def uniform_policy(num_states: int, num_actions: int) -> Array:
  """The uniform policy ``[S, A]``."""
  return jnp.full((num_states, num_actions), 1.0 / num_actions)


def attractor_distances(
    policy: Array,
    references: Mapping[str, Array],
    weights: Array | None = None,
) -> dict[str, Array]:
  """Mean JS distance from a policy to each reference policy ("attractor").

  Args:
    policy: ``[S, A]`` policy under study (e.g. a faulted agent's).
    references: name -> ``[S, A]`` reference policy, e.g. ``{"uniform", "base", "healthy",
      "oracle_A", ...}``.
    weights: optional ``[S]`` probe-state weights.

  Returns:
    ``{"reference/<name>": []}`` for every reference.
  """
  return {
      f"reference/{name}": mean_js_distance(policy, reference, weights)
      for name, reference in references.items()
  }


def nearest_attractor(distances: Mapping[str, Any]) -> tuple[str, float]:
  """The reference policy closest to the policy (host-side, over ``reference/*`` entries).

  Args:
    distances: a metric dict containing ``"reference/<name>"`` entries.

  Returns:
    ``(name, distance)`` of the nearest reference.

  Raises:
    ValueError: if ``distances`` has no ``reference/`` entry.
  """
  entries = {k.split("/", 1)[1]: float(v) for k, v in distances.items()
             if k.startswith("reference/")}
  if not entries:
    raise ValueError("distances has no 'reference/<name>' entries")
  name = min(entries, key=entries.__getitem__)
  return name, entries[name]


def geometric_mixture(base_policy: Array, finetuned_policy: Array, coefficient: Array) -> Array:
  """``normalise(pi_base^(1 - lambda) * pi_ft^lambda)``, the log-linear interpolation.

  Args:
    base_policy: ``[..., A]`` probabilities.
    finetuned_policy: ``[..., A]`` probabilities.
    coefficient: ``lambda``, any real (``0`` gives the base, ``1`` the fine-tuned policy).

  Returns:
    ``[..., A]`` probabilities.
  """
  logits = (1.0 - coefficient) * _safe_log(base_policy) + coefficient * _safe_log(finetuned_policy)
  return jax.nn.softmax(logits, axis=-1)


def default_reversion_grid() -> Array:
  """The default grid of reversion coefficients: 201 points on ``[0, 1]`` (step 0.005)."""
  return jnp.linspace(0.0, 1.0, 201)


def reversion_coefficient(
    policy: Array,
    base_policy: Array,
    finetuned_policy: Array,
    weights: Array | None = None,
    coefficients: Array | None = None,
) -> dict[str, Array]:
  """Where a policy sits on the geometric path from the base to the fine-tuned policy.

  ``lambda* = argmin_lambda mean_s JS_distance(pi(s), normalise(pi_base(s)^(1 - lambda) *
  pi_ft(s)^lambda))`` over ``coefficients``; the residual is the distance at ``lambda*`` (0
  when the policy lies exactly on the path). Ties (e.g. when base and fine-tuned policies are
  equal) resolve to the smallest coefficient.

  Args:
    policy: ``[S, A]`` policy under study.
    base_policy: ``[S, A]`` base (pre-fine-tuning) policy.
    finetuned_policy: ``[S, A]`` healthy fine-tuned policy.
    weights: optional ``[S]`` probe-state weights.
    coefficients: ``[L]`` grid of candidate ``lambda`` values; default
      :func:`default_reversion_grid`. Pass e.g. ``jnp.linspace(-0.5, 1.5, 401)`` to allow
      extrapolation beyond the two policies.

  Returns:
    ``{"reversion/coefficient": [], "reversion/residual": []}``.
  """
  if coefficients is None:
    coefficients = default_reversion_grid()

  def distance(coefficient):
    mixture = geometric_mixture(base_policy, finetuned_policy, coefficient)
    return mean_js_distance(policy, mixture, weights)

  distances = jax.vmap(distance)(coefficients)
  best = jnp.argmin(distances)
  return {"reversion/coefficient": coefficients[best], "reversion/residual": distances[best]}


def linear_cka(x: Array, y: Array) -> Array:
  """Linear centred kernel alignment of two representations (Kornblith et al. 2019).

  ``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` after centring every feature; invariant
  to orthogonal transforms and isotropic scaling, in ``[0, 1]``.

  Args:
    x: ``[N, D1]`` features of ``N`` examples.
    y: ``[N, D2]`` features of the same examples.

  Returns:
    ``[]`` similarity (0 when either representation is constant).
  """
  x = x - jnp.mean(x, axis=0, keepdims=True)
  y = y - jnp.mean(y, axis=0, keepdims=True)
  cross = jnp.sum(jnp.square(y.T @ x))
  norm_x = jnp.sqrt(jnp.sum(jnp.square(x.T @ x)))
  norm_y = jnp.sqrt(jnp.sum(jnp.square(y.T @ y)))
  denominator = norm_x * norm_y
  return jnp.where(denominator > 0, cross / jnp.where(denominator > 0, denominator, 1.0), 0.0)


def _default_component_paths(tree: Any) -> list[str]:
  """Top-level keys, and the keys below them whose values are mappings (sub-components)."""
  paths = []
  for name, subtree in tree.items():
    paths.append(str(name))
    if isinstance(subtree, Mapping):
      paths.extend(f"{name}/{child}" for child, value in subtree.items()
                   if isinstance(value, Mapping))
  return paths


def _subtree(tree: Any, path: str) -> Any:
  for name in path.split("/"):
    tree = tree[name]
  return tree


def _squared_norm(tree: Any) -> Array:
  leaves = jax.tree.leaves(tree)
  return sum((jnp.sum(jnp.square(jnp.asarray(leaf, jnp.float32))) for leaf in leaves),
             jnp.zeros(()))


def relative_weight_distance(params: Any, reference_params: Any,
                             paths: Sequence[str] | None = None) -> dict[str, Array]:
  """Relative parameter distance ``||theta - theta_ref|| / ||theta_ref||`` per component.

  A component is a ``"/"``-separated path into the nested parameter dict (``"world_model"``,
  ``"world_model/dynamics"``, ``"value"``, ...); its distance aggregates every leaf below it. A
  component whose reference norm is 0 reports ``inf`` when it moved and 0 otherwise.

  Args:
    params: nested dict of arrays (current parameters).
    reference_params: nested dict with the same structure (e.g. the base parameters).
    paths: the components to report, e.g. ``agent.component_paths``; by default every
      top-level key and every mapping one level below it.

  Returns:
    ``{"weights/<path>": []}`` per component and ``"weights/total"`` over all parameters.

  Raises:
    ValueError: if the two trees differ in structure or a path is not in them.
  """
  if jax.tree.structure(params) != jax.tree.structure(reference_params):
    raise ValueError("params and reference_params must have the same tree structure")
  if paths is None:
    paths = _default_component_paths(reference_params)

  def relative(tree, ref_tree):
    difference = jax.tree.map(
        lambda a, b: jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32), tree, ref_tree)
    moved = jnp.sqrt(_squared_norm(difference))
    scale = jnp.sqrt(_squared_norm(ref_tree))
    safe = jnp.where(scale > 0, scale, 1.0)
    return jnp.where(scale > 0, moved / safe, jnp.where(moved > 0, jnp.inf, 0.0))

  metrics = {}
  for path in paths:
    try:
      current, reference = _subtree(params, path), _subtree(reference_params, path)
    except (KeyError, TypeError) as error:
      raise ValueError(f"component path {path!r} is not in the parameters") from error
    metrics[f"weights/{path}"] = relative(current, reference)
  metrics["weights/total"] = relative(params, reference_params)
  return metrics


def policy_entropy(policy: Array, weights: Array | None = None) -> Array:
  """Mean action entropy in nats over probe states.

  Args:
    policy: ``[S, A]`` probabilities.
    weights: optional ``[S]`` probe-state weights.

  Returns:
    ``[]`` mean entropy.
  """
  entropy = -jnp.sum(jnp.where(policy > 0, policy * _safe_log(policy), 0.0), axis=-1)
  return _weighted_mean(entropy, weights)


__all__ = [
    "attractor_distances",
    "default_reversion_grid",
    "geometric_mixture",
    "js_distance",
    "js_divergence",
    "kl_divergence",
    "linear_cka",
    "mean_js_distance",
    "nearest_attractor",
    "policy_entropy",
    "policy_kl",
    "relative_weight_distance",
    "reversion_coefficient",
    "uniform_policy",
]
