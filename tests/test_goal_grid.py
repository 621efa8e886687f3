"""Tests of the GoalGrid environment and its layouts."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import layouts
from envs import oracles
from envs.goal_grid import EnvState, GoalGrid

STEP_COST = 0.01
GOAL_REWARD = 1.0
UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3

# A user layout with every cell type: goals A and B either side of the start, a lava cell
# under the start and a vase on the lower corridor.
USER_LAYOUT = """
    #######
    #A.S.B#
    #.#~#.#
    #..V..#
    #######
"""

ENV_NAMES = ["open_room", "four_rooms", "fork_maze", "user"]


@pytest.fixture(scope="module")
def grid_envs():
  built = {name: GoalGrid(name) for name in layouts.LAYOUTS}
  built["user"] = GoalGrid(USER_LAYOUT)
  return built


@pytest.fixture(scope="module")
def jitted(grid_envs):
  """Per environment: jitted functions shared by the tests (each compiles once)."""
  return {
      name: types.SimpleNamespace(
          step=jax.jit(env.step),
          step_env=jax.jit(env.step_env),
          batched_step_env=jax.jit(jax.vmap(env.step_env)),
          batched_reset=jax.jit(jax.vmap(env.reset, in_axes=(0, None))),
      )
      for name, env in grid_envs.items()
  }


def _state(env, row, col, time=0, vases_intact=None):
  if vases_intact is None:
    vases_intact = np.ones(env.num_vases, dtype=bool)
  return EnvState(agent_cell=jnp.array([row, col], jnp.int32), time=jnp.int32(time),
                  vases_intact=jnp.asarray(vases_intact, bool))


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


# -- layouts -------------------------------------------------------------------------------------


def test_built_in_layouts_parse_with_expected_structure():
  assert set(layouts.LAYOUTS) == {"open_room", "four_rooms", "fork_maze"}
  open_room = layouts.parse_layout(layouts.LAYOUTS["open_room"])
  assert (open_room.height, open_room.width) == (9, 9)
  assert len(open_room.free_cells) == 49  # 7 x 7 interior
  assert open_room.goal_cells == ((1, 1), (1, 7))  # corners
  four_rooms = layouts.parse_layout(layouts.LAYOUTS["four_rooms"])
  assert len(four_rooms.free_cells) == 104  # the classic four-rooms floor plan
  rooms = {(row > 6, col > 6) for row, col in four_rooms.goal_cells}
  start_room = {(row > 6, col > 6) for row, col in four_rooms.start_cells}
  assert len(rooms) == four_rooms.num_goals and not rooms & start_room
  fork_maze = layouts.parse_layout(layouts.LAYOUTS["fork_maze"])
  assert fork_maze.num_goals == 3 and fork_maze.vase_cells and fork_maze.hazard_cells
  for parsed in (open_room, four_rooms, fork_maze):
    hash(parsed)  # static metadata must be hashable
    assert parsed == layouts.parse_layout(parsed.text)


def test_fork_maze_shortest_paths_diverge_at_decision_cells(grid_envs):
  env = grid_envs["fork_maze"]
  mdp = env.tabular()
  distances = oracles.shortest_path_distances(mdp)
  start = env.layout.free_cells.index(env.layout.start_cells[0])
  policies = np.asarray(jax.jit(oracles.policy_for_all_goals)(mdp, 0.99))
  mdp = jax.tree.map(np.asarray, mdp)
  for k in range(env.num_goals):
    for j in range(k + 1, env.num_goals):
      # Walk goal k's shortest path from the start until both goals' optimal moves disagree.
      state, decision_found = int(start), False
      while not mdp.terminal[state]:
        if not np.any((policies[k, state] > 0) & (policies[j, state] > 0)):
          decision_found = True
          break
        state = int(mdp.next_state[state, np.argmax(policies[k, state])])
      assert decision_found, (k, j)
      assert distances[k, state] > 1 and distances[j, state] > 1


def test_user_layout_is_dedented_and_parsed(grid_envs):
  env = grid_envs["user"]
  assert env.name == "GoalGrid-Custom"
  assert env.layout.rows[0] == "#######"
  assert env.goal_names == ["A", "B"]
  np.testing.assert_array_equal(env.goal_cells, [[1, 1], [1, 5]])
  assert env.num_vases == 1 and env.layout.hazard_cells == ((2, 3),)
  assert not bool(env.default_params.random_start)


def test_layout_without_start_cells_defaults_to_random_start():
  env = GoalGrid("#A...B#\n#.....#")
  assert bool(env.default_params.random_start)
  keys = jax.random.split(jax.random.key(0), 200)
  _, states = jax.jit(jax.vmap(env.reset))(keys)
  starts = set(np.asarray(env.state_index(states)).tolist())
  assert starts == {int(i) for i in range(env.num_states)} - set(env.goal_states.tolist())


@pytest.mark.parametrize("text, message", [
    ("#####\n#S..#\n#####", "needs at least 2"),
    ("#S.A#", "has 1 goal"),
    ("####\n#SA.B#", "ragged rows: row 1 has length 6"),
    ("#SAxB#", "unknown layout character 'x' at row 0, column 3"),
    ("#A~VB#", "no free start cell"),
    ("#S.A#B#", "goal 'B' at \\(0, 5\\) is unreachable"),
    ("#SAB#", "goal 'B' at \\(0, 3\\) is unreachable"),  # only through goal A
    ("#A.S~B#", "goal 'B' at \\(0, 5\\) is unreachable"),  # only through lava
    ("#SA.A.B#", "duplicate goal label 'A'"),
    ("#SA.C#", "consecutive"),
    ("\n\n", "empty"),
])
def test_invalid_layouts_raise(text, message):
  with pytest.raises(ValueError, match=message):
    layouts.parse_layout(text)
  with pytest.raises(ValueError, match=message):
    GoalGrid(text)


def test_unknown_layout_name_raises():
  with pytest.raises(ValueError, match="unknown layout 'five_rooms'.*four_rooms"):
    GoalGrid("five_rooms")


def test_invalid_params_raise(grid_envs):
  env = grid_envs["open_room"]
  with pytest.raises(ValueError, match="intended_goal=2 is out of range.*0..1"):
    env.make_params(intended_goal=2)
  with pytest.raises(ValueError, match="intended_goal=-1"):
    env.params_for_goal(-1)
  with pytest.raises(ValueError, match="intended_goal 'C'"):
    env.params_for_goal("C")
  with pytest.raises(ValueError, match="intended_goal=\\[0, 5\\]"):
    env.make_params(intended_goal=np.array([0, 5]))
  with pytest.raises(ValueError, match="intended_goal=4"):
    GoalGrid("open_room", intended_goal=4)
  with pytest.raises(ValueError, match="slip_prob"):
    env.make_params(slip_prob=1.5)
  with pytest.raises(ValueError, match="max_steps"):
    env.make_params(max_steps=0)
  with pytest.raises(ValueError, match="unknown GoalGrid parameter.*'gamma'"):
    env.make_params(gamma=0.9)


def test_make_params_casts_dtypes(grid_envs):
  env = grid_envs["four_rooms"]
  params = env.params_for_goal("C", step_cost=0.5, max_steps=7)
  assert int(params.intended_goal) == 2
  assert params.intended_goal.dtype == np.int32 and params.step_cost.dtype == np.float32
  assert params.random_start.dtype == np.bool_ and int(params.max_steps) == 7
  assert env.default_params.max_steps == 40  # twice the longest start-to-goal path (20)


def test_registry_builds_goal_grids():
  for name, layout in [("GoalGrid-OpenRoom", "open_room"), ("GoalGrid-FourRooms", "four_rooms"),
                       ("GoalGrid-ForkMaze", "fork_maze")]:
    env, params = envs.make(name, max_steps=17)
    assert isinstance(env, GoalGrid) and env.name == name
    assert env == GoalGrid(layout, max_steps=17) and hash(env) == hash(GoalGrid(layout,
                                                                                max_steps=17))
    assert int(params.max_steps) == 17
  assert GoalGrid("open_room") != GoalGrid("fork_maze")


# -- reset and step ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENV_NAMES)
def test_reset_under_jit_and_vmap(grid_envs, jitted, name):
  env = grid_envs[name]
  keys = jax.random.split(jax.random.key(1), 16)
  obs, states = jitted[name].batched_reset(keys, env.default_params)
  assert obs.shape == (16, env.obs_dim) and obs.dtype == jnp.float32
  start_indices = {int(env.layout.free_cells.index(cell)) for cell in env.layout.start_cells}
  assert set(np.asarray(env.state_index(states)).tolist()) <= start_indices
  space = env.observation_space(env.default_params)
  assert all(space.contains(o) for o in np.asarray(obs))
  np.testing.assert_array_equal(np.asarray(states.time), 0)
  np.testing.assert_array_equal(obs, jax.vmap(env.get_obs)(states))


@pytest.mark.parametrize("name", ["open_room", "fork_maze"])
def test_random_starts_cover_every_allowed_cell(grid_envs, jitted, name):
  env = grid_envs[name]
  params = env.make_params(random_start=True)
  keys = jax.random.split(jax.random.key(2), 3000)
  _, states = jitted[name].batched_reset(keys, params)
  starts = set(np.asarray(env.state_index(states)).tolist())
  allowed = {env.layout.free_cells.index(cell) for cell in env.layout.random_start_cells}
  assert starts == allowed  # every free cell, never a goal, hazard or vase
  assert len(allowed) == env.num_states - env.num_goals - len(env.layout.hazard_cells) - (
      env.num_vases)


def test_reset_vmaps_over_params(grid_envs):
  env = grid_envs["open_room"]
  params = _stack([env.make_params(random_start=flag) for flag in [False, True] * 50])
  keys = jax.random.split(jax.random.key(3), 100)
  _, states = jax.jit(jax.vmap(env.reset))(keys, params)
  cells = np.asarray(states.agent_cell)
  assert np.all(cells[0::2] == [7, 4])
  assert np.any(np.any(cells[1::2] != [7, 4], axis=-1))


@pytest.mark.parametrize("name", ENV_NAMES)
def test_reaching_each_goal_terminates_and_only_intended_goal_pays(
    grid_envs, jitted, name):
  env = grid_envs[name]
  next_cells = env.layout.next_cells()
  states, actions, params, expected_goal, expected_reward = [], [], [], [], []
  for k, goal in enumerate(env.layout.goal_cells):
    # A non-terminal neighbour of the goal and the move that enters the goal.
    source, action = next(
        (cell, a) for cell, moves in zip(env.layout.free_cells, next_cells)
        for a in range(4) if tuple(moves[a]) == goal and cell not in env.layout.goal_cells
        and cell not in env.layout.hazard_cells)
    for intended in range(env.num_goals):
      states.append(_state(env, *source))
      actions.append(action)
      params.append(env.params_for_goal(intended))
      expected_goal.append(k)
      expected_reward.append((GOAL_REWARD if intended == k else 0.0) - STEP_COST)
  keys = jax.random.split(jax.random.key(4), len(actions))
  _, new_states, reward, terminated, truncated, info = jitted[name].batched_step_env(
      keys, _stack(states), jnp.asarray(actions), _stack(params))
  np.testing.assert_array_equal(info["reached_goal"], expected_goal)
  np.testing.assert_allclose(reward, expected_reward, rtol=0, atol=1e-6)
  assert np.all(terminated) and not np.any(truncated)
  np.testing.assert_array_equal(info["cell"], env.goal_states[np.asarray(expected_goal)])
  np.testing.assert_array_equal(new_states.agent_cell, env.goal_cells[np.asarray(expected_goal)])


def test_step_cost_walls_and_moves(grid_envs, jitted):
  env = grid_envs["open_room"]
  step = jitted["open_room"].step_env
  key = jax.random.key(5)
  params = env.default_params
  start = _state(env, 7, 4)
  expected_cells = {UP: (6, 4), RIGHT: (7, 5), DOWN: (7, 4), LEFT: (7, 3)}  # down is a wall
  for action, cell in expected_cells.items():
    _, new_state, reward, terminated, truncated, info = step(key, start, action, params)
    assert tuple(np.asarray(new_state.agent_cell)) == cell
    assert int(info["cell"]) == env.layout.free_cells.index(cell)
    assert float(reward) == pytest.approx(-STEP_COST)
    assert not terminated and not truncated and int(info["reached_goal"]) == -1
    assert int(new_state.time) == 1
  corner = _state(env, 7, 1)
  for action in (DOWN, LEFT):
    _, new_state, *_ = step(key, corner, action, params)
    assert tuple(np.asarray(new_state.agent_cell)) == (7, 1)
  _, _, reward, *_ = step(key, start, UP, env.make_params(step_cost=0.25))
  assert float(reward) == pytest.approx(-0.25)


def test_auto_reset_reports_final_observation(grid_envs, jitted):
  env = grid_envs["open_room"]
  step = jitted["open_room"].step
  next_to_a = _state(env, 1, 2, time=5)
  obs, state, reward, terminated, truncated, info = step(
      jax.random.key(6), next_to_a, LEFT, env.default_params)
  assert bool(terminated) and not bool(truncated)
  assert float(reward) == pytest.approx(GOAL_REWARD - STEP_COST)
  np.testing.assert_array_equal(info["final_observation"],
                                env.obs_for_state_index(env.goal_states[0]))
  assert tuple(np.asarray(state.agent_cell)) == (7, 4) and int(state.time) == 0
  np.testing.assert_array_equal(obs, env.obs_for_state_index(env.layout.free_cells.index((7, 4))))
  # Without an episode end the final observation is the returned observation.
  obs, state, *_, info = step(jax.random.key(7), next_to_a, DOWN, env.default_params)
  np.testing.assert_array_equal(info["final_observation"], obs)
  assert int(state.time) == 6


def test_truncation_at_max_steps(grid_envs, jitted):
  env = grid_envs["open_room"]
  step = jitted["open_room"].step
  params = env.make_params(max_steps=3)
  state = _state(env, 7, 4)
  flags = []
  for t in range(3):
    _, state, _, terminated, truncated, _ = step(jax.random.key(t), state, UP, params)
    flags.append((bool(terminated), bool(truncated)))
  assert flags == [(False, False), (False, False), (False, True)]
  assert int(state.time) == 0 and tuple(np.asarray(state.agent_cell)) == (7, 4)
  # Terminating on the last allowed step is a termination, not a truncation.
  _, _, _, terminated, truncated, _ = step(
      jax.random.key(9), _state(env, 1, 2, time=2), LEFT, params)
  assert bool(terminated) and not bool(truncated)


def test_slip_replaces_actions_with_uniform_random_ones(grid_envs, jitted):
  env = grid_envs["open_room"]
  num = 4000
  keys = jax.random.split(jax.random.key(10), num)
  states = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), _state(env, 4, 4))
  actions = jnp.full((num,), UP, jnp.int32)
  moved_to = {}
  for slip in (0.0, 0.5):
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,)), env.make_params(slip_prob=slip))
    _, new_states, *_ = jitted["open_room"].batched_step_env(keys, states, actions, params)
    moved_to[slip] = np.asarray(new_states.agent_cell)
  assert np.all(moved_to[0.0] == [3, 4])
  # P(up) = 1 - slip + slip / 4 and P(each other move) = slip / 4; 4 sigma is about 0.03.
  for cell, probability in [((3, 4), 0.625), ((4, 5), 0.125), ((5, 4), 0.125), ((4, 3), 0.125)]:
    frequency = np.mean(np.all(moved_to[0.5] == cell, axis=-1))
    assert abs(frequency - probability) < 0.03, (cell, frequency)


def _rollout(env, key, actions, params):
  """Steps ``env`` (auto-reset) through ``actions`` from a reset; returns the per-step outputs."""

  def body(state, inputs):
    step_key, action = inputs
    obs, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
    return state, (obs, reward, terminated, truncated, info["cell"])

  reset_key, scan_key = jax.random.split(key)
  _, state = env.reset(reset_key, params)
  keys = jax.random.split(scan_key, actions.shape[0])
  return jax.lax.scan(body, state, (keys, actions))[1]


def test_fixed_action_sequence_gives_identical_episodes(grid_envs):
  env = grid_envs["four_rooms"]
  rollout = jax.jit(lambda key, params: _rollout(env, key, actions, params))
  actions = jax.random.randint(jax.random.key(11), (60,), 0, 4)
  deterministic = env.default_params
  first, second = rollout(jax.random.key(12), deterministic), rollout(jax.random.key(13),
                                                                      deterministic)
  jax.tree.map(np.testing.assert_array_equal, first, second)
  slippery = env.make_params(slip_prob=0.3)
  first, second = rollout(jax.random.key(12), slippery), rollout(jax.random.key(12), slippery)
  jax.tree.map(np.testing.assert_array_equal, first, second)
  other = rollout(jax.random.key(13), slippery)
  assert np.any(np.asarray(first[4]) != np.asarray(other[4]))


def test_vase_breaks_once_and_costs_the_side_effect_penalty(grid_envs, jitted):
  env = grid_envs["fork_maze"]
  step = jitted["fork_maze"].step_env
  params = env.make_params(side_effect_penalty=0.5)
  key = jax.random.key(14)
  obs, state, reward, terminated, _, info = step(key, _state(env, 7, 5), DOWN, params)
  assert bool(info["broke_vase"]) and not bool(terminated)
  assert float(reward) == pytest.approx(-STEP_COST - 0.5)
  assert not bool(state.vases_intact[0]) and float(obs[-1]) == 0.0
  _, state, *_ = step(key, state, UP, params)
  obs, state, reward, _, _, info = step(key, state, DOWN, params)
  assert not bool(info["broke_vase"]) and float(reward) == pytest.approx(-STEP_COST)
  # Default params: breaking the vase is free.
  _, _, reward, _, _, info = step(key, _state(env, 7, 5), DOWN, env.default_params)
  assert bool(info["broke_vase"]) and float(reward) == pytest.approx(-STEP_COST)


def test_hazard_terminates_with_penalty(grid_envs, jitted):
  env = grid_envs["fork_maze"]
  params = env.make_params(hazard_penalty=2.0)
  _, state, reward, terminated, truncated, info = jitted["fork_maze"].step_env(
      jax.random.key(15), _state(env, 5, 2), LEFT, params)
  assert bool(terminated) and not bool(truncated) and bool(info["hit_hazard"])
  assert int(info["reached_goal"]) == -1
  assert float(reward) == pytest.approx(-STEP_COST - 2.0)


# -- observations, helpers, rendering ------------------------------------------------------------


@pytest.mark.parametrize("name", ENV_NAMES)
def test_observation_layout_and_probe_set(grid_envs, name):
  env = grid_envs[name]
  num_states, height, width = env.num_states, env.layout.height, env.layout.width
  probes = np.asarray(env.all_observations(env.default_params))
  assert probes.shape == (num_states, num_states + 2 + env.num_vases)
  np.testing.assert_array_equal(probes[:, :num_states], np.eye(num_states))
  np.testing.assert_allclose(
      probes[:, num_states:num_states + 2], env.state_cells / [height - 1, width - 1])
  np.testing.assert_array_equal(probes[:, num_states + 2:], 1.0)

  @jax.jit
  def from_indices(indices):
    states = jax.vmap(env.state_from_index)(indices)
    observations = jax.vmap(env.get_obs)(states)
    single = jax.vmap(env.obs_for_state_index)(indices)
    return env.state_index(states), env.position(states), observations, single

  round_trip, positions, observations, single = from_indices(jnp.arange(num_states))
  np.testing.assert_array_equal(round_trip, np.arange(num_states))
  np.testing.assert_array_equal(positions, env.state_cells.astype(np.float32))
  np.testing.assert_array_equal(observations, probes)
  np.testing.assert_array_equal(single, probes)
  assert env.observation_space(env.default_params).shape == (env.obs_dim,)
  assert env.action_space(env.default_params).n == 4 and env.num_actions == 4


def test_render_draws_goals_agent_and_vases(grid_envs):
  env = grid_envs["fork_maze"]
  px = 12
  state = _state(env, 5, 5)
  image_a = env.render(state, env.params_for_goal(0), cell_px=px)
  image_b = env.render(state, env.params_for_goal(1), cell_px=px)
  assert image_a.shape == (11 * px, 11 * px, 3) and image_a.dtype == np.uint8

  def cell_pixels(image, cell):
    row, col = cell
    return image[row * px:(row + 1) * px, col * px:(col + 1) * px]

  for goal in env.layout.goal_cells[:2]:
    assert np.any(cell_pixels(image_a, goal) != cell_pixels(image_b, goal))
  goal_c = env.layout.goal_cells[2]
  np.testing.assert_array_equal(cell_pixels(image_a, goal_c), cell_pixels(image_b, goal_c))
  row, col = np.asarray(state.agent_cell)
  assert np.all(image_a[row * px + px // 2, col * px + px // 2] == 0)  # the agent
  empty = env.render(None, env.params_for_goal(0), cell_px=px)
  assert np.all(empty[row * px + px // 2, col * px + px // 2] != 0)
  broken = env.render(state.replace(vases_intact=jnp.zeros(1, bool)), cell_px=px)
  vase = env.layout.vase_cells[0]
  assert np.any(cell_pixels(broken, vase) != cell_pixels(image_a, vase))


def test_render_trajectory_draws_the_path(grid_envs):
  env = grid_envs["open_room"]
  px = 10
  path_cells = [(7, 4), (6, 4), (5, 4), (5, 5)]
  indices = np.array([env.layout.free_cells.index(cell) for cell in path_cells] + [-1, -1])
  base = env.render(None, cell_px=px)
  image = env.render_trajectory(indices, cell_px=px)
  assert image.shape == base.shape and image.dtype == np.uint8
  for row, col in path_cells:
    assert np.any(image[row * px + px // 2, col * px + px // 2] != base[row * px + px // 2,
                                                                         col * px + px // 2])
  untouched = (2, 2)
  np.testing.assert_array_equal(image[untouched[0] * px:(untouched[0] + 1) * px],
                                base[untouched[0] * px:(untouched[0] + 1) * px])
  np.testing.assert_array_equal(env.render_trajectory(cells=np.array(path_cells), cell_px=px),
                                image)
  several = env.render_trajectory(np.stack([indices, indices[::-1]]), cell_px=px)
  assert several.shape == base.shape
  with pytest.raises(ValueError, match="exactly one"):
    env.render_trajectory()
  with pytest.raises(ValueError, match="cells must have shape"):
    env.render_trajectory(cells=np.zeros((3, 3)))
