"""Activation faults: identity at 0, monotone damage, fixed units, addressing, jit/vmap."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import faults

KEY = jax.random.key(3)
ACTIVATIONS = jax.random.normal(jax.random.key(0), (4, 5, 16))  # [B, T, units]
SEVERITIES = jnp.array([0.0, 0.25, 0.5, 0.75, 1.0])

CASES = {
    "noise": faults.activation_noise("value", scale=0.5),
    "noise_relative": faults.activation_noise("world_model/*", scale=0.5, relative=True),
    "stuck": faults.activation_stuck_at("world_model", value=3.0, seed=1),
    "ablation": faults.activation_ablation("value+actor", seed=2),
}
PATHS = {"noise": "value", "noise_relative": "world_model/dynamics",
         "stuck": "world_model/reward", "ablation": "actor"}


@functools.cache
def _sweep_fn(case):
  fault, path = CASES[case], PATHS[case]
  return jax.jit(jax.vmap(lambda key, s: fault.apply_to(path, key, ACTIVATIONS, s),
                          in_axes=(None, 0)))


@pytest.mark.parametrize("case", list(CASES))
def test_contract(case):
  fault, path = CASES[case], PATHS[case]
  out = np.asarray(_sweep_fn(case)(KEY, SEVERITIES))
  np.testing.assert_array_equal(out[0].view(np.uint32), np.asarray(ACTIVATIONS).view(np.uint32))
  distances = np.linalg.norm((out - np.asarray(ACTIVATIONS)).reshape(len(SEVERITIES), -1), axis=1)
  assert distances[0] == 0 and np.all(np.diff(distances) > 0), distances
  np.testing.assert_array_equal(out, np.asarray(_sweep_fn(case)(KEY, SEVERITIES)))  # same key
  eager = fault.apply_to(path, KEY, ACTIVATIONS, 0.5)
  np.testing.assert_allclose(eager, out[2], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_unaddressed_component_is_returned_untouched(case):
  fault = CASES[case]
  assert fault.apply_to("world_model/encoder" if case in ("noise", "ablation") else "value",
                        KEY, ACTIVATIONS, 1.0) is ACTIVATIONS


def test_matching_covers_descendants_and_unions():
  fault = faults.activation_noise("world_model+actor")
  assert fault.matches("world_model/dynamics") and fault.matches("world_model")
  assert fault.matches("actor") and not fault.matches("value")
  assert faults.activation_noise("world_model/*").matches("world_model/reward")
  assert not faults.activation_noise("world_model/*").matches("world_model")


def test_unit_faults_break_the_same_units_at_every_call():
  fault = CASES["stuck"]
  first = fault.apply_to("world_model/reward", jax.random.key(1), ACTIVATIONS, 0.5)
  second = fault.apply_to("world_model/reward", jax.random.key(2), ACTIVATIONS + 1.0, 0.5)
  stuck_first = np.all(np.asarray(first) == 3.0, axis=(0, 1))
  stuck_second = np.all(np.asarray(second) == 3.0, axis=(0, 1))
  assert stuck_first.sum() == 8
  np.testing.assert_array_equal(stuck_first, stuck_second)
  reseeded = fault.replace(seed=jnp.int32(9)).apply_to("world_model/reward", KEY, ACTIVATIONS, 0.5)
  assert not np.array_equal(np.all(np.asarray(reseeded) == 3.0, axis=(0, 1)), stuck_first)


def test_ablation_zeroes_exact_fraction_of_units_nested():
  fault = CASES["ablation"]
  dead = [np.all(np.asarray(fault.apply_to("actor", KEY, ACTIVATIONS, s)) == 0, axis=(0, 1))
          for s in (0.25, 0.5)]
  assert dead[0].sum() == 4 and dead[1].sum() == 8
  assert np.all(dead[1][dead[0]])


def test_noise_scale_and_fresh_noise_per_key():
  fault = CASES["noise"]
  out = fault.apply_to("value", KEY, ACTIVATIONS, 1.0)
  assert 0.4 < float(jnp.std(out - ACTIVATIONS)) < 0.6
  other = fault.apply_to("value", jax.random.key(4), ACTIVATIONS, 1.0)
  assert not np.array_equal(out, other)
  # Components get different noise from the same key.
  both = faults.activation_noise("*", 0.5)
  assert not np.array_equal(both.apply_to("value", KEY, ACTIVATIONS, 1.0),
                            both.apply_to("actor", KEY, ACTIVATIONS, 1.0))


def test_pure_functions_and_hook():
  x = ACTIVATIONS[0, 0]
  np.testing.assert_array_equal(faults.noise_activations(KEY, x, jnp.float32(0.0), 1.0), x)
  assert int(jnp.sum(faults.ablate_activations(KEY, x, jnp.float32(1.0)) != 0)) == 0
  stuck = faults.stuck_activations(KEY, x, jnp.float32(0.5), -2.0)
  assert int(jnp.sum(stuck == -2.0)) == 8
  hook = CASES["ablation"].as_hook(KEY, 1.0)
  assert int(jnp.sum(hook("actor", x) != 0)) == 0
  assert hook("value/head", x) is not x  # "value+actor" addresses value and its descendants
  assert faults.activation_ablation("actor").as_hook(KEY, 1.0)("value", x) is x


def test_fault_passed_through_jit_and_vmap_over_seeds():
  fault = faults.activation_ablation("value")
  apply = jax.jit(lambda f, x, s: f.apply_to("value", KEY, x, s))
  seeds = jnp.arange(3, dtype=jnp.int32)
  batch = jax.vmap(lambda seed: apply(fault.replace(seed=seed), ACTIVATIONS, 0.5))(seeds)
  masks = np.all(np.asarray(batch) == 0, axis=(1, 2))
  assert masks.shape == (3, 16) and np.all(masks.sum(axis=1) == 8)
  assert not np.array_equal(masks[0], masks[1])


def test_validate_and_errors():
  params = {"world_model": {"dynamics": {"Dense_0": {"kernel": jnp.ones((2, 2))}}},
            "value": {"Dense_0": {"kernel": jnp.ones((2, 1))}}}
  assert faults.activation_noise("world_model").validate(params) == (
      "world_model", "world_model/dynamics")
  with pytest.raises(ValueError, match=r"'critic'.*matches no component.*value"):
    faults.activation_noise("critic").validate(params)
  with pytest.raises(ValueError, match="empty term"):
    faults.activation_ablation("value+")
  with pytest.raises(ValueError, match="scale must be >= 0"):
    faults.activation_noise("value", scale=-0.1)
  with pytest.raises(ValueError, match="severity must be a scalar"):
    CASES["noise"].apply_to("value", KEY, ACTIVATIONS, jnp.ones(2))


def test_activation_noise_differs_across_a_vmapped_batch_and_repeats_for_the_same_input():
  # A vmapped planner calls the hook once per candidate with one key: the noise must still
  # differ between candidates, or it shifts every plan's score alike and changes no decision.
  fault = faults.activation_noise("value", scale=1.0)
  key = jax.random.key(0)
  outputs = jnp.arange(12.0, dtype=jnp.float32).reshape(4, 3)
  noisy = jax.vmap(lambda row: fault.apply_to("value", key, row, 1.0))(outputs)
  noise = np.asarray(noisy - outputs)
  assert all(not np.allclose(noise[i], noise[j]) for i in range(4) for j in range(i))
  np.testing.assert_array_equal(fault.apply_to("value", key, outputs[2], 1.0), noisy[2])
  np.testing.assert_array_equal(fault.apply_to("value", key, outputs, 0.0), outputs)
