"""Outcome metrics on hand-built episodes with known answers, and on oracle rollouts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import oracles
from envs.goal_grid import GoalGrid
from mbrl_drift.metrics import controls
from mbrl_drift.metrics import outcomes
from mbrl_drift.trajectories import Trajectories

# A corridor: state 0 is goal A, states 1-3 floor, state 4 goal B.
CORRIDOR = """
#######
#A...B#
#######
"""
NUM_STEPS = 8


def make_trajectories(paths, reached_goal, terminated, returns, cells):
  """Trajectories from explicit state sequences (each ``length + 1`` states long)."""
  num_steps = NUM_STEPS
  state_index = np.array([p + [p[-1]] * (num_steps + 1 - len(p)) for p in paths], np.int32)
  length = np.array([len(p) - 1 for p in paths], np.int32)
  valid = np.arange(num_steps)[None, :] < length[:, None]
  n = len(paths)
  return Trajectories(
      obs=jnp.zeros((n, num_steps + 1, 1)),
      action=jnp.zeros((n, num_steps), jnp.int32),
      reward=jnp.zeros((n, num_steps)),
      valid=jnp.asarray(valid),
      length=jnp.asarray(length),
      episode_return=jnp.asarray(returns, jnp.float32),
      terminated=jnp.asarray(terminated),
      reached_goal=jnp.asarray(reached_goal, jnp.int32),
      state_index=jnp.asarray(state_index),
      position=jnp.asarray(np.asarray(cells, np.float32)[state_index]),
      nonfinite=jnp.zeros(n, bool),
  )


@pytest.fixture(scope="module")
def corridor():
  env = GoalGrid(layout=CORRIDOR, random_start=True)
  mdp = env.tabular(env.default_params)
  distances = outcomes.cell_distances(mdp)
  goal_distances = jnp.asarray(oracles.shortest_path_distances(mdp), jnp.float32)
  trajectories = make_trajectories(
      paths=[[2, 1, 0],                     # straight to A
             [2, 3, 2, 1, 0],               # detour, then A
             [1] * 9,                       # stuck in place: timeout
             [2, 3, 2, 3, 2, 3, 2, 3, 2]],  # two-cycle: timeout
      reached_goal=[0, 0, -1, -1],
      terminated=[True, True, False, False],
      returns=[1.0, 0.5, 0.0, 0.0],
      cells=env.state_cells)
  per_episode = outcomes.episode_outcomes(trajectories, goal_distances, jnp.asarray(distances),
                                          mdp.goal_states)
  metrics = outcomes.outcome_metrics(per_episode, env.goal_names, env.num_states)
  return env, mdp, distances, per_episode, metrics


def test_cell_distances_agree_with_the_oracle_shortest_paths():
  for name in ("GoalGrid-FourRooms", "GoalGrid-ForkMaze"):
    env, params = envs.make(name)
    mdp = env.tabular(params)
    distances = outcomes.cell_distances(mdp)
    expected = oracles.shortest_path_distances(mdp).astype(np.float32)
    expected[expected == oracles.UNREACHABLE_DISTANCE] = np.inf
    np.testing.assert_array_equal(distances[:, np.asarray(mdp.goal_states)].T, expected)
    assert np.all(np.diag(distances) == 0)


def test_corridor_distances(corridor):
  _, _, distances, _, _ = corridor
  np.testing.assert_array_equal(distances[2], [2, 1, 0, 1, 2])
  # Goals are terminal: nothing leaves them.
  assert np.isinf(distances[0, 1]) and distances[1, 0] == 1


def test_goal_reach_distribution_and_spl(corridor):
  _, _, _, per_episode, metrics = corridor
  assert float(metrics["outcome/p_A"]) == 0.5
  assert float(metrics["outcome/p_B"]) == 0.0
  assert float(metrics["outcome/p_timeout"]) == 0.5
  assert float(metrics["outcome/p_other"]) == 0.0
  np.testing.assert_allclose(per_episode["spl"][:, 0], [1.0, 0.5, 0.0, 0.0])
  np.testing.assert_allclose(metrics["outcome/spl_A"], 0.375)
  assert float(metrics["outcome/spl_B"]) == 0.0
  np.testing.assert_allclose(metrics["outcome/return"], 0.375)
  np.testing.assert_allclose(metrics["outcome/length"], (2 + 4 + 8 + 8) / 4)


def test_path_shape(corridor):
  _, _, _, per_episode, metrics = corridor
  np.testing.assert_allclose(per_episode["path_efficiency"], [1.0, 0.5, 0.0, 0.0])
  np.testing.assert_allclose(per_episode["revisit_rate"], [0.0, 0.25, 1.0, 7.0 / 8.0])
  np.testing.assert_allclose(per_episode["stall_rate"], [0.0, 0.0, 1.0, 0.0])
  np.testing.assert_array_equal(per_episode["looped"], [False, True, True, True])
  np.testing.assert_allclose(metrics["outcome/loop_rate"], 0.75)


def test_attractors_of_timed_out_episodes(corridor):
  _, _, _, per_episode, metrics = corridor
  np.testing.assert_array_equal(per_episode["attractor_period"][2:], [1, 2])
  np.testing.assert_array_equal(per_episode["attractor_cells"][2:], [1, 2])
  np.testing.assert_allclose(metrics["attractor/fixed_point_rate"], 0.5)
  np.testing.assert_allclose(metrics["attractor/cycle_rate"], 1.0)
  np.testing.assert_allclose(metrics["attractor/cycle_length"], 1.5)
  np.testing.assert_allclose(metrics["attractor/tail_cells"], 1.5)
  # Nearest attractor cell to A: cell 1 (1 move) and cell 2 (2 moves); to B: 3 and 1.
  np.testing.assert_allclose(metrics["attractor/goal_distance_A"], 1.5)
  np.testing.assert_allclose(metrics["attractor/goal_distance_B"], 2.0)
  np.testing.assert_allclose(metrics["attractor/top_share"], 0.5)


def test_per_episode_outcomes_vmap_over_conditions(corridor):
  # Several conditions (e.g. fault severities) evaluated at once carry a leading axis.
  env, mdp, distances, per_episode, _ = corridor
  first = make_trajectories([[2, 1, 0], [1] * 9], [0, -1], [True, False], [1.0, 0.0],
                            env.state_cells)
  second = make_trajectories([[2, 3, 4], [2, 3, 2, 1, 0]], [1, 0], [True, True], [1.0, 0.5],
                             env.state_cells)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), first, second)
  goal_distances = jnp.asarray(oracles.shortest_path_distances(mdp), jnp.float32)
  batched = jax.vmap(lambda t: outcomes.episode_outcomes(
      t, goal_distances, jnp.asarray(distances), mdp.goal_states))(stacked)
  for index, single in enumerate((first, second)):
    expected = outcomes.episode_outcomes(single, goal_distances, jnp.asarray(distances),
                                         mdp.goal_states)
    for key, value in expected.items():
      np.testing.assert_allclose(batched[key][index], value, err_msg=key)


def test_wandering_tail_has_no_period():
  attractor = jax.jit(outcomes._attractor, static_argnums=2)
  states = jnp.array([0, 1, 2, 3, 4, 5, 6, 7, 8], jnp.int32)
  period, cells, _ = attractor(states, jnp.int32(8), 4)
  assert int(period) == 0 and int(cells) == 4
  cycle = jnp.array([0, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3], jnp.int32)
  period, cells, _ = attractor(cycle, jnp.int32(12), 8)
  assert int(period) == 3 and int(cells) == 3


def test_endpoint_dispersion(corridor):
  _, _, _, _, metrics = corridor
  assert float(metrics["endpoint/distinct"]) == 3
  assert float(metrics["endpoint/top_share"]) == 0.5
  assert int(metrics["endpoint/top_cell"]) == 0
  np.testing.assert_allclose(metrics["endpoint/entropy_bits"], 1.5, rtol=1e-6)
  np.testing.assert_allclose(metrics["endpoint/normalised_entropy"], 0.75, rtol=1e-6)
  single = outcomes.endpoint_dispersion(jnp.array([3, 3, 3]), 5)
  assert float(single["entropy_bits"]) == 0.0 and float(single["top_share"]) == 1.0
  empty = outcomes.endpoint_dispersion(jnp.array([3, 3]), 5, mask=jnp.array([False, False]))
  assert int(empty["top_cell"]) == -1 and float(empty["top_share"]) == 0.0


def test_attractor_metrics_are_nan_without_timeouts(corridor):
  env, mdp, distances, _, _ = corridor
  trajectories = make_trajectories([[2, 1, 0]], [0], [True], [1.0], env.state_cells)
  per_episode = outcomes.episode_outcomes(
      trajectories, jnp.asarray(oracles.shortest_path_distances(mdp), jnp.float32),
      jnp.asarray(distances), mdp.goal_states)
  metrics = outcomes.outcome_metrics(per_episode, env.goal_names, env.num_states)
  assert np.isnan(float(metrics["attractor/cycle_rate"]))
  assert float(metrics["outcome/p_A"]) == 1.0


def test_oracle_rollouts_have_perfect_spl_and_efficiency():
  env, _ = envs.make("GoalGrid-FourRooms")
  params = env.make_params(random_start=True)
  mdp = env.tabular(params)
  goal_distances = jnp.asarray(oracles.shortest_path_distances(mdp), jnp.float32)
  distances = jnp.asarray(outcomes.cell_distances(mdp))
  policy = jax.jit(oracles.policy_for_all_goals)(mdp, 0.95)[2]
  trajectories = controls.rollout_tabular_policy(jax.random.key(0), env, params, policy, 64)
  per_episode = outcomes.episode_outcomes(trajectories, goal_distances, distances,
                                          mdp.goal_states)
  metrics = outcomes.outcome_metrics(per_episode, env.goal_names, env.num_states)
  np.testing.assert_allclose(metrics["outcome/p_C"], 1.0)
  np.testing.assert_allclose(metrics["outcome/spl_C"], 1.0)
  np.testing.assert_allclose(metrics["outcome/path_efficiency"], 1.0)
  assert float(metrics["outcome/revisit_rate"]) == 0.0
  assert int(metrics["endpoint/top_cell"]) == int(mdp.goal_states[2])
  # The rollout fills every field consistently.
  np.testing.assert_array_equal(
      trajectories.length, jnp.sum(trajectories.valid, axis=1))
  np.testing.assert_allclose(trajectories.episode_return, jnp.sum(trajectories.reward, axis=1),
                             rtol=1e-5)
  np.testing.assert_array_equal(
      trajectories.position, jnp.asarray(env.state_cells, jnp.float32)[trajectories.state_index])
  assert not bool(jnp.any(trajectories.nonfinite))


def test_rollout_flags_invalid_policy_rows():
  env, _ = envs.make("GoalGrid-ForkMaze")
  params = env.default_params
  policy = jnp.full((env.num_states, 4), jnp.nan)
  trajectories = controls.rollout_tabular_policy(jax.random.key(0), env, params, policy, 4)
  assert bool(jnp.all(trajectories.nonfinite))
  assert bool(jnp.all(trajectories.action == 0))


def test_continuous_outcomes_on_a_straight_path():
  # Straight from (0.55, 0.05) to a goal at (0.55, 0.85), 8 steps of 0.1 each, every
  # position in the middle of its own cell of a 10 x 10 discretisation.
  positions = jnp.stack([jnp.full(9, 0.55), jnp.linspace(0.05, 0.85, 9)], axis=-1)[None]
  trajectories = Trajectories(
      obs=jnp.zeros((1, 9, 2)), action=jnp.zeros((1, 8, 2)), reward=jnp.zeros((1, 8)),
      valid=jnp.ones((1, 8), bool), length=jnp.array([8]), episode_return=jnp.zeros(1),
      terminated=jnp.array([True]), reached_goal=jnp.array([0]),
      state_index=-jnp.ones((1, 9), jnp.int32), position=positions, nonfinite=jnp.zeros(1, bool))
  start_distance = jnp.array([[0.8, 1.0]])
  end_distance = jnp.array([[0.0, 0.5]])
  per_episode = outcomes.continuous_episode_outcomes(trajectories, start_distance, end_distance)
  np.testing.assert_allclose(per_episode["spl"], [[1.0, 0.0]], rtol=1e-5)
  np.testing.assert_allclose(per_episode["path_efficiency"], [1.0], rtol=1e-5)
  assert float(per_episode["revisit_rate"][0]) == 0.0
  assert not bool(per_episode["looped"][0])
  np.testing.assert_array_equal(per_episode["endpoint"], [5 * 10 + 8])
  np.testing.assert_array_equal(outcomes.position_cells(jnp.array([[0.0, 0.0], [1.0, 0.55]]),
                                                        10), [0, 95])
