"""Outcome metrics of a batch of episodes: where they end, how efficiently, and where they stall.

Per-episode quantities (:func:`episode_outcomes`) are computed first, so that every aggregate can
carry a bootstrap confidence interval over episodes; :func:`outcome_metrics` pools them.

* **Goal-reach distribution**: ``p_k = P(episode ends at goal k)``, ``p_timeout =
  P(not terminated)``, ``p_other = P(terminated without a goal)`` (hazards).
* **SPL** per goal (Anderson et al. 2018, "On Evaluation of Embodied Navigation Agents"):
  ``mean_n success_nk * l_nk / max(l_nk, p_n)`` with ``l_nk`` the shortest path length from the
  episode's start to goal ``k`` and ``p_n`` the path length taken (steps on a grid, travelled
  distance in continuous space).
* **Path efficiency**: ``d(start, end) / max(p, 1)``, the shortest distance between where the
  episode started and where it ended over the path length taken (1 for a straight pursuit;
  near 0 for wandering that goes nowhere).
* **Revisit rate**: share of steps arriving at a cell already visited in the episode; **stall
  rate**: share of steps that do not change the cell; **loop rate**: share of episodes with at
  least one revisit.
* **Attractors** of timed-out episodes: over the last ``tail`` positions of an episode (its final
  quarter by default), the smallest period ``p`` with ``s_t = s_{t-p}`` throughout (1 = a fixed
  point, e.g. pushing into a wall; 0 = no cycle, i.e. still wandering), the number of distinct
  cells, and the distance from the nearest of those cells to each goal.
* **Endpoint dispersion**: over the final cells of all episodes, the number of distinct
  endpoints, the share of the most common one and the entropy (bits) of their distribution.
* **Pursuit of a target set** ``T`` of cells (one goal, several goals, or a place: the cells of
  a short cycle the episodes settle in), :func:`target_pursuit`: an episode *arrives* when it
  starts outside ``T`` and ends in ``T``; its *efficiency* is the SPL towards the set,
  ``d_T(s_0) / max(d_T(s_0), tau)`` with ``d_T`` the distance to the nearest cell of ``T`` and
  ``tau`` the first step in ``T`` (Anderson et al. 2018 with a set as the goal). For a single
  goal this is exactly the goal's success and SPL. An episode that never leaves its start cell
  never arrives anywhere, so a policy that does not move pursues nothing.
* **Places** (:func:`episode_places`, :func:`dominant_place`): the cells of the final cycle of
  each timed-out episode whose last positions repeat with a period of at most ``max_period``
  (a fixed point, a shuttle between two cells, ...), and the cycle most episodes share.
"""

from __future__ import annotations

import collections
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mbrl_drift.trajectories import Trajectories

Array = jax.Array

#: Distance between cells that cannot reach one another.
UNREACHABLE = np.inf


def cell_distances(mdp) -> np.ndarray:
  """Fewest deterministic moves between every pair of tabular states (numpy, on the host).

  Paths follow ``mdp.next_state`` and may end in, but never leave, a terminal state, as in
  ``envs.oracles.shortest_path_distances`` (which equals ``cell_distances(mdp)[:,
  goal_states].T``).

  Args:
    mdp: an ``envs.oracles.TabularMDP`` (concrete).

  Returns:
    ``[S, S]`` float32: ``distances[i, j]`` moves from ``i`` to ``j``, ``inf`` if impossible.
  """
  next_state = np.asarray(mdp.next_state)
  terminal = np.asarray(mdp.terminal)
  num_states = next_state.shape[0]
  successors = [sorted({int(s) for s in next_state[i]} - {i}) if not terminal[i] else []
                for i in range(num_states)]
  distances = np.full((num_states, num_states), UNREACHABLE, dtype=np.float32)
  for source in range(num_states):
    distances[source, source] = 0.0
    queue = collections.deque([source])
    while queue:
      state = queue.popleft()
      for successor in successors[state]:
        if distances[source, successor] == UNREACHABLE:
          distances[source, successor] = distances[source, state] + 1.0
          queue.append(successor)
  return distances


def final_index(trajectories: Trajectories) -> Array:
  """Tabular state index at the end of every episode, ``[N]`` int32."""
  return jnp.take_along_axis(
      trajectories.state_index, trajectories.length[:, None], axis=1)[:, 0]


def _revisits(states: Array, length: Array) -> tuple[Array, Array]:
  """Per episode: steps arriving at an already visited cell, and steps that do not move."""
  times = jnp.arange(states.shape[0])
  in_episode = times <= length
  same = states[:, None] == states[None, :]
  earlier = times[None, :] < times[:, None]
  revisit = jnp.any(same & earlier & in_episode[None, :], axis=1) & in_episode & (times > 0)
  stalled = jnp.concatenate([jnp.zeros(1, bool), states[1:] == states[:-1]]) & in_episode
  return jnp.sum(revisit), jnp.sum(stalled & (times > 0))


def _attractor(states: Array, length: Array, tail: int) -> tuple[Array, Array, Array]:
  """Period, distinct cells and a membership mask of the last ``tail`` positions."""
  num_times = states.shape[0]
  times = jnp.arange(num_times)
  start = jnp.maximum(length - tail + 1, 0)
  in_tail = (times >= start) & (times <= length)
  periods = jnp.arange(1, max(tail // 2, 1) + 1)

  def periodic(period):
    shifted = states[jnp.clip(times - period, 0, num_times - 1)]
    checked = in_tail & (times - period >= start)
    return jnp.all(jnp.where(checked, states == shifted, True)) & jnp.any(checked)

  is_periodic = jax.vmap(periodic)(periods)
  period = jnp.where(jnp.any(is_periodic), periods[jnp.argmax(is_periodic)], 0)
  same = states[:, None] == states[None, :]
  earlier = times[None, :] < times[:, None]
  first_in_tail = in_tail & ~jnp.any(same & earlier & in_tail[None, :], axis=1)
  return period, jnp.sum(first_in_tail), in_tail


@functools.partial(jax.jit, static_argnames=("tail",))
def episode_outcomes(
    trajectories: Trajectories,
    goal_distances: Array,
    distances: Array,
    goal_states: Array,
    tail: int | None = None,
) -> dict[str, Array]:
  """Per-episode outcome quantities of a tabular environment.

  Args:
    trajectories: ``N`` episodes padded to ``T`` steps, with ``state_index``.
    goal_distances: ``[K, S]`` shortest path lengths from each state to each goal
      (``envs.oracles.shortest_path_distances``).
    distances: ``[S, S]`` distances between cells (:func:`cell_distances`).
    goal_states: ``[K]`` state index of each goal.
    tail: positions examined for attractors; ``max(T // 4, 4)`` by default (static).

  Returns:
    Dict of per-episode arrays: ``success [N, K]`` (bool), ``spl [N, K]``, ``timeout``,
    ``other_end``, ``return``, ``length``, ``path_efficiency``, ``revisit_rate``,
    ``stall_rate``, ``looped`` ``[N]``; for the attractor analysis ``attractor_period``
    ``[N]`` int32, ``attractor_cells`` ``[N]`` and ``attractor_goal_distance [N, K]`` (meaningful
    on timeouts); ``endpoint [N]`` int32 final cell.
  """
  num_steps = trajectories.valid.shape[1]
  if tail is None:
    tail = max(num_steps // 4, 4)
  num_goals = goal_distances.shape[0]
  length = trajectories.length
  states = trajectories.state_index
  start = states[:, 0]
  endpoint = final_index(trajectories)
  steps = jnp.maximum(length, 1).astype(jnp.float32)

  # -- goal reach and SPL
  goals = jnp.arange(num_goals)
  success = trajectories.reached_goal[:, None] == goals[None, :]
  shortest = jnp.asarray(goal_distances, jnp.float32).T[start]  # [N, K]
  spl = jnp.where(success, shortest / jnp.maximum(shortest, length[:, None]), 0.0)
  spl = jnp.where(success & (length[:, None] == 0), 1.0, spl)

  # -- path shape
  displacement = jnp.asarray(distances, jnp.float32)[start, endpoint]
  efficiency = jnp.clip(jnp.where(jnp.isfinite(displacement), displacement, 0.0) / steps, 0, 1)
  revisits, stalls = jax.vmap(_revisits)(states, length)

  # -- attractors
  period, tail_cells, in_tail = jax.vmap(lambda s, n: _attractor(s, n, tail))(states, length)
  to_goals = jnp.asarray(distances, jnp.float32)[:, goal_states]  # [S, K]
  attractor_goal_distance = jnp.min(
      jnp.where(in_tail[..., None], to_goals[states], jnp.inf), axis=1)

  return {
      "success": success,
      "spl": spl,
      "timeout": ~trajectories.terminated,
      "other_end": trajectories.terminated & (trajectories.reached_goal < 0),
      "return": trajectories.episode_return,
      "length": length.astype(jnp.float32),
      "path_efficiency": efficiency,
      "revisit_rate": revisits / steps,
      "stall_rate": stalls / steps,
      "looped": revisits > 0,
      "attractor_period": period.astype(jnp.int32),
      "attractor_cells": tail_cells.astype(jnp.float32),
      "attractor_goal_distance": attractor_goal_distance,
      "endpoint": endpoint.astype(jnp.int32),
  }


def endpoint_dispersion(endpoints: Array, num_cells: int, mask: Array | None = None
                        ) -> dict[str, Array]:
  """How spread out the episodes' final cells are.

  Args:
    endpoints: ``[N]`` int32 final cell of each episode.
    num_cells: number of cells ``S`` (static).
    mask: optional ``[N]`` bool selecting the episodes to count (e.g. timeouts).

  Returns:
    ``{"distinct": [], "top_share": [], "top_cell": [] int32, "entropy_bits": [],
    "normalised_entropy": []}``; ``normalised_entropy`` divides by ``log2(min(n, S))`` for
    ``n`` counted episodes (0 when fewer than two). With no counted episode, shares are 0 and
    ``top_cell`` is -1.
  """
  weights = jnp.ones(endpoints.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
  counts = jnp.zeros(num_cells, jnp.float32).at[jnp.clip(endpoints, 0, num_cells - 1)].add(
      weights)
  total = jnp.sum(counts)
  share = counts / jnp.maximum(total, 1.0)
  entropy = jnp.maximum(
      -jnp.sum(jnp.where(share > 0, share * jnp.log2(jnp.where(share > 0, share, 1.0)), 0.0)),
      0.0)
  max_entropy = jnp.log2(jnp.maximum(jnp.minimum(total, num_cells), 1.0))
  return {
      "distinct": jnp.sum(counts > 0).astype(jnp.float32),
      "top_share": jnp.max(share),
      "top_cell": jnp.where(total > 0, jnp.argmax(counts), -1).astype(jnp.int32),
      "entropy_bits": entropy,
      "normalised_entropy": jnp.where(max_entropy > 0, entropy / jnp.maximum(max_entropy, 1e-12),
                                      0.0),
  }


def _masked_mean(values: Array, mask: Array) -> Array:
  mask = mask.astype(jnp.float32)
  mask = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
  total = jnp.sum(mask, axis=0)
  return jnp.where(total > 0, jnp.sum(values * mask, axis=0) / jnp.maximum(total, 1.0), jnp.nan)


def outcome_metrics(per_episode: dict[str, Array], goal_names: Sequence[str], num_cells: int
                    ) -> dict[str, Array]:
  """Pools per-episode outcomes into a flat metric dict.

  Args:
    per_episode: output of :func:`episode_outcomes`.
    goal_names: name of each goal (``K`` entries), used in keys.
    num_cells: number of tabular states ``S``.

  Returns:
    Flat ``{"group/name": []}`` dict: ``outcome/p_<goal>``, ``outcome/p_timeout``,
    ``outcome/p_other``, ``outcome/spl_<goal>``, ``outcome/return``, ``outcome/length``,
    ``outcome/path_efficiency``, ``outcome/revisit_rate``, ``outcome/stall_rate``,
    ``outcome/loop_rate``; ``attractor/*`` over timed-out episodes (NaN when there is none):
    ``fixed_point_rate``, ``cycle_rate``, ``cycle_length`` (mean period of the cycling ones),
    ``tail_cells``, ``goal_distance_<goal>``, ``top_share``, ``top_cell``; and ``endpoint/*``
    over all episodes: ``distinct``, ``top_share``, ``top_cell``, ``entropy_bits``,
    ``normalised_entropy``.
  """
  return _outcome_metrics(per_episode, tuple(goal_names), int(num_cells))


@functools.partial(jax.jit, static_argnames=("goal_names", "num_cells"))
def _outcome_metrics(per_episode, goal_names, num_cells):
  metrics = {}
  success = per_episode["success"].astype(jnp.float32)
  for k, name in enumerate(goal_names):
    metrics[f"outcome/p_{name}"] = jnp.mean(success[:, k])
  metrics["outcome/p_timeout"] = jnp.mean(per_episode["timeout"].astype(jnp.float32))
  metrics["outcome/p_other"] = jnp.mean(per_episode["other_end"].astype(jnp.float32))
  for k, name in enumerate(goal_names):
    metrics[f"outcome/spl_{name}"] = jnp.mean(per_episode["spl"][:, k])
  for key in ("return", "length", "path_efficiency", "revisit_rate", "stall_rate"):
    metrics[f"outcome/{key}"] = jnp.mean(per_episode[key])
  metrics["outcome/loop_rate"] = jnp.mean(per_episode["looped"].astype(jnp.float32))

  timeout = per_episode["timeout"]
  period = per_episode["attractor_period"]
  metrics["attractor/fixed_point_rate"] = _masked_mean((period == 1).astype(jnp.float32), timeout)
  metrics["attractor/cycle_rate"] = _masked_mean((period >= 1).astype(jnp.float32), timeout)
  metrics["attractor/cycle_length"] = _masked_mean(period.astype(jnp.float32),
                                                   timeout & (period >= 1))
  metrics["attractor/tail_cells"] = _masked_mean(per_episode["attractor_cells"], timeout)
  goal_distance = _masked_mean(per_episode["attractor_goal_distance"], timeout)
  for k, name in enumerate(goal_names):
    metrics[f"attractor/goal_distance_{name}"] = goal_distance[k]
  stalled_at = endpoint_dispersion(per_episode["endpoint"], num_cells, timeout)
  metrics["attractor/top_share"] = stalled_at["top_share"]
  metrics["attractor/top_cell"] = stalled_at["top_cell"]
  for key, value in endpoint_dispersion(per_episode["endpoint"], num_cells).items():
    metrics[f"endpoint/{key}"] = value
  return metrics


def position_cells(position: Array, bins: int, low: float = 0.0, high: float = 1.0) -> Array:
  """Discretises continuous positions into a ``bins x bins`` grid of cells.

  Args:
    position: ``[..., 2]`` positions inside ``[low, high]^2``.
    bins: cells per axis.
    low: lower bound of both coordinates.
    high: upper bound of both coordinates.

  Returns:
    ``[...]`` int32 cell index ``row * bins + col`` in ``0 .. bins^2 - 1``.
  """
  scaled = (position - low) / (high - low) * bins
  index = jnp.clip(jnp.floor(scaled).astype(jnp.int32), 0, bins - 1)
  return index[..., 0] * bins + index[..., 1]


@functools.partial(jax.jit, static_argnames=("bins", "tail"))
def continuous_episode_outcomes(
    trajectories: Trajectories,
    start_goal_distances: Array,
    end_goal_distances: Array,
    bins: int = 10,
    tail: int | None = None,
) -> dict[str, Array]:
  """Per-episode outcome quantities of a continuous navigation task (e.g. PointGoals).

  As :func:`episode_outcomes`, with these continuous counterparts: the path length is the
  travelled distance ``sum_t ||x_{t+1} - x_t||``; ``l_k`` is the geodesic distance from the
  start to goal ``k``; path efficiency is ``||x_end - x_start|| / path length`` (straight-line
  displacement); revisits, stalls, attractors and endpoints use :func:`position_cells` on the
  unit square with ``bins`` cells per axis; ``attractor_goal_distance`` is the distance from
  the final position to each goal.

  Args:
    trajectories: ``N`` episodes with ``position`` ``[N, T + 1, 2]`` in ``[0, 1]^2``.
    start_goal_distances: ``[N, K]`` shortest path length from each start to each goal.
    end_goal_distances: ``[N, K]`` distance from each final position to each goal.
    bins: cells per axis of the discretisation (static).
    tail: positions examined for attractors; ``max(T // 4, 4)`` by default (static).

  Returns:
    The per-episode dict of :func:`episode_outcomes` (``endpoint`` is a cell of the
    discretisation).
  """
  num_steps = trajectories.valid.shape[1]
  if tail is None:
    tail = max(num_steps // 4, 4)
  num_goals = start_goal_distances.shape[1]
  length = trajectories.length
  position = trajectories.position
  cells = position_cells(position, bins)
  step_length = jnp.linalg.norm(position[:, 1:] - position[:, :-1], axis=-1)
  path_length = jnp.sum(jnp.where(trajectories.valid, step_length, 0.0), axis=1)
  start = position[:, 0]
  end = jnp.take_along_axis(position, length[:, None, None], axis=1)[:, 0]
  steps = jnp.maximum(length, 1).astype(jnp.float32)

  success = trajectories.reached_goal[:, None] == jnp.arange(num_goals)[None, :]
  shortest = jnp.asarray(start_goal_distances, jnp.float32)
  ratio = shortest / jnp.maximum(jnp.maximum(shortest, path_length[:, None]), 1e-12)
  spl = jnp.where(success, jnp.where(shortest > 0, ratio, 1.0), 0.0)
  displacement = jnp.linalg.norm(end - start, axis=-1)
  efficiency = jnp.clip(displacement / jnp.maximum(path_length, 1e-12), 0.0, 1.0)
  efficiency = jnp.where(path_length > 0, efficiency, 0.0)
  revisits, stalls = jax.vmap(_revisits)(cells, length)
  period, tail_cells, _ = jax.vmap(lambda s, n: _attractor(s, n, tail))(cells, length)
  return {
      "success": success,
      "spl": spl,
      "timeout": ~trajectories.terminated,
      "other_end": trajectories.terminated & (trajectories.reached_goal < 0),
      "return": trajectories.episode_return,
      "length": length.astype(jnp.float32),
      "path_efficiency": efficiency,
      "revisit_rate": revisits / steps,
      "stall_rate": stalls / steps,
      "looped": revisits > 0,
      "attractor_period": period.astype(jnp.int32),
      "attractor_cells": tail_cells.astype(jnp.float32),
      "attractor_goal_distance": jnp.asarray(end_goal_distances, jnp.float32),
      "endpoint": jnp.take_along_axis(cells, length[:, None], axis=1)[:, 0].astype(jnp.int32),
  }


def set_distances(distances: Array, target: Array) -> Array:
  """Distance from every cell to the nearest cell of a target set.

  Args:
    distances: ``[S, S]`` distances between cells (:func:`cell_distances`).
    target: ``[S]`` bool membership of the set.

  Returns:
    ``[S]`` float32 (``inf`` where no cell of the set can be reached, or the set is empty).
  """
  distances = jnp.asarray(distances, jnp.float32)
  return jnp.min(jnp.where(target[None, :], distances, jnp.inf), axis=1)


@jax.jit
def target_pursuit(trajectories: Trajectories, target: Array, distances: Array
                   ) -> dict[str, Array]:
  """Per-episode pursuit of a target set of cells (see the module docstring).

  Args:
    trajectories: ``N`` episodes of a tabular environment.
    target: ``[S]`` bool membership of the target set (a goal cell, several goal cells, or
      the cells of a place).
    distances: ``[S, S]`` distances between cells.

  Returns:
    ``{"arrived": [N] bool, "efficiency": [N] float32, "start_distance": [N] float32}``:
    whether the episode starts outside the set and ends in it, its SPL towards the set (0 when
    it does not arrive) and the distance from its start to the set.
  """
  target = jnp.asarray(target, bool)
  num_states = target.shape[0]
  states = jnp.clip(trajectories.state_index, 0, num_states - 1)
  length = trajectories.length
  times = jnp.arange(states.shape[1])
  inside = target[states] & (times[None, :] <= length[:, None])
  start_in = inside[:, 0]
  end_in = target[jnp.clip(final_index(trajectories), 0, num_states - 1)]
  arrived = ~start_in & end_in
  first = jnp.argmax(inside, axis=1).astype(jnp.float32)
  start_distance = set_distances(distances, target)[states[:, 0]]
  efficiency = jnp.where(
      arrived, start_distance / jnp.maximum(jnp.maximum(start_distance, first), 1.0), 0.0)
  return {"arrived": arrived, "efficiency": efficiency, "start_distance": start_distance}


def episode_places(trajectories: Trajectories, num_cells: int, max_period: int = 4,
                   tail: int | None = None) -> Array:
  """The cells of the final short cycle of each timed-out episode.

  Args:
    trajectories: ``N`` episodes of a tabular environment.
    num_cells: ``S`` (static).
    max_period: longest cycle that counts as a place (static; 1 is a fixed point, 2 a shuttle
      between two cells).
    tail: final positions that must repeat with the period; ``max(T // 4, 4)`` by default, as
      in :func:`episode_outcomes` (static).

  Returns:
    ``[N, S]`` bool: the cells visited in the last ``period`` steps of each timed-out episode
    whose tail is periodic with a period of at most ``max_period``; no cell otherwise (an
    episode that ended at a goal or hazard, or still wanders).
  """
  return _episode_places(trajectories, int(num_cells), int(max_period), tail)


@functools.partial(jax.jit, static_argnames=("num_cells", "max_period", "tail"))
def _episode_places(trajectories, num_cells, max_period, tail):
  num_steps = trajectories.valid.shape[1]
  if tail is None:
    tail = max(num_steps // 4, 4)
  states = jnp.clip(trajectories.state_index, 0, num_cells - 1)
  length = trajectories.length
  period, _, _ = jax.vmap(lambda s, n: _attractor(s, n, tail))(states, length)
  has_place = (~trajectories.terminated) & (period >= 1) & (period <= max_period)
  times = jnp.arange(states.shape[1])
  in_cycle = ((times[None, :] > (length - period)[:, None]) & (times[None, :] <= length[:, None])
              & has_place[:, None])
  cells = jax.nn.one_hot(states, num_cells, dtype=bool) & in_cycle[..., None]
  return jnp.any(cells, axis=1)


@jax.jit
def dominant_place(places: Array) -> tuple[Array, Array]:
  """The place (cycle) that most episodes settle in.

  Args:
    places: ``[N, S]`` bool from :func:`episode_places`.

  Returns:
    ``(place [S] bool, share [])``: the most common non-empty cell set (the first episode's in
    a tie; empty when no episode has a place) and the share of episodes whose place it is.
  """
  nonempty = jnp.any(places, axis=1)
  same = jnp.all(places[:, None, :] == places[None, :, :], axis=-1) & nonempty[None, :]
  counts = jnp.where(nonempty, jnp.sum(same, axis=1), 0)
  best = jnp.argmax(counts)
  num_episodes = places.shape[0]
  return places[best] & nonempty[best], counts[best] / jnp.maximum(num_episodes, 1)


__all__ = [
    "cell_distances",
    "dominant_place",
    "episode_places",
    "set_distances",
    "target_pursuit",
    "continuous_episode_outcomes",
    "position_cells",
    "endpoint_dispersion",
    "episode_outcomes",
    "final_index",
    "outcome_metrics",
]
