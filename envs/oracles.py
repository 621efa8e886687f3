"""Exact tabular MDPs and planning oracles for grid worlds.

A grid world exports a :class:`TabularMDP` (``GoalGrid.tabular(params)``) with one reward table
per candidate goal, so that every oracle below can be asked "what would an agent that wants
goal ``k`` do?". Value iteration and soft value iteration are pure, jittable functions with a
fixed number of iterations; they vmap over ``goal`` and ``beta`` (and over batched MDPs).

Conventions (shared with :class:`envs.goal_grid.GoalGrid`):

* states are the non-wall cells in row-major order; actions are 0 up, 1 right, 2 down, 3 left;
* terminal states (goals and hazards) absorb: their transition rows are self-loops with zero
  reward and their value is 0, so the value of a state counts the reward collected until the
  episode ends (time-limit truncation is ignored: values are infinite-horizon discounted);
* with slip probability ``slip`` the chosen action is replaced by a uniformly random one, so
  ``P(s'|s,a) = (1 - slip) * det(s,a,s') + slip / |A| * sum_b det(s,b,s')``.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import pytree_dataclass

Array = jax.Array

#: Distance reported by :func:`shortest_path_distances` for a state that cannot reach the goal.
UNREACHABLE_DISTANCE = 1_000_000

DEFAULT_NUM_ITERS = 500


@pytree_dataclass
class TabularMDP:
  """A finite MDP with ``S`` states, ``A`` actions and ``K`` candidate reward functions.

  All fields are arrays (pytree leaves), so MDPs built from batched environment parameters
  batch too.

  Attributes:
    transitions: ``[S, A, S]`` float32, ``P(s'|s,a)`` with slip folded in; rows of terminal
      states are self-loops.
    rewards: ``[K, S, A]`` float32 expected immediate reward ``E[r | s, a]`` when goal ``k`` is
      the intended goal (0 at terminal states).
    terminal: ``[S]`` bool, True for absorbing states (goals and hazards).
    goal_states: ``[K]`` int32 state index of each goal.
    cells: ``[S, 2]`` int32 ``(row, col)`` of each state.
    next_state: ``[S, A]`` int32 deterministic successor of each move (no slip, no absorption).
    start_distribution: ``[S]`` float32 distribution of the first state of an episode.
  """

  transitions: Array
  rewards: Array
  terminal: Array
  goal_states: Array
  cells: Array
  next_state: Array
  start_distribution: Array

  @property
  def num_states(self) -> int:
    return self.transitions.shape[-1]

  @property
  def num_actions(self) -> int:
    return self.transitions.shape[-2]

  @property
  def num_goals(self) -> int:
    return self.rewards.shape[-3]


def slip_transitions(next_state: Array, terminal: Array, slip_prob: Array) -> Array:
  """Transition tensor of deterministic moves with action slip.

  ``P(s'|s,a) = (1 - slip) * det(s,a,s') + slip / |A| * sum_b det(s,b,s')``; terminal states
  absorb.

  Args:
    next_state: ``[S, A]`` int32 deterministic successor of each move.
    terminal: ``[S]`` bool absorbing states.
    slip_prob: ``[]`` probability that the action is replaced by a uniformly random one.

  Returns:
    ``[S, A, S]`` float32 transition probabilities.
  """
  num_states = next_state.shape[0]
  deterministic = jax.nn.one_hot(next_state, num_states, dtype=jnp.float32)
  slipped = jnp.mean(deterministic, axis=1, keepdims=True)
  transitions = (1.0 - slip_prob) * deterministic + slip_prob * slipped
  absorbing = jnp.broadcast_to(
      jnp.eye(num_states, dtype=jnp.float32)[:, None, :], transitions.shape)
  return jnp.where(terminal[:, None, None], absorbing, transitions)


def _q_backup(mdp: TabularMDP, goal: Array, gamma: Array, v: Array) -> Array:
  """``Q(s,a) = R_k(s,a) + gamma * sum_s' P(s'|s,a) V(s')``, zero at terminal states."""
  q = mdp.rewards[goal] + gamma * jnp.einsum("sat,t->sa", mdp.transitions, v)
  return jnp.where(mdp.terminal[:, None], 0.0, q)


def value_iteration(
    mdp: TabularMDP, goal: Array, gamma: float | Array,
    num_iters: int = DEFAULT_NUM_ITERS) -> tuple[Array, Array]:
  """Optimal values for goal ``goal`` by value iteration (Bellman 1957).

  ``V <- max_a [R_k(s,a) + gamma * sum_s' P(s'|s,a) V(s')]`` from ``V = 0``, ``num_iters`` times.

  Args:
    mdp: the tabular MDP.
    goal: ``[]`` int32 index of the intended goal (selects ``mdp.rewards[goal]``).
    gamma: discount factor in ``[0, 1)``.
    num_iters: number of Bellman backups (a Python int; the error shrinks like
      ``gamma ** num_iters``, and deterministic shortest-path problems are exact once it
      exceeds the longest shortest path).

  Returns:
    ``(v, q)``: ``v`` ``[S]`` and ``q`` ``[S, A]`` float32; both are 0 at terminal states.
  """
  gamma = jnp.asarray(gamma, jnp.float32)

  def body(_, v):
    return jnp.max(_q_backup(mdp, goal, gamma, v), axis=-1)

  v = jax.lax.fori_loop(0, num_iters, body, jnp.zeros(mdp.num_states, jnp.float32))
  q = _q_backup(mdp, goal, gamma, v)
  return jnp.max(q, axis=-1), q


def soft_value_iteration(
    mdp: TabularMDP, goal: Array, beta: float | Array, gamma: float | Array,
    num_iters: int = DEFAULT_NUM_ITERS,
    entropy_after_termination: bool = True) -> tuple[Array, Array, Array]:
  """Soft (maximum-entropy) value iteration and its Boltzmann policy for goal ``goal``.

  The soft Bellman backup of Ziebart (2010), "Modeling Purposeful Adaptive Behavior with the
  Principle of Maximum Causal Entropy", with inverse temperature ``beta``::

    Q(s,a) = R_k(s,a) + gamma * sum_s' P(s'|s,a) V(s')
    V(s)   = (1 / beta) * log sum_a exp(beta * Q(s,a))
    pi(a|s) = exp(beta * (Q(s,a) - V(s)))

  The entropy bonus makes the treatment of terminal states matter:

  * ``entropy_after_termination=True`` (default): terminal states are what the MDP says,
    zero-reward self-loops where every action is alike, so they keep earning the maximal
    entropy ``log|A| / beta`` per step: ``V(terminal) = log|A| / (beta * (1 - gamma))``. This is
    the fixed-horizon view of MacDermott et al. (2024), "Measuring Goal-Directedness", in which
    the agent keeps acting after reaching a goal. Ending an episode then never costs entropy,
    and the policy moves from uniform (``beta -> 0``) to optimal (``beta -> inf``).
  * ``False``: ``V(terminal) = 0`` (the episode really ends). For small ``beta`` the entropy
    bonus ``log|A| / beta`` per step can outweigh the goal reward, and the policy then *avoids*
    goals to keep collecting entropy.

  Either way ``pi`` concentrates on the optimal actions as ``beta -> inf``, and terminal states
  get the uniform policy.

  Args:
    mdp: the tabular MDP.
    goal: ``[]`` int32 index of the intended goal.
    beta: ``[]`` inverse temperature (rationality), ``> 0``.
    gamma: discount factor in ``[0, 1)``.
    num_iters: number of soft Bellman backups (a Python int).
    entropy_after_termination: the terminal-state convention above (a Python bool).

  Returns:
    ``(v, q, policy)``: ``v`` ``[S]``, ``q`` ``[S, A]`` and ``policy`` ``[S, A]`` float32 (rows
    sum to 1).
  """
  gamma = jnp.asarray(gamma, jnp.float32)
  beta = jnp.asarray(beta, jnp.float32)
  if entropy_after_termination:
    terminal_value = jnp.log(jnp.float32(mdp.num_actions)) / (beta * (1.0 - gamma))
  else:
    terminal_value = jnp.zeros((), jnp.float32)

  def backup(v):
    q = mdp.rewards[goal] + gamma * jnp.einsum("sat,t->sa", mdp.transitions, v)
    return jnp.where(mdp.terminal[:, None], gamma * terminal_value, q)

  def body(_, v):
    v = jax.nn.logsumexp(beta * backup(v), axis=-1) / beta
    return jnp.where(mdp.terminal, terminal_value, v)

  # Starting every state at the terminal value makes the entropy part exact from the start.
  v = jax.lax.fori_loop(0, num_iters, body, jnp.full(mdp.num_states, terminal_value))
  q = backup(v)
  policy = jax.nn.softmax(beta * q, axis=-1)
  v = jnp.where(mdp.terminal, terminal_value, jax.nn.logsumexp(beta * q, axis=-1) / beta)
  return v, q, policy


def greedy_policy(q: Array, atol: float = 1e-5) -> Array:
  """Uniform distribution over the actions whose value is within ``atol`` of the best.

  Args:
    q: ``[..., A]`` action values.
    atol: tolerance under which two action values count as tied (float32 round-off on equally
      long paths is far below it).

  Returns:
    ``[..., A]`` float32 policy.
  """
  best = q >= jnp.max(q, axis=-1, keepdims=True) - atol
  best = best.astype(jnp.float32)
  return best / jnp.sum(best, axis=-1, keepdims=True)


def optimal_policy(
    mdp: TabularMDP, goal: Array, gamma: float | Array,
    num_iters: int = DEFAULT_NUM_ITERS, atol: float = 1e-5) -> Array:
  """An optimal policy for goal ``goal``: uniform over the actions maximising ``Q*``.

  Args:
    mdp: the tabular MDP.
    goal: ``[]`` int32 index of the intended goal.
    gamma: discount factor in ``[0, 1)``.
    num_iters: number of value-iteration backups.
    atol: tie tolerance of :func:`greedy_policy`.

  Returns:
    ``[S, A]`` float32 policy (uniform at terminal states, where every action is tied).
  """
  _, q = value_iteration(mdp, goal, gamma, num_iters)
  return greedy_policy(q, atol)


def policy_for_all_goals(
    mdp: TabularMDP, gamma: float | Array, beta: float | Array | None = None,
    num_iters: int = DEFAULT_NUM_ITERS) -> Array:
  """The oracle policy of every candidate goal.

  Args:
    mdp: the tabular MDP.
    gamma: discount factor in ``[0, 1)``.
    beta: ``None`` for :func:`optimal_policy`, otherwise the inverse temperature of the
      Boltzmann policy of :func:`soft_value_iteration`.
    num_iters: number of backups.

  Returns:
    ``[K, S, A]`` float32: row ``k`` is the policy of an agent that wants goal ``k``.
  """
  goals = jnp.arange(mdp.num_goals, dtype=jnp.int32)
  if beta is None:
    return jax.vmap(lambda k: optimal_policy(mdp, k, gamma, num_iters))(goals)
  return jax.vmap(lambda k: soft_value_iteration(mdp, k, beta, gamma, num_iters)[2])(goals)


def shortest_path_distances(mdp: TabularMDP) -> np.ndarray:
  """Fewest deterministic moves from every state to every goal (breadth-first search, numpy).

  Paths ignore slip and may end in, but never pass through, a terminal state (another goal or
  a hazard ends the episode first). Call it outside ``jit`` on a single (unbatched) MDP.

  Args:
    mdp: the tabular MDP.

  Returns:
    ``[K, S]`` int32: ``distances[k, s]`` is the number of moves from ``s`` to goal ``k``; 0 at
    the goal itself and :data:`UNREACHABLE_DISTANCE` where the goal cannot be reached
    (including every other terminal state).
  """
  next_state = np.asarray(mdp.next_state)
  terminal = np.asarray(mdp.terminal)
  goal_states = np.asarray(mdp.goal_states)
  num_states = next_state.shape[0]
  predecessors: list[set[int]] = [set() for _ in range(num_states)]
  for state in range(num_states):
    if not terminal[state]:
      for successor in next_state[state]:
        predecessors[int(successor)].add(state)
  distances = np.full((len(goal_states), num_states), UNREACHABLE_DISTANCE, dtype=np.int32)
  for k, goal in enumerate(goal_states):
    distances[k, goal] = 0
    queue = collections.deque([int(goal)])
    while queue:
      state = queue.popleft()
      for predecessor in sorted(predecessors[state]):
        if distances[k, predecessor] == UNREACHABLE_DISTANCE:
          distances[k, predecessor] = distances[k, state] + 1
          queue.append(predecessor)
  return distances
