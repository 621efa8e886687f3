"""An in-JAX circular replay buffer of transitions from parallel environments.

Storage is time-major, ``[T, E, ...]`` for ``T`` vectorised steps of ``E`` environments, so one
write stores a whole vectorised step and a sampled sequence is a contiguous slice in time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
  """Transitions ``(obs_t, action_t, reward_t, terminated_t, truncated_t, next_obs_t, goal_t)``.

  ``next_obs_t`` is the observation the transition reached (before any auto-reset), so sequences
  that cross an episode boundary can be masked and time-limit truncations bootstrapped.

  Attributes:
    obs: ``[T, E, obs_dim]``.
    action: ``[T, E]`` int32 or ``[T, E, d]`` float32 (planner-space actions).
    reward: ``[T, E]``.
    terminated: ``[T, E]`` bool.
    truncated: ``[T, E]`` bool.
    next_obs: ``[T, E, obs_dim]``.
    reached_goal: ``[T, E]`` int32 goal entered by the transition, ``-1`` for none.
    insert_index: int32 ``[]`` next row to write.
    size: int32 ``[]`` rows filled so far (at most ``T``).
  """

  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  terminated: jax.Array
  truncated: jax.Array
  next_obs: jax.Array
  reached_goal: jax.Array
  insert_index: jax.Array
  size: jax.Array

  @property
  def capacity(self) -> int:
    return self.reward.shape[0]


def init_buffer(capacity: int, num_envs: int, obs_dim: int, action_shape: tuple[int, ...],
                action_dtype: jnp.dtype) -> ReplayBuffer:
  """An empty buffer of ``capacity`` vectorised steps."""
  return ReplayBuffer(
      obs=jnp.zeros((capacity, num_envs, obs_dim), jnp.float32),
      action=jnp.zeros((capacity, num_envs, *action_shape), action_dtype),
      reward=jnp.zeros((capacity, num_envs), jnp.float32),
      terminated=jnp.zeros((capacity, num_envs), bool),
      truncated=jnp.zeros((capacity, num_envs), bool),
      next_obs=jnp.zeros((capacity, num_envs, obs_dim), jnp.float32),
      reached_goal=jnp.full((capacity, num_envs), -1, jnp.int32),
      insert_index=jnp.int32(0),
      size=jnp.int32(0),
  )


def add(buffer: ReplayBuffer, obs_t: jax.Array, action_t: jax.Array, reward_t: jax.Array,
        terminated_t: jax.Array, truncated_t: jax.Array, next_obs_t: jax.Array,
        reached_goal_t: jax.Array) -> ReplayBuffer:
  """Writes one vectorised step (each argument has a leading ``[E]`` axis)."""
  i = buffer.insert_index
  return buffer.replace(
      obs=buffer.obs.at[i].set(obs_t),
      action=buffer.action.at[i].set(action_t),
      reward=buffer.reward.at[i].set(reward_t),
      terminated=buffer.terminated.at[i].set(terminated_t),
      truncated=buffer.truncated.at[i].set(truncated_t),
      next_obs=buffer.next_obs.at[i].set(next_obs_t),
      reached_goal=buffer.reached_goal.at[i].set(reached_goal_t),
      insert_index=(i + 1) % buffer.capacity,
      size=jnp.minimum(buffer.size + 1, buffer.capacity),
  )


def sample_sequences(buffer: ReplayBuffer, key: jax.Array, batch_size: int, length: int
                     ) -> dict[str, jax.Array]:
  """Uniformly samples contiguous sequences of ``length`` transitions.

  A sequence never crosses the write position (so it is never a mix of old and new data); it may
  cross episode boundaries, which the caller masks with ``terminated | truncated``. The buffer must
  hold at least ``length`` vectorised steps.

  Returns:
    Dict of the buffer fields with shapes ``[B, length, ...]``.
  """
  key_start, key_env = jax.random.split(key)
  capacity = buffer.capacity
  num_starts = jnp.maximum(buffer.size - length + 1, 1)
  offset = jax.random.randint(key_start, (batch_size,), 0, num_starts)
  oldest = (buffer.insert_index - buffer.size) % capacity
  time_index = (oldest + offset[:, None] + jnp.arange(length)[None, :]) % capacity  # [B, L]
  env_index = jax.random.randint(key_env, (batch_size,), 0, buffer.reward.shape[1])[:, None]
  fields = ("obs", "action", "reward", "terminated", "truncated", "next_obs", "reached_goal")
  return {name: getattr(buffer, name)[time_index, env_index] for name in fields}
