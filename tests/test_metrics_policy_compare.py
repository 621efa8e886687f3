"""Policy comparisons: JS distance, reversion coefficient, KL drift, CKA, weight distance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift.metrics import policy_compare as pc

NUM_STATES, NUM_ACTIONS = 40, 4


def _random_policy(key, temperature=1.0):
  logits = jax.random.normal(key, (NUM_STATES, NUM_ACTIONS)) / temperature
  return jax.nn.softmax(logits, axis=-1)


@pytest.fixture(scope="module")
def base_and_finetuned():
  base = _random_policy(jax.random.key(0))
  finetuned = _random_policy(jax.random.key(1), temperature=0.3)
  return base, finetuned


def _js_reference(p, q):
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  m = 0.5 * (p + q)

  def kl(a, b):
    return np.sum(np.where(a > 0, a * np.log2(np.where(a > 0, a, 1) / b), 0.0), axis=-1)

  return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def test_js_distance_matches_reference_and_is_a_bounded_symmetric_metric(base_and_finetuned):
  base, finetuned = base_and_finetuned
  np.testing.assert_allclose(pc.js_divergence(base, finetuned), _js_reference(base, finetuned),
                             atol=1e-6)
  np.testing.assert_allclose(pc.js_distance(base, finetuned), pc.js_distance(finetuned, base),
                             atol=1e-7)
  np.testing.assert_allclose(pc.js_distance(base, base), 0.0, atol=1e-6)
  disjoint = pc.js_distance(jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 0.5, 0.5]))
  np.testing.assert_allclose(disjoint, 1.0, atol=1e-6)
  third = _random_policy(jax.random.key(2))
  # Triangle inequality, state by state.
  assert bool(jnp.all(pc.js_distance(base, third) <= pc.js_distance(base, finetuned)
                      + pc.js_distance(finetuned, third) + 1e-6))


def test_mean_js_distance_respects_probe_weights(base_and_finetuned):
  base, finetuned = base_and_finetuned
  per_state = pc.js_distance(base, finetuned)
  mask = jnp.zeros(NUM_STATES).at[:5].set(1.0)
  np.testing.assert_allclose(pc.mean_js_distance(base, finetuned, mask),
                             jnp.mean(per_state[:5]), rtol=1e-6)
  np.testing.assert_allclose(pc.mean_js_distance(base, finetuned), jnp.mean(per_state),
                             rtol=1e-6)


def test_policy_compared_with_itself_has_zero_distance_and_matching_reversion(
    base_and_finetuned):
  base, finetuned = base_and_finetuned
  at_base = pc.reversion_coefficient(base, base, finetuned)
  at_finetuned = pc.reversion_coefficient(finetuned, base, finetuned)
  assert float(at_base["reversion/coefficient"]) == 0.0
  assert float(at_finetuned["reversion/coefficient"]) == 1.0
  np.testing.assert_allclose(at_base["reversion/residual"], 0.0, atol=1e-3)
  np.testing.assert_allclose(at_finetuned["reversion/residual"], 0.0, atol=1e-3)


def test_geometric_mixtures_recover_their_coefficient(base_and_finetuned):
  base, finetuned = base_and_finetuned
  coefficients = jnp.array([0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0])
  mixtures = jax.vmap(lambda c: pc.geometric_mixture(base, finetuned, c))(coefficients)
  recovered = jax.vmap(lambda m: pc.reversion_coefficient(m, base, finetuned))(mixtures)
  np.testing.assert_allclose(recovered["reversion/coefficient"], coefficients, atol=0.1)
  assert float(jnp.max(recovered["reversion/residual"])) < 0.01


def test_mixture_with_one_hot_policies_stays_finite():
  base = jax.nn.one_hot(jnp.arange(NUM_STATES) % NUM_ACTIONS, NUM_ACTIONS)
  finetuned = jnp.full((NUM_STATES, NUM_ACTIONS), 1.0 / NUM_ACTIONS)
  mixture = pc.geometric_mixture(base, finetuned, 0.5)
  assert bool(jnp.all(jnp.isfinite(mixture)))
  np.testing.assert_allclose(mixture, base, atol=1e-6)  # 0^(1/2) keeps the base's zeros
  np.testing.assert_allclose(pc.geometric_mixture(base, finetuned, 1.0), finetuned, atol=1e-6)
  result = pc.reversion_coefficient(finetuned, base, finetuned)
  assert float(result["reversion/coefficient"]) == 1.0


def test_extended_grid_detects_overshoot(base_and_finetuned):
  base, finetuned = base_and_finetuned
  overshoot = pc.geometric_mixture(base, finetuned, 1.3)
  clipped = pc.reversion_coefficient(overshoot, base, finetuned)
  extended = pc.reversion_coefficient(overshoot, base, finetuned,
                                      coefficients=jnp.linspace(-0.5, 1.5, 401))
  assert float(clipped["reversion/coefficient"]) == 1.0
  assert float(clipped["reversion/residual"]) > 0.01
  np.testing.assert_allclose(extended["reversion/coefficient"], 1.3, atol=0.01)


def test_kl_drift(base_and_finetuned):
  base, finetuned = base_and_finetuned
  same = pc.policy_kl(base, base)
  np.testing.assert_allclose(same["drift/kl_to_base"], 0.0, atol=1e-6)
  drift = pc.policy_kl(finetuned, base)
  expected = np.mean(np.sum(np.asarray(finetuned) * np.log(
      np.asarray(finetuned) / np.asarray(base)), axis=-1))
  np.testing.assert_allclose(drift["drift/kl_to_base"], expected, rtol=1e-4)
  np.testing.assert_allclose(drift["drift/kl_distance_to_base"], np.sqrt(expected), rtol=1e-4)


def test_attractor_distances_find_the_nearest_reference(base_and_finetuned):
  base, finetuned = base_and_finetuned
  near_base = pc.geometric_mixture(base, finetuned, 0.05)
  references = {"uniform": pc.uniform_policy(NUM_STATES, NUM_ACTIONS), "base": base,
                "healthy": finetuned}
  distances = jax.jit(pc.attractor_distances)(near_base, references)
  assert set(distances) == {"reference/uniform", "reference/base", "reference/healthy"}
  name, distance = pc.nearest_attractor(distances)
  assert name == "base"
  assert distance == pytest.approx(float(distances["reference/base"]))
  with pytest.raises(ValueError, match="reference"):
    pc.nearest_attractor({"outcome/return": 1.0})


def _cka_reference(x, y):
  """HSIC form of linear CKA (Kornblith et al. 2019, eq. 1 with linear kernels)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n = x.shape[0]
  centring = np.eye(n) - np.ones((n, n)) / n
  k, l = centring @ x @ x.T @ centring, centring @ y @ y.T @ centring
  return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def test_linear_cka():
  keys = jax.random.split(jax.random.key(3), 3)
  x = jax.random.normal(keys[0], (64, 8))
  y = jax.random.normal(keys[1], (64, 5))
  rotation, _ = jnp.linalg.qr(jax.random.normal(keys[2], (8, 8)))
  np.testing.assert_allclose(pc.linear_cka(x, y), _cka_reference(x, y), rtol=1e-4)
  np.testing.assert_allclose(pc.linear_cka(x, x), 1.0, rtol=1e-5)
  # Invariant to orthogonal transforms, isotropic scaling and offsets.
  np.testing.assert_allclose(pc.linear_cka(x, 3.0 * x @ rotation + 1.0), 1.0, rtol=1e-4)
  assert float(pc.linear_cka(x, y)) < 0.5
  assert float(pc.linear_cka(x, jnp.ones((64, 3)))) == 0.0


def test_relative_weight_distance_per_component():
  reference = {
      "world_model": {"dynamics": {"w": jnp.ones((2, 2))}, "reward": {"w": jnp.ones(4)}},
      "value": {"w": 2.0 * jnp.ones(4)},
  }
  params = {
      "world_model": {"dynamics": {"w": 2.0 * jnp.ones((2, 2))}, "reward": {"w": jnp.ones(4)}},
      "value": {"w": 2.0 * jnp.ones(4)},
  }
  distances = pc.relative_weight_distance(params, reference)
  assert set(distances) == {"weights/world_model", "weights/world_model/dynamics",
                            "weights/world_model/reward", "weights/value", "weights/total"}
  np.testing.assert_allclose(distances["weights/world_model/dynamics"], 1.0)
  np.testing.assert_allclose(distances["weights/world_model/reward"], 0.0)
  np.testing.assert_allclose(distances["weights/value"], 0.0)
  np.testing.assert_allclose(distances["weights/world_model"], 2.0 / np.sqrt(8.0), rtol=1e-6)
  np.testing.assert_allclose(distances["weights/total"], 2.0 / np.sqrt(24.0), rtol=1e-6)
  chosen = pc.relative_weight_distance(params, reference, paths=["world_model/dynamics"])
  assert set(chosen) == {"weights/world_model/dynamics", "weights/total"}


def test_relative_weight_distance_edge_cases():
  zero = {"a": {"w": jnp.zeros(3)}}
  assert float(pc.relative_weight_distance(zero, zero)["weights/a"]) == 0.0
  moved = {"a": {"w": jnp.ones(3)}}
  assert float(pc.relative_weight_distance(moved, zero)["weights/a"]) == np.inf
  with pytest.raises(ValueError, match="structure"):
    pc.relative_weight_distance({"a": jnp.ones(2)}, {"b": jnp.ones(2)})
  with pytest.raises(ValueError, match="not in the parameters"):
    pc.relative_weight_distance(zero, zero, paths=["a/missing"])


def test_policy_entropy():
  uniform = pc.uniform_policy(NUM_STATES, NUM_ACTIONS)
  np.testing.assert_allclose(pc.policy_entropy(uniform), np.log(NUM_ACTIONS), rtol=1e-6)
  one_hot = jax.nn.one_hot(jnp.zeros(NUM_STATES, jnp.int32), NUM_ACTIONS)
  assert float(pc.policy_entropy(one_hot)) == 0.0
