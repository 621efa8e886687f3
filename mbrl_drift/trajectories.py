"""The evaluation output shared by the agent, the faults and the metrics: a batch of episodes."""

from __future__ import annotations

import jax
from flax import struct


@struct.dataclass
class Trajectories:
  """``N`` evaluation episodes, each padded to ``T`` steps (the environment's time limit).

  Step ``t`` goes from ``obs[:, t]`` with ``action[:, t]`` to ``obs[:, t + 1]``; steps at or after
  ``length`` are padding (``valid`` is False there, positions repeat the final one).

  Attributes:
    obs: ``[N, T + 1, obs_dim]`` float32 observations.
    action: ``[N, T]`` int32 (discrete) or ``[N, T, action_dim]`` float32 (continuous).
    reward: ``[N, T]`` float32 rewards (0 on padding).
    valid: ``[N, T]`` bool, True where step ``t`` happened.
    length: ``[N]`` int32 number of steps taken.
    episode_return: ``[N]`` float32 undiscounted return.
    terminated: ``[N]`` bool, True when the episode ended by termination (not the time limit).
    reached_goal: ``[N]`` int32 index of the goal the episode ended at, ``-1`` for none
      (timeout, or an environment without goals).
    state_index: ``[N, T + 1]`` int32 tabular state index (GoalGrid), ``-1`` where the
      environment has no tabular export.
    position: ``[N, T + 1, 2]`` float32 agent position: ``(row, col)`` on grids, ``(x, y)`` for
      point navigation, zeros elsewhere.
    nonfinite: ``[N]`` bool, True when the policy produced a non-finite value in the episode
      (for example under a fault); such episodes count as failures, never as crashes.
  """

  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  valid: jax.Array
  length: jax.Array
  episode_return: jax.Array
  terminated: jax.Array
  reached_goal: jax.Array
  state_index: jax.Array
  position: jax.Array
  nonfinite: jax.Array

  @property
  def num_episodes(self) -> int:
    return self.length.shape[-1]

  @property
  def max_steps(self) -> int:
    return self.valid.shape[-1]
