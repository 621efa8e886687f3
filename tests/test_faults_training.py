"""Training-time faults: step gating under jit with a traced step, exact identity outside."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mbrl_drift import faults

KEY = jax.random.key(0)
REWARDS = jax.random.normal(jax.random.key(1), (8, 3))  # [B, T]
GOAL_REWARDS = jax.random.normal(jax.random.key(2), (8, 3, 4))  # [B, T, K]
NUM_STEPS = 8


def _over_steps(signal_fault, values, alternative=None):
  """Applies the fault at steps 0..NUM_STEPS-1 inside lax.scan (the step is traced)."""

  def body(carry, step):
    key = jax.random.fold_in(KEY, step)
    if alternative is None:
      return carry, signal_fault(key, step, values)
    return carry, signal_fault(key, step, values, alternative)

  return np.asarray(jax.jit(lambda: jax.lax.scan(body, 0, jnp.arange(NUM_STEPS))[1])())


def _bits(x):
  return np.asarray(x, np.float32).view(np.uint32)


@pytest.mark.parametrize("make", [
    lambda: faults.reward_noise(0.5, start_step=2, end_step=5),
    lambda: faults.reward_sign_flip(start_step=2, end_step=5),
    lambda: faults.target_noise(0.5, start_step=2, end_step=5),
    lambda: faults.target_sign_flip(start_step=2, end_step=5),
    lambda: faults.target_offset(2.0, start_step=2, end_step=5),
])
def test_signal_fault_window(make):
  out = _over_steps(make(), REWARDS)
  for step in range(NUM_STEPS):
    if 2 <= step < 5:
      assert not np.array_equal(out[step], REWARDS), step
    else:
      np.testing.assert_array_equal(_bits(out[step]), _bits(REWARDS))


def test_signal_fault_semantics():
  step = jnp.int32(3)
  np.testing.assert_array_equal(faults.reward_sign_flip()(KEY, step, REWARDS), -REWARDS)
  half = faults.reward_sign_flip(severity=0.5)(KEY, step, REWARDS)
  np.testing.assert_array_equal(half, np.zeros_like(REWARDS))
  noisy = faults.reward_noise(0.5)(KEY, step, jnp.zeros((4000,)))
  assert 0.45 < float(jnp.std(noisy)) < 0.55
  np.testing.assert_allclose(faults.target_offset(2.0, severity=0.25)(KEY, step, REWARDS),
                             REWARDS + 0.5, rtol=1e-6)
  swapped = faults.reward_swap(goal_index=2)(KEY, step, REWARDS, GOAL_REWARDS)
  np.testing.assert_array_equal(swapped, GOAL_REWARDS[..., 2])
  mixed = faults.reward_swap(severity=0.25)(KEY, step, REWARDS, GOAL_REWARDS[..., 1])
  np.testing.assert_allclose(mixed, 0.75 * REWARDS + 0.25 * GOAL_REWARDS[..., 1], rtol=1e-5,
                             atol=1e-6)
  permanent = faults.reward_sign_flip(start_step=2)
  assert bool(permanent.effective_severity(10**6) == 1.0)
  assert bool(permanent.effective_severity(1) == 0.0)


def test_signal_fault_swap_window_and_determinism():
  fault = faults.reward_swap(goal_index=0, start_step=4)
  out = _over_steps(fault, REWARDS, GOAL_REWARDS)
  np.testing.assert_array_equal(out[:4], np.broadcast_to(REWARDS, (4,) + REWARDS.shape))
  np.testing.assert_array_equal(out[4:],
                                np.broadcast_to(GOAL_REWARDS[..., 0], (4,) + REWARDS.shape))
  noise = faults.reward_noise(1.0)
  np.testing.assert_array_equal(noise(KEY, 0, REWARDS), noise(KEY, 0, REWARDS))


def test_signal_fault_vmaps_over_severity():
  severities = jnp.array([0.0, 0.5, 1.0])
  noisy = lambda s: faults.reward_noise(1.0, severity=s)(KEY, 0, REWARDS)
  out = jax.jit(jax.vmap(noisy))(severities)
  np.testing.assert_array_equal(_bits(out[0]), _bits(REWARDS))
  distances = [float(jnp.linalg.norm(o - REWARDS)) for o in out]
  assert distances[0] < distances[1] < distances[2]
  fault = faults.target_sign_flip(severity=0.5)
  out = jax.jit(jax.vmap(lambda s: fault.replace(severity=s)(KEY, 0, REWARDS)))(severities)
  np.testing.assert_array_equal(out[2], -REWARDS)


def test_signal_fault_addressing_and_errors():
  assert faults.reward_noise(0.1, target="world_model/reward").applies_to("world_model/reward")
  assert not faults.reward_noise(0.1, target="world_model/reward").applies_to("value")
  assert faults.reward_noise(0.1).applies_to("value")
  assert faults.target_noise(0.1).applies_to("value") and not faults.target_noise(0.1).applies_to(
      "world_model/dynamics")
  with pytest.raises(ValueError, match="needs goal_rewards"):
    faults.reward_swap()(KEY, 0, REWARDS)
  num_goals = GOAL_REWARDS.shape[-1]
  with pytest.raises(ValueError, match=f"goal_index={num_goals} is out of range.*{num_goals} goals"):
    faults.reward_swap(goal_index=num_goals)(KEY, 0, REWARDS, GOAL_REWARDS)
  with pytest.raises(ValueError, match=r"goal_rewards.*shape \(8, 3, 4\)"):
    faults.reward_swap()(KEY, 0, REWARDS, GOAL_REWARDS)
  with pytest.raises(ValueError, match="end_step must be None or > start_step"):
    faults.reward_noise(0.1, start_step=5, end_step=5)
  with pytest.raises(ValueError, match="start_step must be >= 0"):
    faults.freeze(start_step=-1)
  with pytest.raises(ValueError, match="severity must be >= 0"):
    faults.target_sign_flip(severity=-0.5)
  with pytest.raises(ValueError, match="empty term"):
    faults.lr_spike(2.0, target="value+")


# ---------------------------------------------------------------------------------------------
# Gradient transforms
# ---------------------------------------------------------------------------------------------

PARAMS = {"world_model": {"dynamics": {"Dense_0": {"kernel": jnp.ones((3, 2)),
                                                   "bias": jnp.zeros(2)}}},
          "value": {"Dense_0": {"kernel": jnp.ones((2, 1)), "bias": jnp.zeros(1)}}}


def _gradients(step):
  return jax.tree_util.tree_map(
      lambda x: jax.random.normal(jax.random.fold_in(jax.random.key(5), step), x.shape), PARAMS)


def _run(transform, num_steps=NUM_STEPS, step_offset=None):
  """The updates of ``transform`` over ``num_steps`` steps, in one jitted lax.scan."""

  def body(state, step):
    extra = {} if step_offset is None else {"step": step + step_offset}
    updates, state = transform.update(_gradients(step), state, PARAMS, **extra)
    return state, updates

  run = jax.jit(lambda: jax.lax.scan(body, transform.init(PARAMS), jnp.arange(num_steps))[1])
  return jax.tree_util.tree_map(np.asarray, run())


def _leaves(tree):
  return jax.tree_util.tree_leaves(tree)


def _assert_same_as_base(got, want):
  """Equal up to float32 rounding: ``got`` and ``want`` come from two different XLA programs
  (the same arithmetic, possibly fused differently), so bit equality is not guaranteed. Adam's
  updates have magnitude <= lr = 1e-2, so the absolute rounding scale is about 1e-2 * 1e-6."""
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


BASE = optax.adam(1e-2)
BASE_UPDATES = _run(BASE)


def test_freeze_zeroes_updates_in_window_only():
  out = _run(optax.chain(BASE, faults.freeze(start_step=2, end_step=5)))
  for got, want in zip(_leaves(out), _leaves(BASE_UPDATES)):
    np.testing.assert_array_equal(got[2:5], 0)
    np.testing.assert_array_equal(got[:2], want[:2])
    np.testing.assert_array_equal(got[5:], want[5:])  # Adam's state saw the same gradients


def test_lr_spike_scales_updates_and_targets_one_component():
  out = _run(optax.chain(BASE, faults.lr_spike(10.0, target="value", start_step=3)))
  np.testing.assert_allclose(out["value"]["Dense_0"]["kernel"][3:],
                             10 * BASE_UPDATES["value"]["Dense_0"]["kernel"][3:], rtol=1e-6)
  np.testing.assert_array_equal(out["value"]["Dense_0"]["kernel"][:3],
                                BASE_UPDATES["value"]["Dense_0"]["kernel"][:3])
  for got, want in zip(_leaves(out["world_model"]), _leaves(BASE_UPDATES["world_model"])):
    np.testing.assert_array_equal(got, want)


def test_gradient_noise_window_determinism_and_severity_zero():
  transform = optax.chain(faults.gradient_noise(0.5, start_step=4, seed=1), BASE)
  out = _run(transform)
  for got, want in zip(_leaves(out), _leaves(BASE_UPDATES)):
    _assert_same_as_base(got[:4], want[:4])
    assert np.all(np.abs(got[4:] - want[4:]) > 1e-6)  # far above rounding (~1e-9)
  for got, again in zip(_leaves(out), _leaves(_run(transform))):
    np.testing.assert_array_equal(got, again)
  silent = _run(optax.chain(faults.gradient_noise(0.5, seed=1, severity=0.0), BASE))
  for got, want in zip(_leaves(silent), _leaves(BASE_UPDATES)):
    _assert_same_as_base(got, want)


def test_gradient_noise_size():
  transform = faults.gradient_noise(2.0, seed=3, severity=0.5)
  zeros = {"w": jnp.zeros((5000,))}
  noisy, state = transform.update(zeros, transform.init(zeros))
  assert 0.9 < float(jnp.std(noisy["w"])) < 1.1
  assert int(state.count) == 1


def test_explicit_step_overrides_the_count():
  out = _run(optax.chain(BASE, faults.freeze(start_step=10, end_step=12)), step_offset=8)
  for got in _leaves(out):
    np.testing.assert_array_equal(got[2:4], 0)
    assert np.all(np.any(got[[0, 1, 4, 5]] != 0, axis=tuple(range(1, got.ndim))))


def test_reset_optimizer_state():
  out = _run(faults.reset_optimizer_state(BASE, start_step=3))
  for got, want in zip(_leaves(out), _leaves(BASE_UPDATES)):
    _assert_same_as_base(got[:3], want[:3])
  # At the reset step the update equals a fresh Adam's first update on that gradient.
  fresh_updates, _ = BASE.update(_gradients(3), BASE.init(PARAMS), PARAMS)
  for got, want in zip(_leaves(out), _leaves(fresh_updates)):
    np.testing.assert_allclose(got[3], want, rtol=1e-6)
  silent = _run(faults.reset_optimizer_state(BASE, start_step=3, severity=0.0))
  for got, want in zip(_leaves(silent), _leaves(BASE_UPDATES)):
    _assert_same_as_base(got, want)
  partial = _run(faults.reset_optimizer_state(BASE, start_step=3, severity=0.5))
  for got, reset, want in zip(_leaves(partial), _leaves(out), _leaves(BASE_UPDATES)):
    assert not np.array_equal(got[3], reset[3]) and not np.array_equal(got[3], want[3])
