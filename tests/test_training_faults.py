"""Training-time faults hooked into the joint update."""

import jax
import numpy as np
import pytest

from mbrl_drift import faults
from mbrl_drift.agent import get_path
from mbrl_drift.train import TrainingHooks, make_train


def _train(config, hooks, key=0):
  trainer = make_train(config, hooks)
  init_state = jax.jit(trainer.init)(jax.random.key(key))
  state, metrics = jax.jit(trainer.train)(jax.random.key(key))
  return trainer, init_state, state, metrics


def _changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_freezing_the_world_model_leaves_it_untouched(tiny_train_config):
  hooks = TrainingHooks(update_transforms=(faults.freeze(target="world_model"),))
  trainer, init_state, state, _ = _train(tiny_train_config, hooks)
  assert not _changed(init_state.params["world_model"], state.params["world_model"])
  assert _changed(init_state.params["value"], state.params["value"])


def test_a_freeze_that_starts_late_lets_early_updates_through(tiny_train_config):
  hooks = TrainingHooks(update_transforms=(faults.freeze(target="value", start_step=10**6),))
  _, _, frozen_never, _ = _train(tiny_train_config, hooks)
  _, _, healthy, _ = _train(tiny_train_config, TrainingHooks())
  for a, b in zip(jax.tree.leaves(frozen_never.params), jax.tree.leaves(healthy.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_reward_sign_flip_on_the_reward_head_only(tiny_train_config):
  hooks = TrainingHooks(reward_faults=(faults.reward_sign_flip(target="world_model/reward"),))
  trainer, _, flipped, _ = _train(tiny_train_config, hooks)
  _, _, healthy, _ = _train(tiny_train_config, TrainingHooks())
  assert _changed(flipped.params["world_model"]["reward"], healthy.params["world_model"]["reward"])


def test_reward_swap_uses_the_other_goals_reward(tiny_train_config):
  swap = faults.reward_swap(goal_index=1)
  _, _, swapped, _ = _train(tiny_train_config, TrainingHooks(reward_faults=(swap,)))
  _, _, healthy, _ = _train(tiny_train_config, TrainingHooks())
  assert _changed(swapped.params["value"], healthy.params["value"])


def test_gradient_noise_target_noise_and_optimiser_reset_run_and_change_training(
    tiny_train_config):
  hooks = TrainingHooks(
      gradient_transforms=(faults.gradient_noise(0.5, target="value"),),
      target_faults=(faults.target_noise(1.0),),
      optimizer_resets=(("world_model/dynamics", 128, 1.0),))
  _, _, faulted, metrics = _train(tiny_train_config, hooks)
  _, _, healthy, _ = _train(tiny_train_config, TrainingHooks())
  assert _changed(faulted.params["value"], healthy.params["value"])
  assert np.all(np.isfinite(metrics["loss/value"]))


def test_optimiser_reset_of_an_unknown_component_is_rejected(tiny_train_config):
  with pytest.raises(ValueError, match="unknown component"):
    make_train(tiny_train_config, TrainingHooks(optimizer_resets=(("policy", 0, 1.0),)))
