"""Tests of the PointGoals environment: contract under jit/vmap, goals, walls, limits, helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.point_goals import PointGoals, PointGoalsState

ENV = PointGoals()
PARAMS = ENV.default_params
RESET = jax.jit(ENV.reset)
STEP = jax.jit(ENV.step)
STEP_ENV = jax.jit(ENV.step_env)
UP = jnp.array([0.0, 1.0])
RIGHT = jnp.array([1.0, 0.0])


def _state(x, y, time=0):
  return PointGoalsState(position=jnp.array([x, y], jnp.float32), time=jnp.int32(time))


def _rollout(env, state, actions, params, key=jax.random.key(0)):
  """Steps ``env.step_env`` through ``actions [T, 2]``; returns positions [T, 2] and outputs."""
  step = jax.jit(env.step_env)
  positions, outputs = [], []
  for t, action in enumerate(actions):
    obs, state, reward, terminated, truncated, info = step(
        jax.random.fold_in(key, t), state, jnp.asarray(action), params)
    positions.append(np.asarray(state.position))
    outputs.append((float(reward), bool(terminated), bool(truncated), int(info["reached_goal"])))
  return np.stack(positions), outputs


def test_registered_and_made_by_name():
  env, params = envs.make("PointGoals")
  assert isinstance(env, PointGoals)
  assert env.num_goals == 3
  assert int(params.intended_goal) == 0
  assert envs.gym_id("PointGoals") == "mbrl_drift/PointGoals-v0"


def test_reset_and_step_under_jit_and_vmap():
  keys = jax.random.split(jax.random.key(1), 16)
  obs, state = jax.vmap(RESET, in_axes=(0, None))(keys, PARAMS)
  assert obs.shape == (16, 2 + 2 * ENV.num_goals) and obs.dtype == jnp.float32
  assert state.position.shape == (16, 2) and state.time.shape == (16,)
  position = np.asarray(state.position)
  assert np.all(position >= np.asarray(PARAMS.start_low))
  assert np.all(position <= np.asarray(PARAMS.start_high))
  assert len(np.unique(position[:, 0])) == 16  # every key gives its own start

  actions = jax.random.uniform(jax.random.key(2), (16, 2), minval=-1, maxval=1)
  out = jax.vmap(STEP, in_axes=(0, 0, 0, None))(keys, state, actions, PARAMS)
  obs, state, reward, terminated, truncated, info = out
  assert obs.shape == (16, 8) and reward.shape == (16,) and reward.dtype == jnp.float32
  assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
  assert info["reached_goal"].dtype == jnp.int32
  assert info["final_observation"].shape == (16, 8)
  space = ENV.observation_space(PARAMS)
  assert all(space.contains(o) for o in np.asarray(obs))
  assert ENV.action_space(PARAMS).contains(np.zeros(2, np.float32))


def test_observation_is_position_then_goal_offsets():
  state = _state(0.3, 0.2)
  obs = np.asarray(ENV.observation(state))
  expected = np.concatenate([[0.3, 0.2], (ENV.goals - np.array([0.3, 0.2])).ravel()])
  np.testing.assert_allclose(obs, expected, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(ENV.position(state)), np.float32([0.3, 0.2]))


def test_velocity_control_moves_by_max_speed_and_clips_actions():
  _, state, *_ = STEP_ENV(jax.random.key(0), _state(0.2, 0.2), jnp.array([3.0, -0.5]), PARAMS)
  np.testing.assert_allclose(np.asarray(state.position), [0.25, 0.175], rtol=1e-6)
  assert int(state.time) == 1


def test_non_finite_action_components_do_not_move():
  action = jnp.array([jnp.nan, jnp.inf])
  _, state, reward, *_ = STEP_ENV(jax.random.key(0), _state(0.2, 0.2), action, PARAMS)
  np.testing.assert_array_equal(np.asarray(state.position), np.float32([0.2, 0.2]))
  assert np.isfinite(float(reward))


@pytest.mark.parametrize("goal", [0, 1, 2])
def test_reaching_a_goal_terminates_and_pays_only_the_intended_one(goal):
  gx, gy = ENV.goals[goal]
  state = _state(gx, gy - ENV.goal_radius - 0.03)  # one step below the disc
  for intended in range(ENV.num_goals):
    params = PARAMS.replace(intended_goal=jnp.int32(intended))
    _, next_state, reward, terminated, truncated, info = STEP_ENV(
        jax.random.key(0), state, UP, params)
    assert bool(terminated) and not bool(truncated)
    assert int(info["reached_goal"]) == goal
    expected = (1.0 if intended == goal else 0.0) - 0.01
    assert float(reward) == pytest.approx(expected)
    assert float(ENV.distance_to_goals(next_state)[goal]) == 0.0


def test_step_without_goal_costs_step_cost_and_reports_no_goal():
  _, _, reward, terminated, truncated, info = STEP_ENV(
      jax.random.key(0), _state(0.5, 0.2), UP, PARAMS)
  assert float(reward) == pytest.approx(-0.01)
  assert not bool(terminated) and not bool(truncated)
  assert int(info["reached_goal"]) == -1


def test_auto_reset_after_reaching_a_goal():
  gx, gy = ENV.goals[2]
  state = _state(gx, gy - ENV.goal_radius - 0.03, time=7)
  obs, new_state, _, terminated, _, info = STEP(jax.random.key(3), state, UP, PARAMS)
  assert bool(terminated) and int(info["reached_goal"]) == 2
  assert int(new_state.time) == 0
  assert float(new_state.position[1]) <= float(PARAMS.start_high[1])
  final = np.asarray(info["final_observation"])
  assert final[1] > gy - ENV.goal_radius  # the pre-reset observation is inside the goal
  np.testing.assert_allclose(np.asarray(obs), np.asarray(ENV.observation(new_state)))


def test_wall_blocks_from_below_and_the_point_slides_along_it():
  x0, y0, x1, y1 = ENV.walls[0]
  positions, outputs = _rollout(ENV, _state(0.5, 0.3), [UP] * 10, PARAMS)
  assert positions[-1][1] == pytest.approx(y0)  # stopped at the bottom face, not inside
  assert np.all(positions[:, 1] <= y0)
  assert not any(out[1] for out in outputs)
  # Moving diagonally along the face slides in x until the wall ends, then goes up.
  positions, _ = _rollout(ENV, _state(0.5, float(y0)), [jnp.array([-1.0, 1.0])] * 8, PARAMS)
  inside = ((positions[:, 0] > x0) & (positions[:, 0] < x1)
            & (positions[:, 1] > y0) & (positions[:, 1] < y1))
  assert not inside.any()
  assert positions[-1][0] < x0 and positions[-1][1] > y1  # went around the left end


def test_wall_blocks_from_the_side_and_from_above():
  x0, y0, x1, y1 = ENV.walls[0]
  positions, _ = _rollout(ENV, _state(0.1, 0.5), [RIGHT] * 10, PARAMS)
  assert positions[-1][0] == pytest.approx(x0) and positions[-1][1] == pytest.approx(0.5)
  positions, _ = _rollout(ENV, _state(0.5, 0.7), [-UP] * 10, PARAMS)
  assert positions[-1][1] == pytest.approx(y1)


def test_random_walks_never_enter_walls_or_leave_the_arena():
  params = PARAMS.replace(action_noise_std=jnp.float32(0.5), max_speed=jnp.float32(0.08))

  def walk(key):
    _, state = ENV.reset(key, params)

    def body(state, key):
      key_action, key_step = jax.random.split(key)
      action = jax.random.uniform(key_action, (2,), minval=-1, maxval=1)
      _, state, *_ = ENV.step(key_step, state, action, params)
      return state, state.position

    _, positions = jax.lax.scan(body, state, jax.random.split(key, 150))
    return positions

  positions = np.asarray(jax.jit(jax.vmap(walk))(jax.random.split(jax.random.key(4), 64)))
  assert positions.min() >= 0.0 and positions.max() <= 1.0
  for x0, y0, x1, y1 in ENV.walls:
    inside = ((positions[..., 0] > x0) & (positions[..., 0] < x1)
              & (positions[..., 1] > y0) & (positions[..., 1] < y1))
    assert not inside.any()
  assert positions[..., 1].max() > 0.6  # some walks got past the wall


def test_arena_bounds_clip_the_position():
  positions, _ = _rollout(ENV, _state(0.02, 0.5), [-RIGHT] * 3, PARAMS)
  assert positions[-1][0] == 0.0


def test_truncation_at_max_steps():
  params = PARAMS.replace(max_steps=jnp.int32(5))
  _, outputs = _rollout(ENV, _state(0.5, 0.1), [jnp.zeros(2)] * 5, params)
  assert [out[2] for out in outputs] == [False] * 4 + [True]
  assert not any(out[1] for out in outputs)
  assert all(out[3] == -1 for out in outputs)


def test_termination_on_the_last_step_is_not_a_truncation():
  gx, gy = ENV.goals[0]
  state = _state(gx, gy - ENV.goal_radius - 0.03, time=4)
  params = PARAMS.replace(max_steps=jnp.int32(5))
  *_, terminated, truncated, _ = STEP_ENV(jax.random.key(0), state, UP, params)
  assert bool(terminated) and not bool(truncated)


def test_same_key_same_episode_and_noise_depends_on_key():
  params = PARAMS.replace(action_noise_std=jnp.float32(0.3))
  _, state = RESET(jax.random.key(5), params)
  run_1, _ = _rollout(ENV, state, [UP] * 6, params, key=jax.random.key(6))
  run_2, _ = _rollout(ENV, state, [UP] * 6, params, key=jax.random.key(6))
  run_3, _ = _rollout(ENV, state, [UP] * 6, params, key=jax.random.key(7))
  np.testing.assert_array_equal(run_1, run_2)
  assert not np.allclose(run_1, run_3)
  obs_a, _ = RESET(jax.random.key(8), PARAMS)
  obs_b, _ = RESET(jax.random.key(8), PARAMS)
  np.testing.assert_array_equal(np.asarray(obs_a), np.asarray(obs_b))


def test_distance_to_goals_goes_around_walls():
  start = jnp.array([0.5, 0.1])
  distance = np.asarray(ENV.distance_to_goals(start))
  # Goal 1 (0.5, 0.9) is behind the wall: via corners (0.3, 0.45) and (0.3, 0.55).
  leg = np.hypot(0.2, 0.35)
  assert distance[1] == pytest.approx(2 * leg + 0.1 - ENV.goal_radius, rel=1e-5)
  # Goal 2 (0.9, 0.9): the straight line crosses the wall, so the path bends at (0.7, 0.45).
  via_corner = np.hypot(0.2, 0.35) + np.hypot(0.2, 0.45)
  assert distance[2] == pytest.approx(via_corner - ENV.goal_radius, rel=1e-5)
  # Batched positions and states give [..., K].
  batch = jnp.array([[0.5, 0.1], [0.5, 0.8], list(ENV.goals[0])])
  distances = np.asarray(ENV.distance_to_goals(batch))
  assert distances.shape == (3, 3)
  assert distances[1, 1] == pytest.approx(0.1 - ENV.goal_radius, abs=1e-6)
  assert distances[2, 0] == 0.0
  np.testing.assert_allclose(np.asarray(ENV.distance_to_goals(_state(0.5, 0.1))), distance)
  jitted = jax.jit(jax.vmap(ENV.distance_to_goals))(batch)
  np.testing.assert_allclose(np.asarray(jitted), distances, rtol=1e-6)


def test_distance_without_walls_is_euclidean_minus_radius():
  env = PointGoals(walls=())
  position = np.array([0.3, 0.2], np.float32)
  expected = np.linalg.norm(env.goals - position, axis=-1) - env.goal_radius
  np.testing.assert_allclose(np.asarray(env.distance_to_goals(position)), expected, rtol=1e-6)


def test_distance_to_an_enclosed_goal_is_infinite():
  ring = ((0.3, 0.3, 0.36, 0.7), (0.34, 0.3, 0.66, 0.36), (0.64, 0.3, 0.7, 0.7),
          (0.34, 0.64, 0.66, 0.7))
  env = PointGoals(goals=((0.5, 0.5), (0.1, 0.9)), goal_radius=0.05, walls=ring,
                   start_low=(0.05, 0.05), start_high=(0.1, 0.1))
  distance = np.asarray(env.distance_to_goals(jnp.array([0.1, 0.1])))
  assert np.isinf(distance[0])
  assert distance[1] == pytest.approx(0.8 - 0.05, rel=1e-5)
  inner = np.asarray(env.distance_to_goals(jnp.array([0.45, 0.45])))
  assert inner[0] == pytest.approx(np.hypot(0.05, 0.05) - 0.05, rel=1e-4)
  assert np.isinf(inner[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"goals": ((0.5, 0.9),)}, "at least 2 goals"),
        ({"goals": ((0.5, 0.5), (0.1, 0.9))}, "goals\\[0\\].*overlaps walls\\[0\\]"),
        ({"goals": ((0.5, 0.97), (0.1, 0.9))}, "goals\\[0\\].*outside the arena"),
        ({"goals": ((1.5, 0.5), (0.1, 0.9))}, "goals\\[0\\].*outside the arena"),
        ({"goals": ((0.1, 0.9), (0.15, 0.9))}, "goals\\[0\\] and goals\\[1\\] overlap"),
        ({"intended_goal": 3}, "intended_goal must be in \\[0, 3\\)"),
        ({"intended_goal": -1}, "intended_goal"),
        ({"walls": ((0.5, 0.5, 0.4, 0.6),)}, "walls\\[0\\]"),
        ({"walls": ((0.5, 0.5, 1.2, 0.6),)}, "walls\\[0\\].*outside the arena"),
        ({"start_low": (0.4, 0.4), "start_high": (0.6, 0.5)}, "start region.*walls\\[0\\]"),
        ({"start_low": (0.05, 0.85), "start_high": (0.1, 0.9)}, "start region.*goals\\[0\\]"),
        ({"max_steps": 0}, "max_steps"),
        ({"goal_radius": 0.0}, "goal_radius"),
    ],
)
def test_invalid_configuration_raises_a_named_value_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    PointGoals(**kwargs)


def test_make_params_validates_and_casts():
  params = ENV.make_params(intended_goal=2, max_steps=7.0, start_low=[0.45, 0.05])
  assert params.intended_goal.dtype == jnp.int32 and int(params.intended_goal) == 2
  assert params.max_steps.dtype == jnp.int32 and params.start_low.dtype == jnp.float32
  assert int(ENV.params_for_goal(1).intended_goal) == 1
  with pytest.raises(ValueError, match="intended_goal must be in \\[0, 3\\)"):
    ENV.make_params(intended_goal=5)
  with pytest.raises(ValueError, match="intended_goal"):
    ENV.validate_params(PARAMS.replace(intended_goal=jnp.int32(-1)))
  with pytest.raises(ValueError, match="unknown PointGoals parameter.*'speed'"):
    ENV.make_params(speed=1.0)
  with pytest.raises(ValueError, match="action_noise_std"):
    ENV.make_params(action_noise_std=-0.1)


def test_batched_params_vmap_over_intended_goals():
  params = ENV.make_params(intended_goal=jnp.arange(3))
  gx, gy = ENV.goals[0]
  state = _state(gx, gy - ENV.goal_radius - 0.03)
  params_axes = jax.tree.map(lambda _: None, params).replace(intended_goal=0)
  rewards = jax.vmap(STEP_ENV, in_axes=(None, None, None, params_axes))(
      jax.random.key(0), state, UP, params)[2]
  np.testing.assert_allclose(np.asarray(rewards), [0.99, -0.01, -0.01], rtol=1e-6)


def test_render_draws_arena_walls_goals_and_agent():
  params = PARAMS.replace(intended_goal=jnp.int32(1))
  image = ENV.render(_state(0.5, 0.2), params)
  size = 256
  assert image.shape == (size, size, 3) and image.dtype == np.uint8

  def pixel(x, y):
    return tuple(int(c) for c in image[int((1 - y) * size), int(x * size)])

  assert pixel(0.5, 0.2) == (0, 0, 0)  # agent
  assert pixel(0.5, 0.5) == (60, 60, 60)  # wall
  assert pixel(0.5, 0.1) == (245, 245, 245)  # floor
  goal_x, goal_y = ENV.goals[1]
  assert pixel(goal_x + ENV.goal_radius, goal_y) == (0, 0, 0)  # intended goal outlined
  assert pixel(goal_x, goal_y) != pixel(ENV.goals[0][0], ENV.goals[0][1])
  # Other goals are pale (lighter than the intended goal's fill).
  assert sum(pixel(*ENV.goals[0])) > sum(pixel(goal_x, goal_y))


def test_render_without_state_draws_no_agent():
  image = ENV.render()
  assert image.shape == (256, 256, 3)
  assert not (image == 0).all(axis=-1)[200:, :].any()  # nothing black in the lower part


def test_render_trajectory_draws_the_path():
  path = np.array([[0.1, 0.1], [0.2, 0.2], [0.2, 0.3], [0.2, 0.3]])
  image = ENV.render_trajectory(path, PARAMS, colour=(0, 0, 255))
  assert image.shape == (256, 256, 3) and image.dtype == np.uint8
  row, col = int((1 - 0.15) * 256), int(0.15 * 256)
  assert (image[row - 1:row + 2, col - 1:col + 2] == (0, 0, 255)).all(axis=-1).any()
  several = ENV.render_trajectory(np.stack([path, path[::-1]]), PARAMS)
  assert several.shape == (256, 256, 3)
  with pytest.raises(ValueError, match="positions"):
    ENV.render_trajectory(np.zeros((3, 3)), PARAMS)
