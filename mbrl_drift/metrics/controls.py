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

import collections
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
  return go_to_cells_table(mdp, [target])


TIE_BREAKS = ("first", "last", "uniform")


def go_to_cells_table(mdp: Any, targets: Any, cycle: bool = False,
                      tie_break: str = "first") -> np.ndarray:
  """A policy that walks every state to the nearest of ``targets`` by a shortest path.

  Elsewhere than at a target it takes a move that shortens the deterministic-move distance to
  the nearest target, never passing through a terminal state (so a goal among ``targets`` is
  approached without entering another goal). At a target it either stays (a move into a
  wall, when one exists; otherwise the first action) or, with ``cycle``, moves on to the next
  target of the list, so that ``targets`` is walked round as a cycle: ``cycle=True`` with two
  adjacent cells gives a policy that goes to a place and then shuttles between two cells.
  States that cannot reach a target take action 0. Computed with numpy on the host.

  Args:
    mdp: an ``envs.oracles.TabularMDP`` (uses ``next_state`` ``[S, A]`` and ``terminal``).
    targets: ``[M]`` tabular state indices (e.g. ``mdp.goal_states[[1, 2]]`` for "whichever
      of goals 1 and 2 is nearest", or one cell).
    cycle: walk round ``targets`` in list order instead of staying at the first one reached;
      each target must then be one move from the next (and the last from the first).
    tie_break: which of several shortening moves to take: ``"first"`` or ``"last"`` in
      action index order (deterministic), or ``"uniform"`` over all of them.

  Returns:
    ``[S, A]`` float32 policy (one-hot unless ``tie_break="uniform"``).

  Raises:
    ValueError: for an unknown ``tie_break``, no targets, or a ``cycle`` whose consecutive
      targets are not one move apart.
  """
  if tie_break not in TIE_BREAKS:
    raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
  targets = [int(t) for t in np.atleast_1d(np.asarray(targets))]
  if not targets:
    raise ValueError("go_to_cells_table needs at least one target state")
  next_state = np.asarray(mdp.next_state)
  terminal = np.asarray(mdp.terminal)
  num_states, num_actions = next_state.shape
  distance = _distances_to(next_state, terminal, targets)
  policy = np.zeros((num_states, num_actions), np.float32)
  for state in range(num_states):
    successors = next_state[state]
    if state in targets:
      if cycle:
        following = targets[(targets.index(state) + 1) % len(targets)]
        moves = np.flatnonzero(successors == following)
        if following != state and not moves.size:
          raise ValueError(f"cycle targets {targets}: state {following} is not one move from "
                           f"state {state}")
      else:
        moves = np.flatnonzero(successors == state)
      policy[state, int(moves[0]) if moves.size else 0] = 1.0
      continue
    improving = [a for a in range(num_actions) if distance[successors[a]] < distance[state]]
    if not improving:
      policy[state, 0] = 1.0
    elif tie_break == "uniform":
      policy[state, improving] = 1.0 / len(improving)
    else:
      policy[state, improving[0] if tie_break == "first" else improving[-1]] = 1.0
  return policy


def noisy_table(policy: Any, epsilon: float) -> Array:
  """``policy`` that takes a uniformly random action a share ``epsilon`` of the time.

  Args:
    policy: ``[S, A]`` action probabilities.
    epsilon: probability of a uniformly random action, in ``[0, 1]``.

  Returns:
    ``[S, A]`` float32 ``(1 - epsilon) * policy + epsilon / A``.

  Raises:
    ValueError: if ``epsilon`` is outside ``[0, 1]``.
  """
  if not 0.0 <= float(epsilon) <= 1.0:
    raise ValueError(f"epsilon must lie in [0, 1], got {epsilon!r}")
  policy = jnp.asarray(policy, jnp.float32)
  return (1.0 - epsilon) * policy + epsilon / policy.shape[-1]


def _distances_to(next_state: np.ndarray, terminal: np.ndarray, targets: list[int]
                  ) -> np.ndarray:
  """Fewest deterministic moves from every state to the nearest target (inf where impossible).

  Paths may end in, but never pass through, a terminal state.
  """
  num_states = next_state.shape[0]
  predecessors: list[set[int]] = [set() for _ in range(num_states)]
  for state in range(num_states):
    if not terminal[state]:
      for successor in next_state[state]:
        if successor != state:
          predecessors[int(successor)].add(state)
  distance = np.full(num_states, np.inf)
  queue = collections.deque()
  for target in targets:
    distance[target] = 0.0
    queue.append(target)
  while queue:
    state = queue.popleft()
    for predecessor in sorted(predecessors[state]):
      if not np.isfinite(distance[predecessor]):
        distance[predecessor] = distance[state] + 1.0
        queue.append(predecessor)
  return distance


def concatenate_episodes(*batches: Trajectories) -> Trajectories:
  """Episodes of several batches (equal ``T``) as one batch, in order: ``[N1 + N2 + ..., ...]``.

  Builds mixtures by construction, e.g. 61 episodes of an oracle and 3 of the uniform policy.
  """
  return jax.tree.map(lambda *leaves: jnp.concatenate(leaves, axis=0), *batches)
