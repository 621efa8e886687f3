"""Fine-tuning-delta faults on a parameter tree with a frozen base copy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import faults


def _params():
  key_base, key_delta = jax.random.split(jax.random.key(0))
  base = {"Dense_0": {"kernel": jax.random.normal(key_base, (4, 3)), "bias": jnp.zeros(3)}}
  delta = jax.tree.map(lambda x: 0.1 * jax.random.normal(key_delta, x.shape), base)
  actor = jax.tree.map(jnp.add, base, delta)
  critic = {"Dense_0": {"kernel": jnp.ones((4, 1)), "bias": jnp.zeros(1)}}
  return {"actor": actor, "critic": critic, "base": {"actor": base}}, delta


def _flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("factory", [faults.delta_scale, faults.delta_noise, faults.delta_dropout])
def test_severity_zero_is_the_identity_and_only_the_target_moves(factory):
  params, _ = _params()
  fault = factory("actor")
  same = jax.jit(fault)(jax.random.key(1), params, 0.0)
  for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  moved = fault(jax.random.key(1), params, 0.5)
  assert not np.allclose(_flat(moved["actor"]), _flat(params["actor"]))
  for part in ("critic", "base"):
    for a, b in zip(jax.tree.leaves(moved[part]), jax.tree.leaves(params[part])):
      np.testing.assert_array_equal(a, b)


def test_delta_scale_one_is_the_base_and_half_halves_the_delta():
  params, delta = _params()
  full = faults.delta_scale("actor")(jax.random.key(0), params, 1.0)
  np.testing.assert_array_equal(_flat(full["actor"]), _flat(params["base"]["actor"]))
  half = faults.delta_scale("actor")(jax.random.key(0), params, 0.5)
  np.testing.assert_allclose(_flat(half["actor"]) - _flat(params["base"]["actor"]),
                             0.5 * _flat(delta), rtol=1e-5, atol=1e-6)


def test_delta_noise_matches_the_delta_norm():
  params, delta = _params()
  noisy = faults.delta_noise("actor")(jax.random.key(2), params, 1.0)
  change = _flat(noisy["actor"]) - _flat(params["actor"])
  np.testing.assert_allclose(jnp.linalg.norm(change), jnp.linalg.norm(_flat(delta)), rtol=1e-5)
  twice = faults.delta_noise("actor")(jax.random.key(2), params, 2.0)
  np.testing.assert_allclose(_flat(twice["actor"]) - _flat(params["actor"]), 2 * change,
                             rtol=1e-5, atol=1e-6)


def test_delta_dropout_keeps_or_rescales_each_entry_and_one_is_the_base():
  params, delta = _params()
  dropped = faults.delta_dropout("actor")(jax.random.key(3), params, 0.5)
  new_delta = _flat(dropped["actor"]) - _flat(params["base"]["actor"])
  old = _flat(delta)
  kept = ~np.isclose(np.asarray(new_delta), 0.0, atol=1e-7)
  np.testing.assert_allclose(new_delta[kept], 2.0 * old[kept], rtol=1e-4, atol=1e-6)
  assert 0 < kept.sum() < kept.size
  full = faults.delta_dropout("actor")(jax.random.key(3), params, 1.0)
  np.testing.assert_array_equal(_flat(full["actor"]), _flat(params["base"]["actor"]))


def test_a_component_without_a_base_is_a_clear_error():
  params, _ = _params()
  with pytest.raises(ValueError, match=r"'critic' has no fine-tuning base.*with a base: actor"):
    faults.delta_scale("critic")(jax.random.key(0), params, 1.0)
  without_base = {k: v for k, v in params.items() if k != "base"}
  with pytest.raises(ValueError, match="not fine-tuned from a base"):
    faults.delta_noise("actor")(jax.random.key(0), without_base, 1.0)


def test_delta_faults_parse_from_specs():
  params, _ = _params()
  for name in ("delta_scale", "delta_noise", "delta_dropout"):
    fault = faults.parse_fault_spec(f"actor:{name}")
    assert fault.target == "actor"
    fault(jax.random.key(0), params, 0.3)
