"""Training-time faults hooked into the joint update.

Most faults of these tests sit in one set of hooks with their severities as traced arguments, so
a single compiled training run serves those cases: a case switches its faults on (severity 1) and
leaves the others at severity 0, where every training-time fault is exactly the identity. Each
case trains the same two seeds (same keys) as the healthy run without hooks it is compared with.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import faults
from mbrl_drift.train import TrainingHooks, make_train

LATE_START = 10**6  # after the last training step of the tiny run
SEVERITY_NAMES = ("freeze_world_model", "reward_sign_flip", "reward_swap", "gradient_noise",
                  "target_noise", "optimizer_reset")


def all_fault_hooks(severity):
  """Hooks holding every training-time fault of this module.

  Args:
    severity: name (one of ``SEVERITY_NAMES``) -> float32 ``[]`` severity (may be traced).

  Returns:
    The :class:`TrainingHooks`.
  """
  return TrainingHooks(
      reward_faults=(
          faults.reward_sign_flip(target="world_model/reward",
                                  severity=severity["reward_sign_flip"]),
          faults.reward_swap(goal_index=1, severity=severity["reward_swap"])),
      target_faults=(faults.target_noise(1.0, severity=severity["target_noise"]),),
      gradient_transforms=(
          faults.gradient_noise(0.5, target="value", severity=severity["gradient_noise"]),),
      update_transforms=(
          faults.freeze(target="world_model", severity=severity["freeze_world_model"]),),
      optimizer_resets=(("world_model/dynamics", 128, severity["optimizer_reset"]),))


@pytest.fixture(scope="module")
def healthy(tiny_trained_seeds):
  """Initial and final state and metrics of the run without hooks (two seeds, vmapped)."""
  return (tiny_trained_seeds.init(tiny_trained_seeds.keys), tiny_trained_seeds.state,
          tiny_trained_seeds.metrics)


@pytest.fixture(scope="module")
def train_with_faults(tiny_train_config, tiny_trained_seeds):
  """``train_with_faults(**severities) -> (state, metrics)``: the healthy run's seeds trained
  with every fault hook, in one compilation for every case."""
  keys = tiny_trained_seeds.keys

  @jax.jit
  @chex.assert_max_traces(n=1)  # every case reuses the one compilation (a second trace raises)
  def train(severity):
    trainer = make_train(tiny_train_config, all_fault_hooks(severity))
    return jax.vmap(trainer.train)(keys)

  @functools.cache
  def run(**switched_on):
    unknown = set(switched_on) - set(SEVERITY_NAMES)
    assert not unknown, unknown
    severity = {name: jnp.float32(switched_on.get(name, 0.0)) for name in SEVERITY_NAMES}
    return train(severity)

  return run


def _changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_freezing_the_world_model_leaves_it_untouched(train_with_faults, healthy):
  init_state, _, _ = healthy
  state, _ = train_with_faults(freeze_world_model=1.0)
  assert not _changed(init_state.params["world_model"], state.params["world_model"])
  assert _changed(init_state.params["value"], state.params["value"])


def test_a_freeze_that_starts_late_lets_early_updates_through(tiny_train_config,
                                                              tiny_trained_seeds, healthy):
  # Its own compilation: compared with the run without hooks to float32 rounding, which a
  # program holding every other fault (fused differently) need not reproduce.
  hooks = TrainingHooks(update_transforms=(faults.freeze(target="value",
                                                         start_step=LATE_START),))
  trainer = make_train(tiny_train_config, hooks)
  frozen_never, _ = jax.jit(jax.vmap(trainer.train))(tiny_trained_seeds.keys)
  _, healthy_state, _ = healthy
  for a, b in zip(jax.tree.leaves(frozen_never.params), jax.tree.leaves(healthy_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_reward_sign_flip_on_the_reward_head_only(train_with_faults, healthy):
  _, healthy_state, _ = healthy
  flipped, _ = train_with_faults(reward_sign_flip=1.0)
  assert _changed(flipped.params["world_model"]["reward"],
                  healthy_state.params["world_model"]["reward"])


def test_reward_swap_uses_the_other_goals_reward(train_with_faults, healthy):
  _, healthy_state, _ = healthy
  swapped, _ = train_with_faults(reward_swap=1.0)
  assert _changed(swapped.params["value"], healthy_state.params["value"])


def test_gradient_noise_target_noise_and_optimiser_reset_run_and_change_training(
    train_with_faults, healthy):
  _, healthy_state, _ = healthy
  faulted, metrics = train_with_faults(gradient_noise=1.0, target_noise=1.0, optimizer_reset=1.0)
  assert _changed(faulted.params["value"], healthy_state.params["value"])
  assert np.all(np.isfinite(metrics["loss/value"]))


def test_optimiser_reset_of_an_unknown_component_is_rejected(tiny_train_config):
  with pytest.raises(ValueError, match="unknown component"):
    make_train(tiny_train_config, TrainingHooks(optimizer_resets=(("policy", 0, 1.0),)))


def test_a_freeze_that_starts_mid_run_stops_updates_from_its_start_step(tiny_train_config,
                                                                        tiny_trained_seeds):
  """The tiny run has 2 chunks of 128 environment steps. A value freeze from step 128 on lets
  chunk 0 train the value, then holds it bit for bit through chunk 1 while the world model keeps
  learning; the transient window [128, 192) lets the value train again after it closes. The
  window is traced: both cases share one compilation."""
  keys = tiny_trained_seeds.keys
  init_state = tiny_trained_seeds.init(keys)

  def trainer_for(start_step, end_step):
    return make_train(tiny_train_config, TrainingHooks(update_transforms=(
        faults.freeze(target="value", start_step=start_step, end_step=end_step),)))

  @jax.jit
  def run_chunk(state, start_step, end_step):
    return jax.vmap(trainer_for(start_step, end_step).run_chunk)(state)[0]

  def chunk_params(start_step, end_step):
    state = jax.vmap(trainer_for(0, None).init)(keys)  # the fault holds no optimiser state
    first = run_chunk(state, start_step, end_step)
    return first.params, run_chunk(first, start_step, end_step).params

  first, second = chunk_params(jnp.int32(128), jnp.int32(2**30))
  assert _changed(init_state.params["value"], first["value"])
  assert not _changed(first["value"], second["value"])
  assert _changed(first["world_model"], second["world_model"])

  _, transient_end = chunk_params(jnp.int32(128), jnp.int32(192))
  assert _changed(second["value"], transient_end["value"])
