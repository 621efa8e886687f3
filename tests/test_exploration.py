"""Temporally-extended epsilon-greedy exploration during training (``exploration_repeat``)."""

import jax
import numpy as np
import pytest

from mbrl_drift.config import AgentConfig, TrainConfig
from mbrl_drift.agents.mpc.train import HeldExploration
from mbrl_drift.train import make_train

REPEAT = 5
NUM_ENVS = 4
ITERATIONS = 30


def random_phase_config(env, planner, exploration_repeat):
  """A run that never leaves the uniformly random phase (epsilon is 1 before learning)."""
  total_steps = NUM_ENVS * ITERATIONS
  return TrainConfig(
      env=env, total_steps=total_steps, num_envs=NUM_ENVS, buffer_size=total_steps,
      batch_size=4, learning_starts=total_steps - 1, num_chunks=1,
      exploration_repeat=exploration_repeat,
      agent=AgentConfig(latent_dim=4, hidden_dim=8, num_layers=1, horizon=1, max_horizon=1,
                        planner=planner, num_samples=4, num_elites=2, planner_iterations=1))


def test_plain_epsilon_greedy_keeps_no_exploration_state():
  trainer = make_train(random_phase_config("PointGoals", "cem", 1))
  assert jax.eval_shape(trainer.init, jax.random.key(0)).exploration is None


def test_exploration_repeat_is_validated():
  with pytest.raises(ValueError, match="exploration_repeat"):
    TrainConfig(exploration_repeat=0)


@pytest.mark.parametrize("env, planner", [("PointGoals", "cem"), ("GoalGrid-OpenRoom",
                                                                   "exhaustive")])
def test_random_actions_are_held_for_exploration_repeat_steps(env, planner):
  trainer = make_train(random_phase_config(env, planner, REPEAT))
  state, _ = jax.jit(trainer.train)(jax.random.key(0))
  assert isinstance(state.exploration, HeldExploration)
  buffer = jax.device_get(state.buffer)
  done = buffer.terminated | buffer.truncated  # [T, E]
  for e in range(NUM_ENVS):
    actions = buffer.action[:, e]
    hold_starts = []
    steps_in_episode = 0
    for t in range(ITERATIONS):
      if steps_in_episode % REPEAT == 0:
        hold_starts.append(actions[t])
      else:  # inside a hold: the previous action again
        np.testing.assert_array_equal(actions[t], actions[t - 1])
      steps_in_episode = 0 if done[t, e] else steps_in_episode + 1
    hold_starts = np.stack(hold_starts)
    # Each hold starts with a fresh uniform draw.
    if planner == "cem":
      assert np.all(np.any(hold_starts[1:] != hold_starts[:-1], axis=-1))
      assert np.all(np.abs(hold_starts) <= 1.0)
    else:
      assert len(np.unique(hold_starts)) > 1
