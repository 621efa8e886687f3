"""Tests of the tabular export of GoalGrid and the exact planning oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import layouts
from envs import oracles
from envs.goal_grid import GoalGrid

GAMMA = 0.99
STEP_COST = 0.01
GOAL_REWARD = 1.0

USER_LAYOUT = """
    #######
    #A.S.B#
    #.#~#.#
    #..V..#
    #######
"""

ENV_NAMES = ["open_room", "four_rooms", "fork_maze", "user"]

value_iteration = jax.jit(oracles.value_iteration, static_argnames="num_iters")
all_goal_values = jax.jit(
    jax.vmap(oracles.value_iteration, in_axes=(None, 0, None)))
soft_sweep = jax.jit(  # [B] betas x [K] goals
    jax.vmap(jax.vmap(oracles.soft_value_iteration, in_axes=(None, 0, None, None)),
             in_axes=(None, None, 0, None)))
optimal_policies = jax.jit(jax.vmap(oracles.optimal_policy, in_axes=(None, 0, None)))
optimal_policy = jax.jit(oracles.optimal_policy)
soft_value_iteration = jax.jit(
    oracles.soft_value_iteration, static_argnames=("num_iters", "entropy_after_termination"))
policy_for_all_goals = jax.jit(oracles.policy_for_all_goals)


@pytest.fixture(scope="module")
def grid_envs():
  built = {name: GoalGrid(name) for name in layouts.LAYOUTS}
  built["user"] = GoalGrid(USER_LAYOUT)
  return built


@pytest.fixture(scope="module")
def deterministic_mdps(grid_envs):
  return {name: jax.jit(env.tabular)(env.default_params) for name, env in grid_envs.items()}


@pytest.fixture(scope="module")
def distances(deterministic_mdps):
  return {name: oracles.shortest_path_distances(mdp) for name, mdp in deterministic_mdps.items()}


def _goals(env):
  return jnp.arange(env.num_goals, dtype=jnp.int32)


# -- the tabular export --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENV_NAMES)
def test_tabular_transitions_and_rewards_match_step_env(grid_envs, name):
  env = grid_envs[name]
  params = env.make_params(side_effect_penalty=0.3, hazard_penalty=0.7)
  mdp = jax.tree.map(np.asarray, jax.jit(env.tabular)(params))
  non_terminal = np.flatnonzero(~mdp.terminal)
  # Every (non-terminal state, action, intended goal), stepped in one vmapped call.
  state_ids, actions, goals = (g.ravel() for g in np.meshgrid(
      non_terminal, np.arange(4), np.arange(env.num_goals), indexing="ij"))

  @jax.jit
  def step_all(state_ids, actions, goals):
    def one(state_id, action, goal):
      state = env.state_from_index(state_id)
      _, new_state, reward, terminated, truncated, info = env.step_env(
          jax.random.key(0), state, action, params.replace(intended_goal=goal))
      return env.state_index(new_state), reward, terminated, truncated, info["cell"]
    return jax.vmap(one)(state_ids, actions, goals)

  next_ids, reward, terminated, truncated, cell = map(np.asarray, step_all(
      state_ids, actions, goals))
  np.testing.assert_array_equal(next_ids, cell)
  np.testing.assert_array_equal(next_ids, mdp.next_state[state_ids, actions])
  expected_rows = np.eye(env.num_states, dtype=np.float32)[next_ids]
  np.testing.assert_array_equal(mdp.transitions[state_ids, actions], expected_rows)
  np.testing.assert_allclose(reward, mdp.rewards[goals, state_ids, actions], rtol=0, atol=1e-6)
  np.testing.assert_array_equal(terminated, mdp.terminal[next_ids])
  assert not truncated.any()
  # Terminal states absorb with zero reward.
  terminal = np.flatnonzero(mdp.terminal)
  np.testing.assert_array_equal(mdp.transitions[terminal, :, terminal], 1.0)
  np.testing.assert_array_equal(mdp.rewards[:, terminal], 0.0)
  np.testing.assert_array_equal(mdp.goal_states, env.goal_states)
  np.testing.assert_array_equal(mdp.cells, env.state_cells)
  start_cells = env.state_cells[mdp.start_distribution > 0]
  assert {tuple(c) for c in start_cells} == set(env.layout.start_cells)


@pytest.mark.parametrize("name", ["open_room", "fork_maze"])
def test_slip_changes_the_transition_tensor_as_documented(grid_envs, deterministic_mdps, name):
  env, slip = grid_envs[name], 0.2
  params = env.make_params(slip_prob=slip, side_effect_penalty=0.4)
  mdp = jax.tree.map(np.asarray, env.tabular(params))
  deterministic = np.asarray(deterministic_mdps[name].transitions)
  expected = (1 - slip) * deterministic + slip / 4 * deterministic.sum(axis=1, keepdims=True)
  expected[mdp.terminal] = deterministic[mdp.terminal]  # terminal states still absorb
  np.testing.assert_allclose(mdp.transitions, expected, rtol=0, atol=1e-6)
  np.testing.assert_allclose(mdp.transitions.sum(-1), 1.0, rtol=0, atol=1e-6)
  assert np.any(mdp.transitions != deterministic)
  # Expected rewards average the arrival rewards under the slipped dynamics.
  arrival = np.zeros((env.num_goals, env.num_states))
  arrival[np.arange(env.num_goals), env.goal_states] += GOAL_REWARD
  for row, col in env.layout.hazard_cells:
    arrival[:, env.layout.free_cells.index((row, col))] -= 1.0
  for row, col in env.layout.vase_cells:
    arrival[:, env.layout.free_cells.index((row, col))] -= 0.4
  expected_rewards = np.einsum("sat,kt->ksa", expected, arrival) - STEP_COST
  expected_rewards[:, mdp.terminal] = 0.0
  np.testing.assert_allclose(mdp.rewards, expected_rewards, rtol=0, atol=1e-6)


def test_tabular_vmaps_over_params_and_slip_lowers_values(grid_envs):
  env = grid_envs["open_room"]
  slips = jnp.array([0.0, 0.1, 0.3, 0.6])

  @jax.jit
  def values_for_slips(slips):
    params = jax.vmap(lambda slip: env.default_params.replace(slip_prob=slip))(slips)
    mdps = jax.vmap(env.tabular)(params)
    values, _ = jax.vmap(oracles.value_iteration, in_axes=(0, None, None))(mdps, 0, GAMMA)
    return mdps, values

  mdps, values = values_for_slips(slips)
  assert mdps.transitions.shape == (4, env.num_states, 4, env.num_states)
  start = env.layout.free_cells.index(env.layout.start_cells[0])
  assert np.all(np.diff(np.asarray(values[:, start])) < 0)


# -- oracles -------------------------------------------------------------------------------------


def test_shortest_path_distances_on_a_corridor():
  env = GoalGrid("#A.S..B#")  # a one-row layout: states A, ., S, ., ., B
  distances = oracles.shortest_path_distances(env.tabular())
  unreachable = oracles.UNREACHABLE_DISTANCE
  np.testing.assert_array_equal(distances, [[0, 1, 2, 3, 4, unreachable],
                                            [unreachable, 4, 3, 2, 1, 0]])
  assert distances.dtype == np.int32


@pytest.mark.parametrize("name", ENV_NAMES)
def test_value_iteration_matches_closed_form_from_bfs_distances(
    grid_envs, deterministic_mdps, distances, name):
  env, mdp = grid_envs[name], deterministic_mdps[name]
  values, q_values = all_goal_values(mdp, _goals(env), GAMMA)
  terminal = np.asarray(mdp.terminal)
  d = distances[name][:, ~terminal]
  assert np.all(d < oracles.UNREACHABLE_DISTANCE)  # built-in layouts reach every goal
  # Walk d steps paying the step cost each, the last of which enters the goal.
  closed_form = (-STEP_COST * (1 - GAMMA**d) / (1 - GAMMA) + GAMMA**(d - 1) * GOAL_REWARD)
  np.testing.assert_allclose(np.asarray(values)[:, ~terminal], closed_form, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(values)[:, terminal], 0.0)
  np.testing.assert_allclose(values, np.max(np.asarray(q_values), axis=-1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_optimal_policy_is_uniform_over_shortest_path_moves(
    grid_envs, deterministic_mdps, distances, name):
  env, mdp = grid_envs[name], deterministic_mdps[name]
  policies = np.asarray(optimal_policies(mdp, _goals(env), GAMMA))
  next_state = np.asarray(mdp.next_state)
  non_terminal = ~np.asarray(mdp.terminal)
  for k in range(env.num_goals):
    d = distances[name][k]
    shortening = d[next_state] == d[:, None] - 1  # [S, A]
    expected = shortening / np.maximum(shortening.sum(-1, keepdims=True), 1)
    np.testing.assert_allclose(policies[k][non_terminal], expected[non_terminal], atol=1e-6)
  np.testing.assert_allclose(policies[:, ~non_terminal], 0.25)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_soft_policy_at_large_beta_follows_shortest_paths(
    grid_envs, deterministic_mdps, distances, name):
  env, mdp = grid_envs[name], deterministic_mdps[name]
  betas = jnp.array([1.0, 30.0, 1e3])
  values, q_values, policies = map(np.asarray, soft_sweep(mdp, _goals(env), betas, GAMMA))
  num_goals, num_states = env.num_goals, env.num_states
  assert policies.shape == (3, num_goals, num_states, 4)
  np.testing.assert_allclose(policies.sum(-1), 1.0, atol=1e-5)
  next_state = np.asarray(mdp.next_state)
  terminal = np.asarray(mdp.terminal)
  for k in range(num_goals):
    d = distances[name][k]
    shortening = d[next_state] == d[:, None] - 1  # [S, A]
    # Large beta: nearly all mass on shortest-path moves, so the argmax shortens the distance.
    mass = np.sum(policies[2, k] * shortening, axis=-1)
    assert np.all(mass[~terminal] > 0.99)
    greedy_next = next_state[np.arange(num_states), policies[2, k].argmax(-1)]
    assert np.all((d[greedy_next] == d - 1)[~terminal])
    # Lower beta, more randomness: less mass on shortest-path moves.
    mean_mass = np.sum(policies[:, k] * shortening, axis=-1)[:, ~terminal].mean(-1)
    assert mean_mass[0] < mean_mass[1] < mean_mass[2]
  # The soft value adds at most log|A| / beta of entropy per step to the optimal value.
  hard, _ = all_goal_values(mdp, _goals(env), GAMMA)
  hard = np.asarray(hard)
  bonus_bound = np.log(4) / (np.asarray(betas) * (1 - GAMMA))
  upper = hard[None] + bonus_bound[:, None, None]
  assert np.all(values >= hard[None] - 1e-5)
  assert np.all(values <= upper + 1e-5 * np.abs(upper) + 1e-5)  # float32 round-off
  np.testing.assert_allclose(values[..., terminal], np.broadcast_to(
      bonus_bound[:, None, None], values[..., terminal].shape), rtol=1e-5)
  soft_max_q = jax.nn.logsumexp(betas[:, None, None, None] * q_values, -1) / betas[:, None, None]
  np.testing.assert_allclose(values, soft_max_q, rtol=1e-5, atol=1e-5)


def test_soft_policy_conventions_at_small_beta(grid_envs, deterministic_mdps, distances):
  env, mdp = grid_envs["open_room"], deterministic_mdps["open_room"]
  terminal = np.asarray(mdp.terminal)
  shortening = distances["open_room"][0][np.asarray(mdp.next_state)] == (
      distances["open_room"][0][:, None] - 1)
  _, _, continuing = soft_value_iteration(mdp, 0, 1e-3, GAMMA)
  np.testing.assert_allclose(np.asarray(continuing), 0.25, atol=1e-3)  # almost uniform
  _, _, ending = soft_value_iteration(mdp, 0, 1.0, GAMMA, entropy_after_termination=False)
  # With V(terminal) = 0 the entropy bonus outweighs the goal: next to the goal, the policy
  # moves away from it more often than towards it.
  next_to_goal = np.flatnonzero((distances["open_room"][0] == 1) & ~terminal)
  toward = np.sum(np.asarray(ending)[next_to_goal] * shortening[next_to_goal], axis=-1)
  assert np.all(toward < 0.25)


def test_policy_for_all_goals_matches_per_goal_oracles(grid_envs, deterministic_mdps):
  env, mdp = grid_envs["fork_maze"], deterministic_mdps["fork_maze"]
  hard = policy_for_all_goals(mdp, GAMMA)
  soft = policy_for_all_goals(mdp, GAMMA, beta=5.0)
  assert hard.shape == soft.shape == (env.num_goals, env.num_states, 4)
  for k in range(env.num_goals):
    np.testing.assert_allclose(hard[k], optimal_policy(mdp, k, GAMMA), atol=1e-6)
    np.testing.assert_allclose(soft[k], soft_value_iteration(mdp, k, 5.0, GAMMA)[2], atol=1e-6)


def test_value_iteration_is_exact_for_the_slippery_dynamics_of_step_env(grid_envs):
  """Monte Carlo returns of the greedy policy in ``step_env`` match ``V*`` under slip."""
  env = grid_envs["open_room"]
  params = env.make_params(slip_prob=0.3, max_steps=1000)
  mdp = env.tabular(params)
  values, q_values = value_iteration(mdp, 0, GAMMA)
  greedy = jnp.argmax(q_values, axis=-1)
  num_episodes, horizon = 2000, 100

  @jax.jit
  def discounted_returns(key):
    def episode(key):
      _, state = env.reset(jax.random.key(0), params)

      def body(carry, step_key):
        state, done, ret, discount = carry
        action = greedy[env.state_index(state)]
        _, state, reward, terminated, _, _ = env.step_env(step_key, state, action, params)
        ret = ret + jnp.where(done, 0.0, discount * reward)
        return (state, done | terminated, ret, discount * GAMMA), None

      carry = (state, jnp.bool_(False), jnp.float32(0.0), jnp.float32(1.0))
      (_, done, ret, _), _ = jax.lax.scan(body, carry, jax.random.split(key, horizon))
      return ret, done
    return jax.vmap(episode)(jax.random.split(key, num_episodes))

  returns, done = discounted_returns(jax.random.key(1))
  assert bool(jnp.all(done))
  start = env.layout.free_cells.index(env.layout.start_cells[0])
  standard_error = float(jnp.std(returns)) / np.sqrt(num_episodes)
  assert abs(float(jnp.mean(returns)) - float(values[start])) < 4 * standard_error
  assert float(values[start]) < float(value_iteration(env.tabular(), 0, GAMMA)[0][start])
