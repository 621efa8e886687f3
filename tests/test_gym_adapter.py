"""Tests of the gymnasium adapters for every registered environment."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import envs
from envs.gym_adapter import GymnasiumEnv, GymnasiumVectorEnv

NAMES = envs.names()
RENDERABLE = [name for name in NAMES if name.startswith(("GoalGrid", "PointGoals"))]
CLASSIC = [name for name in NAMES if name not in RENDERABLE]

# Warnings check_env may raise for design choices copied from gymnasium's own reference
# environments (CartPole's unbounded velocities, Pendulum's [-2, 2] torque), plus the notice that
# ``gymnasium.make`` wraps the environment.
ALLOWED_WARNINGS = (
    "minimum value is -infinity",
    "maximum value is infinity",
    "we recommend using a symmetric and normalized space",
    "is different from the unwrapped version",
)

# A PointGoals variant whose episodes are deterministic: a fixed start just below goal 0 (one
# step of 0.05 per unit action, so reaching goal 0 takes two steps up), no action noise.
DETERMINISTIC_POINT = {
    "env_params": {"start_low": (0.1, 0.75), "start_high": (0.1, 0.75), "max_steps": 6},
}


def _check_env_with_only_allowed_warnings(env):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    check_env(env)
  unexpected = [str(w.message) for w in caught
                if not any(allowed in str(w.message) for allowed in ALLOWED_WARNINGS)]
  assert not unexpected


@pytest.mark.parametrize("name", NAMES)
def test_check_env_passes_for_every_registered_id(name):
  env = gymnasium.make(envs.gym_id(name))
  _check_env_with_only_allowed_warnings(env.unwrapped)
  _check_env_with_only_allowed_warnings(env)
  expected_modes = ["rgb_array"] if name in RENDERABLE else []
  assert env.unwrapped.metadata["render_modes"] == expected_modes


@pytest.mark.parametrize("name", NAMES)
def test_spaces_dtypes_and_step_types(name):
  env = gymnasium.make(envs.gym_id(name))
  jax_env = env.unwrapped.jax_env
  obs, info = env.reset(seed=0)
  assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.flags.writeable
  assert obs in env.observation_space and info == {}
  assert env.observation_space.shape == jax_env.observation_space(env.unwrapped.params).shape
  if isinstance(env.action_space, gymnasium.spaces.Discrete):
    assert env.action_space.n == jax_env.num_actions
    actions = [1, np.int64(1), np.int32(0), np.array(1), np.array([0])]
  else:
    assert env.action_space.dtype == np.float32
    assert env.action_space.shape == (jax_env.num_actions,)
    actions = [env.action_space.sample(), list(np.zeros(jax_env.num_actions))]
  for action in actions:
    obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert isinstance(info, dict)


def test_invalid_actions_raise():
  env = gymnasium.make("mbrl_drift/GoalGrid-OpenRoom-v0").unwrapped
  env.reset(seed=0)
  for bad in (4, -1, 1.5, np.array([0, 1])):
    with pytest.raises(ValueError, match="action"):
      env.step(bad)
  point = gymnasium.make("mbrl_drift/PointGoals-v0").unwrapped
  point.reset(seed=0)
  with pytest.raises(ValueError, match="shape"):
    point.step(np.zeros(3))


def test_step_and_render_before_reset_raise():
  env = GymnasiumEnv("PointGoals", render_mode="rgb_array")
  with pytest.raises(gymnasium.error.ResetNeeded):
    env.step(np.zeros(2, np.float32))
  with pytest.raises(gymnasium.error.ResetNeeded):
    env.render()


def test_make_adds_no_time_limit_and_the_env_truncates_itself():
  env = gymnasium.make("mbrl_drift/PointGoals-v0", env_params={"max_steps": 4})
  wrappers = []
  layer = env
  while isinstance(layer, gymnasium.Wrapper):
    wrappers.append(type(layer))
    layer = layer.env
  assert gymnasium.wrappers.TimeLimit not in wrappers
  assert gymnasium.spec("mbrl_drift/PointGoals-v0").max_episode_steps is None
  env.reset(seed=0)
  truncations = [env.step(np.zeros(2, np.float32))[3] for _ in range(4)]
  assert truncations == [False, False, False, True]


def test_max_episode_steps_of_make_shortens_episodes():
  env = gymnasium.make("mbrl_drift/PointGoals-v0", max_episode_steps=3)
  env.reset(seed=0)
  truncations = [env.step(np.zeros(2, np.float32))[3] for _ in range(3)]
  assert truncations == [False, False, True]
  assert env.spec.max_episode_steps == 3


def test_reset_seeding_is_deterministic():
  env = gymnasium.make("mbrl_drift/PointGoals-v0").unwrapped
  obs_a, _ = env.reset(seed=3)
  steps_a = [env.step(np.ones(2, np.float32))[0] for _ in range(3)]
  next_a, _ = env.reset()
  obs_b, _ = env.reset(seed=3)
  steps_b = [env.step(np.ones(2, np.float32))[0] for _ in range(3)]
  next_b, _ = env.reset()
  np.testing.assert_array_equal(obs_a, obs_b)
  np.testing.assert_array_equal(np.stack(steps_a), np.stack(steps_b))
  np.testing.assert_array_equal(next_a, next_b)
  assert not np.array_equal(obs_a, next_a)
  obs_c, _ = env.reset(seed=4)
  assert not np.array_equal(obs_a, obs_c)


def test_goal_info_reaches_gymnasium_users():
  env = gymnasium.make("mbrl_drift/PointGoals-v0", **DETERMINISTIC_POINT)
  env.reset(seed=0)
  up = np.array([0.0, 1.0], np.float32)
  _, reward, terminated, truncated, info = env.step(up)
  assert not terminated and info["reached_goal"] == -1
  _, reward, terminated, truncated, info = env.step(up)
  assert terminated and not truncated
  assert info["reached_goal"] == 0 and info["reached_goal"].dtype == np.int32
  assert reward == pytest.approx(0.99)


def test_env_kwargs_and_env_params_pass_through():
  env = gymnasium.make(
      "mbrl_drift/PointGoals-v0", env_kwargs={"walls": []}, env_params={"intended_goal": 2})
  assert env.unwrapped.jax_env.walls.shape == (0, 4)
  assert int(env.unwrapped.params.intended_goal) == 2
  grid = gymnasium.make("mbrl_drift/GoalGrid-FourRooms-v0", env_params={"intended_goal": 1})
  assert int(grid.unwrapped.params.intended_goal) == 1
  cart = gymnasium.make("mbrl_drift/CartPole-v0", env_params={"max_steps": 7})
  assert cart.unwrapped.params.max_steps == 7
  with pytest.raises(ValueError, match="intended_goal"):
    gymnasium.make("mbrl_drift/PointGoals-v0", env_params={"intended_goal": 3})
  with pytest.raises(ValueError, match="unknown.*gravity_typo"):
    gymnasium.make("mbrl_drift/CartPole-v0", env_params={"gravity_typo": 1.0})


@pytest.mark.parametrize("name", RENDERABLE)
def test_rgb_array_render(name):
  env = gymnasium.make(envs.gym_id(name), render_mode="rgb_array")
  env.reset(seed=0)
  frame = env.render()
  inner = env.unwrapped
  expected = inner.jax_env.render(inner.state, inner.params)
  assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3
  assert frame.shape == expected.shape and frame.shape[0] >= 64
  np.testing.assert_array_equal(frame, expected)
  env.step(env.action_space.sample())
  assert env.render().shape == frame.shape


@pytest.mark.parametrize("name", CLASSIC)
def test_classic_control_has_no_render_mode(name):
  with pytest.raises(ValueError, match="render_mode='rgb_array' is not supported"):
    gymnasium.make(envs.gym_id(name), render_mode="rgb_array")
  env = gymnasium.make(envs.gym_id(name))
  env.reset(seed=0)
  assert env.render() is None


# ---------------------------------------------------------------------------------------------
# Vector environment
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_make_vec_for_every_registered_id(name):
  vec = gymnasium.make_vec(envs.gym_id(name), num_envs=3, vectorization_mode="vector_entry_point")
  assert isinstance(vec, GymnasiumVectorEnv) and vec.num_envs == 3
  assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
  single = gymnasium.make(envs.gym_id(name))
  assert vec.single_observation_space == single.observation_space
  assert vec.single_action_space == single.action_space
  obs, info = vec.reset(seed=0)
  assert obs.shape == (3, *single.observation_space.shape) and obs.dtype == np.float32
  assert obs in vec.observation_space and info == {}
  vec.action_space.seed(0)
  obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
  assert obs in vec.observation_space
  assert reward.shape == terminated.shape == truncated.shape == (3,)
  assert terminated.dtype == truncated.dtype == np.bool_
  assert vec.spec.id == envs.gym_id(name)


def test_vector_env_matches_single_envs_step_for_step():
  num_envs = 3
  vec = gymnasium.make_vec(
      "mbrl_drift/PointGoals-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
      **DETERMINISTIC_POINT)
  singles = [gymnasium.make("mbrl_drift/PointGoals-v0", **DETERMINISTIC_POINT)
             for _ in range(num_envs)]
  vec_obs, _ = vec.reset(seed=1)
  single_obs = [env.reset(seed=10 + i)[0] for i, env in enumerate(singles)]
  np.testing.assert_allclose(vec_obs, np.stack(single_obs))
  # env 0 reaches goal 0 every 2 steps, env 1 times out after 6, env 2 walks along the top.
  actions = np.array([[0.0, 1.0], [0.3, -1.0], [1.0, 0.0]], np.float32)
  episodes_ended = np.zeros(num_envs, int)
  for _ in range(13):
    vec_out = vec.step(actions)
    for i, env in enumerate(singles):
      obs, reward, terminated, truncated, info = env.step(actions[i])
      assert vec_out[1][i] == pytest.approx(reward)
      assert vec_out[2][i] == terminated and vec_out[3][i] == truncated
      if terminated or truncated:
        episodes_ended[i] += 1
        final_info = vec_out[4]["final_info"]
        assert vec_out[4]["_final_obs"][i] and final_info["_reached_goal"][i]
        np.testing.assert_allclose(vec_out[4]["final_obs"][i], obs, rtol=1e-6)
        assert final_info["reached_goal"][i] == info["reached_goal"]
        obs, _ = env.reset()
      else:
        assert vec_out[4]["_reached_goal"][i]
        assert vec_out[4]["reached_goal"][i] == info["reached_goal"]
      np.testing.assert_allclose(vec_out[0][i], obs, rtol=1e-6)
  assert episodes_ended.tolist() == [6, 2, 2]


def test_vector_info_layout_matches_sync_vector_env_same_step():
  kwargs = DETERMINISTIC_POINT
  ours = gymnasium.make_vec(
      "mbrl_drift/PointGoals-v0", num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
  reference = gymnasium.vector.SyncVectorEnv(
      [lambda: gymnasium.make("mbrl_drift/PointGoals-v0", **kwargs)] * 3,
      autoreset_mode=AutoresetMode.SAME_STEP)
  ours.reset(seed=0)
  reference.reset(seed=0)
  actions = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0]], np.float32)
  for _ in range(2):  # the second step ends env 0's episode only
    ours_out, reference_out = ours.step(actions), reference.step(actions)
  ours_info, reference_info = ours_out[4], reference_out[4]
  assert set(ours_info) == set(reference_info)
  assert set(ours_info["final_info"]) == set(reference_info["final_info"])
  for key in ("_final_obs", "_final_info", "_reached_goal"):
    np.testing.assert_array_equal(ours_info[key], reference_info[key])
  np.testing.assert_array_equal(ours_info["final_info"]["reached_goal"],
                                reference_info["final_info"]["reached_goal"])
  assert list(ours_info["final_obs"][1:]) == [None, None]
  assert list(reference_info["final_obs"][1:]) == [None, None]
  np.testing.assert_allclose(ours_info["final_obs"][0], reference_info["final_obs"][0])
  np.testing.assert_allclose(ours_out[0], reference_out[0])


def test_vector_seeding_and_partial_reset():
  vec = gymnasium.make_vec("mbrl_drift/PointGoals-v0", num_envs=3,
                           vectorization_mode="vector_entry_point")
  obs_a, _ = vec.reset(seed=5)
  steps_a = vec.step(np.ones((3, 2), np.float32))[0]
  obs_b, _ = vec.reset(seed=5)
  steps_b = vec.step(np.ones((3, 2), np.float32))[0]
  np.testing.assert_array_equal(obs_a, obs_b)
  np.testing.assert_array_equal(steps_a, steps_b)
  assert len(np.unique(obs_a[:, 0])) == 3  # sub-environments start differently
  obs_c, _ = vec.reset(seed=6)
  assert not np.allclose(obs_a, obs_c)
  mask = np.array([True, False, True])
  obs_d, _ = vec.reset(options={"reset_mask": mask})
  np.testing.assert_array_equal(obs_d[~mask], obs_c[~mask])
  assert not np.allclose(obs_d[mask], obs_c[mask])
  with pytest.raises(ValueError, match="reset_mask"):
    vec.reset(options={"reset_mask": np.ones(2, bool)})


def test_vector_render_and_bad_arguments():
  vec = gymnasium.make_vec("mbrl_drift/PointGoals-v0", num_envs=3,
                           vectorization_mode="vector_entry_point", render_mode="rgb_array")
  vec.reset(seed=0)
  frames = vec.render()
  assert len(frames) == 3 and all(f.shape == (256, 256, 3) for f in frames)
  assert not np.array_equal(frames[0], frames[1])  # agents start at different places
  with pytest.raises(ValueError, match="num_envs"):
    GymnasiumVectorEnv("PointGoals", num_envs=0)
  with pytest.raises(ValueError, match="max_episode_steps"):
    GymnasiumVectorEnv("PointGoals", num_envs=2, max_episode_steps=10)
  with pytest.raises(ValueError, match="actions"):
    vec.step(np.zeros((2, 2), np.float32))


# ---------------------------------------------------------------------------------------------
# Third-party gymnasium consumers
# ---------------------------------------------------------------------------------------------


def test_tabular_q_learning_through_standard_wrappers_learns_the_intended_goal():
  env = gymnasium.make("mbrl_drift/GoalGrid-OpenRoom-v0")
  env = gymnasium.wrappers.FlattenObservation(env)
  env = gymnasium.wrappers.RecordEpisodeStatistics(env)
  rng = np.random.default_rng(0)
  q_values: dict[bytes, np.ndarray] = {}
  obs, _ = env.reset(seed=0)
  returns, lengths, goals = [], [], []
  for _ in range(3000):
    q = q_values.setdefault(obs.tobytes(), np.zeros(env.action_space.n))
    action = int(rng.integers(env.action_space.n)) if rng.random() < 0.2 else int(np.argmax(q))
    next_obs, reward, terminated, truncated, info = env.step(action)
    next_q = q_values.setdefault(next_obs.tobytes(), np.zeros(env.action_space.n))
    target = reward + (0.0 if terminated else 0.95 * next_q.max())
    q[action] += 0.5 * (target - q[action])
    obs = next_obs
    if terminated or truncated:
      returns.append(float(info["episode"]["r"]))
      lengths.append(int(info["episode"]["l"]))
      goals.append(int(info["reached_goal"]))
      obs, _ = env.reset()
  assert len(returns) >= 30
  max_steps = int(env.unwrapped.params.max_steps)
  assert all(1 <= length <= max_steps for length in lengths)
  # A return is 1 for the intended goal A minus 0.01 per step (0 for another goal), so
  # it always lies in [-0.01 * max_steps, 0.99].
  assert min(returns) >= -0.01 * max_steps - 1e-6 and max(returns) <= 0.99 + 1e-6
  # The greedy policy learned through the wrappers walks the 9-step shortest path to goal A.
  obs, _ = env.reset(seed=1)
  for _ in range(max_steps):
    action = int(np.argmax(q_values.get(obs.tobytes(), np.zeros(env.action_space.n))))
    obs, reward, terminated, truncated, info = env.step(action)
    if terminated or truncated:
      break
  assert terminated and info["reached_goal"] == 0
  assert info["episode"]["l"] == 9 and info["episode"]["r"] == pytest.approx(0.91)
  assert np.mean(np.array(goals[-10:]) == 0) >= 0.5


def test_vector_record_episode_statistics_with_a_random_policy():
  vec = gymnasium.make_vec("mbrl_drift/GoalGrid-ForkMaze-v0", num_envs=3,
                           vectorization_mode="vector_entry_point")
  vec = gymnasium.wrappers.vector.RecordEpisodeStatistics(vec)
  vec.reset(seed=0)
  vec.action_space.seed(0)
  rewards_so_far = np.zeros(3)
  completed = 0
  for _ in range(200):
    _, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
    rewards_so_far += reward
    done = terminated | truncated
    if done.any():
      np.testing.assert_allclose(info["episode"]["r"][done], rewards_so_far[done], rtol=1e-5)
      assert np.all(info["final_info"]["_reached_goal"] == done)
      completed += int(done.sum())
      rewards_so_far[done] = 0.0
  assert completed >= 10
  assert len(vec.return_queue) == min(completed, vec.return_queue.maxlen)
