"""Control policies whose behaviour is known by construction, and a tabular rollout.

The metrics are validated on controls: an oracle for goal ``k`` (goal-directed towards ``k``),
the uniform policy (aimless and random), an aimless deterministic policy (a fixed arbitrary
action per cell: zero action entropy, yet no goal), and a policy that sends every start to one
cell and keeps it there (coherent towards a place that is not a goal). Tables are ``[S, A]``
action probabilities over the tabular states of a grid world (``envs.goal_grid.GoalGrid``).

:func:`rollout_tabular_policy` runs such a table in the real environment and returns
:class:`~mbrl_drift.trajectories.Trajectories`, exactly like the agent's evaluation.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mbrl_drift.evaluate import run_episodes
from mbrl_drift.trajectories import Trajectories

Array = jax.Array


def rollout(
    key: Array,
    env: Any,
    env_params: Any,
    act: Callable[[Any, Array, Array, Any], tuple[Array, Array]],
    act_params: Any,
    num_episodes: int,
    max_steps: int | None = None,
) -> Trajectories:
  """Runs a policy function for ``num_episodes`` independent episodes.

  Each episode starts from ``env.reset`` and steps without auto-reset until it terminates or
  truncates; later steps are padding. Vmapped over episodes, ``lax.scan`` over steps; the
  layout of the result matches the agent's evaluation.

  Args:
    key: PRNG key.
    env: the environment (static); ``state_index(state)`` and ``position(state)`` are recorded
      when it has them (``-1`` and zeros otherwise).
    env_params: its parameters.
    act: static policy function ``act(act_params, key, obs, state) -> (action, nonfinite)``
      where ``nonfinite`` is a bool ``[]`` flagging an invalid policy output.
    act_params: the policy's parameters (a pytree, traced).
    num_episodes: ``N``, static.
    max_steps: ``T``, static number of scanned steps; ``int(env_params.max_steps)`` when
      ``None`` (the parameters must then be concrete).

  Returns:
    :class:`Trajectories` with ``N`` episodes padded to ``T`` steps.
  """
  if max_steps is None:
    max_steps = int(env_params.max_steps)
  return _rollout(key, env, env_params, act, act_params, num_episodes, max_steps)


@functools.partial(jax.jit, static_argnames=("env", "act", "num_episodes", "max_steps"))
def _rollout(key, env, env_params, act, act_params, num_episodes, max_steps):
  return run_episodes(key, env, env_params, lambda k, obs, state: act(act_params, k, obs, state),
                      num_episodes, max_steps)


def _tabular_act(env: Any):
  """The policy function of a ``[S, A]`` table in ``env`` (cached, so rollouts compile once)."""
  return _TABULAR_ACTS.setdefault(env, functools.partial(_act_from_table, env))


_TABULAR_ACTS: dict[Any, Callable] = {}


def _act_from_table(env, policy, key, obs, state):
  del obs
  row = policy[env.state_index(state)]
  bad = ~(jnp.all(jnp.isfinite(row)) & (jnp.sum(row) > 0))
  action = jax.random.categorical(key, jnp.log(row)).astype(jnp.int32)
  return jnp.where(bad, 0, action), bad


def rollout_tabular_policy(
    key: Array,
    env: Any,
    env_params: Any,
    policy: Array,
    num_episodes: int,
    max_steps: int | None = None,
) -> Trajectories:
  """Runs a tabular policy for ``num_episodes`` independent episodes of a grid world.

  Each episode starts from ``env.reset`` (set ``random_start=True`` in the parameters for
  random starts); at each step the action is drawn from ``policy[state_index]``. See
  :func:`rollout`.

  Args:
    key: PRNG key.
    env: a tabular environment with ``state_index(state)`` (e.g. ``GoalGrid``); static.
    env_params: its parameters.
    policy: ``[S, A]`` action probabilities (unnormalised weights are fine).
    num_episodes: ``N``, static.
    max_steps: ``T``, static; ``int(env_params.max_steps)`` when ``None``.

  Returns:
    :class:`Trajectories` with ``N`` episodes padded to ``T`` steps; ``nonfinite`` flags an
    episode that visited a state whose policy row is not a finite, non-zero distribution
    (action 0 is taken there).
  """
  return rollout(key, env, env_params, _tabular_act(env), jnp.asarray(policy, jnp.float32),
                 num_episodes, max_steps)


def uniform_table(num_states: int, num_actions: int) -> Array:
  """The uniform random policy, ``[S, A]``."""
  return jnp.full((num_states, num_actions), 1.0 / num_actions, jnp.float32)


def deterministic_table(actions: Any, num_actions: int) -> Array:
  """A deterministic policy from one action per state.

  Args:
    actions: ``[S]`` int action of each state.
    num_actions: ``A``.

  Returns:
    ``[S, A]`` one-hot policy.
  """
  return jax.nn.one_hot(jnp.asarray(actions, jnp.int32), num_actions, dtype=jnp.float32)


def random_deterministic_table(key: Array, num_states: int, num_actions: int) -> Array:
  """An aimless deterministic policy: an independent uniform action per state, ``[S, A]``.

  Followed from any start it walks into a cycle (often a wall bump) and stays there; it has
  zero action entropy but serves no goal.

  Args:
    key: PRNG key.
    num_states: ``S``.
    num_actions: ``A``.

  Returns:
    ``[S, A]`` one-hot policy.
  """
  actions = jax.random.randint(key, (num_states,), 0, num_actions)
  return deterministic_table(actions, num_actions)


def go_to_cell_table(mdp: Any, target: int) -> np.ndarray:
  """A deterministic policy that walks every state to ``target`` by a shortest path and stays.

  At ``target`` it takes an action that keeps it there (a move into a wall) when one exists,
  otherwise the first action; elsewhere it takes the first action (in index order) that
  shortens the deterministic-move distance to ``target``, never passing through a terminal
  state. States that cannot reach ``target`` take action 0. Computed with numpy on the host.

  Args:
    mdp: an ``envs.oracles.TabularMDP`` (uses ``next_state`` ``[S, A]`` and ``terminal``).
    target: tabular state index of the target cell.

  Returns:
    ``[S, A]`` float32 one-hot policy.
  """
  next_state = np.asarray(mdp.next_state)
  terminal = np.asarray(mdp.terminal)
  num_states, num_actions = next_state.shape
  distance = _distances_to(next_state, terminal, target)
  actions = np.zeros(num_states, dtype=np.int32)
  for state in range(num_states):
    successors = next_state[state]
    if state == target:
      staying = np.flatnonzero(successors == target)
      actions[state] = int(staying[0]) if staying.size else 0
      continue
    improving = [a for a in range(num_actions)
                 if distance[successors[a]] < distance[state]]
    actions[state] = improving[0] if improving else 0
  return np.eye(num_actions, dtype=np.float32)[actions]


def _distances_to(next_state: np.ndarray, terminal: np.ndarray, target: int) -> np.ndarray:
  """Fewest deterministic moves from every state to ``target`` (inf where impossible)."""
  num_states = next_state.shape[0]
  distance = np.full(num_states, np.inf)
  distance[target] = 0.0
  frontier = [target]
  while frontier:
    reached = []
    for state in range(num_states):
      if np.isfinite(distance[state]) or terminal[state]:
        continue
      if any(successor in frontier for successor in next_state[state]):
        reached.append(state)
    for state in reached:
      distance[state] = distance[frontier[0]] + 1.0
    frontier = reached
  return distance
