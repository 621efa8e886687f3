"""Classic control environments: contracts under jit/vmap, and parity with gymnasium 1.4.0.

Parity contract: step gymnasium's reference (what ``gymnasium.make(id)`` returns, time limit
included) and ours from the same state with the same action; observations and rewards agree
within 1e-5, ``terminated`` and ``truncated`` exactly. The lockstep test copies the reference
state into ours before every step (float32 rounding of the state is then the only source of
difference); the free-running test lets our state evolve on its own for the first steps of
each episode.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import classic_control as cc
from envs.core import Box, Discrete

TOLERANCE = 1e-5


def _wrap_angle(theta: np.ndarray) -> np.ndarray:
  return ((theta + np.pi) % (2 * np.pi)) - np.pi


# ---------------------------------------------------------------------------------------------
# Per-environment test specifications
# ---------------------------------------------------------------------------------------------

# A policy maps (reference observation, rng, episode index) to a gymnasium action. Episodes
# alternate between a goal-seeking controller (so terminations happen) and random actions (so
# time limits happen), which covers both episode ends within the lockstep run.
Policy = Callable[[np.ndarray, np.random.Generator, int], Any]
# An edge-state sampler returns a reference physical state (float64) to step from.
EdgeSampler = Callable[[np.random.Generator], np.ndarray]


def _cartpole_policy(obs, rng, episode):
  if episode % 2 or rng.random() < 0.1:
    return int(rng.integers(2))
  x, x_dot, theta, theta_dot = obs
  return int(theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0)


def _pendulum_policy(obs, rng, episode):
  if episode % 2:  # random torques, some beyond the bound (exercises the clip)
    return np.array([rng.uniform(-2.5, 2.5)], np.float32)
  # energy pumping: spins up to the speed limit
  return np.array([2.0 * np.sign(obs[2]) + rng.normal(0.0, 0.3)], np.float32)


def _mountain_car_policy(obs, rng, episode):
  if episode % 2 or rng.random() < 0.2:
    return int(rng.integers(3))
  return 2 if obs[1] > 0 else 0


def _mountain_car_continuous_policy(obs, rng, episode):
  if episode % 2:
    return np.array([rng.uniform(-1.2, 1.2)], np.float32)
  return np.array([1.1 * np.sign(obs[1]) + rng.normal(0.0, 0.2)], np.float32)


def _acrobot_policy(obs, rng, episode):
  if episode % 2 or rng.random() < 0.1:
    return int(rng.integers(3))
  return 0 if obs[4] > 0 else 2  # torque against the first joint's swing pumps energy


def _cartpole_edge(rng):
  return np.array([rng.uniform(-2.6, 2.6), rng.uniform(-2.0, 2.0), rng.uniform(-0.25, 0.25),
                   rng.uniform(-3.0, 3.0)])


def _pendulum_edge(rng):
  speed = rng.choice([-8.0, 8.0]) if rng.random() < 0.2 else rng.uniform(-8.0, 8.0)
  return np.array([rng.uniform(-4 * np.pi, 4 * np.pi), speed])


def _mountain_car_edge(rng):
  u = rng.random()
  if u < 0.2:  # at the left wall
    position = -1.2
  elif u < 0.4:  # next to the goal
    position = rng.uniform(0.4, 0.6)
  else:
    position = rng.uniform(-1.2, 0.6)
  velocity = rng.choice([-0.07, 0.07]) if rng.random() < 0.2 else rng.uniform(-0.07, 0.07)
  return np.array([position, velocity])


def _acrobot_edge(rng):
  # Angles anywhere (the step often wraps them); velocities up to half their bounds. Nearer the
  # bounds the one-step map amplifies a float32 rounding of its input ~1e3-fold (gymnasium's own
  # float64 step moves by ~5e-4 under a one-ulp float32 perturbation of the state), so no float32
  # implementation can agree to 1e-5 there; clipping is tested separately below.
  return np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-np.pi, np.pi),
                   rng.uniform(-2 * np.pi, 2 * np.pi), rng.uniform(-4.5 * np.pi, 4.5 * np.pi)])


@dataclasses.dataclass(frozen=True)
class Spec:
  name: str
  gym_id: str
  state_cls: type
  reset_ranges: tuple[tuple[float, float], ...]  # [low, high] per physical state field
  policy: Policy
  edge_state: EdgeSampler
  edge_action: Callable[[np.random.Generator], Any]
  free_run_steps: int  # steps per episode that a float32 rollout stays within TOLERANCE
  gym_kwargs_variant: dict[str, Any]  # a non-default setting passed to gymnasium.make ...
  params_variant: dict[str, Any]  # ... and the same setting in our params
  unwrapped_variant: dict[str, Any]  # a non-default class attribute set on the reference


SPECS = {
    "CartPole": Spec(
        "CartPole", "CartPole-v1", cc.CartPoleState, ((-0.05, 0.05),) * 4,
        _cartpole_policy, _cartpole_edge, lambda rng: int(rng.integers(2)), 50,
        {"sutton_barto_reward": True},
        {"sutton_barto_reward": True, "kinematics_integrator": "semi-implicit euler"},
        {"kinematics_integrator": "semi-implicit euler"}),
    "Pendulum": Spec(
        "Pendulum", "Pendulum-v1", cc.PendulumState, ((-np.pi, np.pi), (-1.0, 1.0)),
        _pendulum_policy, _pendulum_edge,
        lambda rng: np.array([rng.uniform(-3.0, 3.0)], np.float32), 25,
        {"g": 9.81}, {"g": 9.81}, {}),
    "MountainCar": Spec(
        "MountainCar", "MountainCar-v0", cc.MountainCarState, ((-0.6, -0.4), (0.0, 0.0)),
        _mountain_car_policy, _mountain_car_edge, lambda rng: int(rng.integers(3)), 200,
        {"goal_velocity": 0.02}, {"goal_velocity": 0.02}, {}),
    "MountainCarContinuous": Spec(
        "MountainCarContinuous", "MountainCarContinuous-v0", cc.MountainCarContinuousState,
        ((-0.6, -0.4), (0.0, 0.0)), _mountain_car_continuous_policy, _mountain_car_edge,
        lambda rng: np.array([rng.uniform(-1.5, 1.5)], np.float32), 999,
        {"goal_velocity": 0.02}, {"goal_velocity": 0.02}, {}),
    "Acrobot": Spec(
        "Acrobot", "Acrobot-v1", cc.AcrobotState, ((-0.1, 0.1),) * 4,
        _acrobot_policy, _acrobot_edge, lambda rng: int(rng.integers(3)), 50,
        {}, {"book_or_nips": "nips"}, {"book_or_nips": "nips"}),
}
NAMES = list(SPECS)


@dataclasses.dataclass(frozen=True)
class Case:
  """One environment with its jitted functions, compiled once per test module."""

  spec: Spec
  env: Any
  params: Any
  step_env: Callable
  step: Callable
  reset_batch: Callable
  step_batch: Callable


@functools.cache
def _case(name: str) -> Case:
  spec = SPECS[name]
  env, params = envs.make(spec.name)
  return Case(
      spec=spec, env=env, params=params,
      step_env=jax.jit(env.step_env),
      step=jax.jit(env.step),
      reset_batch=jax.jit(jax.vmap(env.reset, in_axes=(0, None))),
      step_batch=jax.jit(jax.vmap(env.step)))


@pytest.fixture(scope="module", params=NAMES)
def case(request) -> Case:
  return _case(request.param)


def _our_state(spec: Spec, reference_state: Any, time: int, wrap_pendulum: bool = True):
  """Our state from gymnasium's ``env.unwrapped.state`` and the elapsed step count.

  Our Pendulum keeps theta in [-pi, pi) (gymnasium's grows without bound); ``wrap_pendulum``
  False passes the reference angle through unchanged, which ``step_env`` must also accept.
  """
  physical = np.array(reference_state, np.float64)
  if spec.name == "Pendulum" and wrap_pendulum:
    physical[0] = _wrap_angle(physical[0])
  return spec.state_cls(*physical.astype(np.float32), np.int32(time))


def _our_action(action: Any) -> np.ndarray:
  if isinstance(action, np.ndarray):
    return action.astype(np.float32)
  return np.int32(action)


def _make_reference(spec: Spec, seed: int, variant: bool = False):
  reference = gymnasium.make(spec.gym_id, **(spec.gym_kwargs_variant if variant else {}))
  if variant:
    for attribute, value in spec.unwrapped_variant.items():
      setattr(reference.unwrapped, attribute, value)
  obs, _ = reference.reset(seed=seed)
  return reference, obs


class _Recorder:
  """Collects both sides of every step and asserts agreement at the end."""

  def __init__(self):
    self.ours: list[tuple] = []
    self.theirs: list[tuple] = []

  def add(self, ours, theirs):
    obs, _, reward, terminated, truncated, _ = ours
    self.ours.append((np.asarray(obs), float(reward), bool(terminated), bool(truncated)))
    self.theirs.append(theirs)

  def check(self):
    for field, name in enumerate(("obs", "reward", "terminated", "truncated")):
      ours = np.array([row[field] for row in self.ours])
      theirs = np.array([row[field] for row in self.theirs])
      if name in ("obs", "reward"):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE, err_msg=name)
      else:
        mismatches = np.flatnonzero(ours != theirs)
        assert mismatches.size == 0, f"{name} differs at steps {mismatches[:10]}"


# ---------------------------------------------------------------------------------------------
# Parity with gymnasium
# ---------------------------------------------------------------------------------------------


def test_lockstep_parity_across_episodes(case: Case):
  spec = case.spec
  reference, obs_ref = _make_reference(spec, seed=0)
  rng = np.random.default_rng(0)
  key = jax.random.key(0)
  recorder = _Recorder()
  time, episode, terminations, truncations = 0, 0, 0, 0
  for _ in range(1200):
    state = _our_state(spec, reference.unwrapped.state, time)
    action = spec.policy(obs_ref, rng, episode)
    obs_ref, reward_ref, terminated_ref, truncated_ref, _ = reference.step(action)
    recorder.add(case.step_env(key, state, _our_action(action), case.params),
                 (obs_ref, reward_ref, terminated_ref, truncated_ref))
    time += 1
    if terminated_ref or truncated_ref:
      terminations += terminated_ref
      truncations += truncated_ref
      episode, time = episode + 1, 0
      obs_ref, _ = reference.reset()
      # the new episode starts from the reference's initial state, copied at the next step
  recorder.check()
  # the run must have crossed both kinds of episode end (Pendulum never terminates)
  assert truncations >= 1
  assert terminations >= (0 if spec.name == "Pendulum" else 1)


def test_free_running_parity(case: Case):
  spec = case.spec
  key = jax.random.key(0)
  recorder = _Recorder()
  for seed in range(4):
    reference, obs_ref = _make_reference(spec, seed=seed)
    rng = np.random.default_rng(seed)
    state = _our_state(spec, reference.unwrapped.state, 0)
    for _ in range(spec.free_run_steps):
      action = spec.policy(obs_ref, rng, seed)
      obs_ref, reward_ref, terminated_ref, truncated_ref, _ = reference.step(action)
      ours = case.step_env(key, state, _our_action(action), case.params)
      state = ours[1]
      recorder.add(ours, (obs_ref, reward_ref, terminated_ref, truncated_ref))
      if terminated_ref or truncated_ref:
        break
  recorder.check()


def _edge_parity(case: Case, params, variant: bool, num_steps: int, seed: int):
  """Steps both from sampled edge states (walls, bounds, clips, wraps, time-limit ends)."""
  spec = case.spec
  reference, _ = _make_reference(spec, seed=seed, variant=variant)
  max_steps = reference.spec.max_episode_steps
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  recorder = _Recorder()
  for _ in range(num_steps):
    physical = spec.edge_state(rng)
    time = int(rng.integers(max_steps - 3, max_steps) if rng.random() < 0.5
               else rng.integers(0, max_steps))
    reference.unwrapped.state = physical.copy()
    if spec.name == "CartPole":  # a fresh episode as far as the reference's warning logic goes
      reference.unwrapped.steps_beyond_terminated = None
    reference._elapsed_steps = time  # the TimeLimit wrapper's counter
    action = spec.edge_action(rng)
    obs_ref, reward_ref, terminated_ref, truncated_ref, _ = reference.step(action)
    our_state = _our_state(spec, physical, time, wrap_pendulum=bool(rng.random() < 0.5))
    recorder.add(case.step_env(key, our_state, _our_action(action), params),
                 (obs_ref, reward_ref, terminated_ref, truncated_ref))
  recorder.check()
  return recorder


def test_edge_state_parity(case: Case):
  recorder = _edge_parity(case, case.params, variant=False, num_steps=400, seed=1)
  truncated = np.array([row[3] for row in recorder.theirs])
  terminated = np.array([row[2] for row in recorder.theirs])
  assert truncated.any()
  if case.spec.name != "Pendulum":
    assert terminated.any()
    # gymnasium's TimeLimit truncates whether or not the step also terminated
    assert (terminated & truncated).any()


def test_variant_params_parity(case: Case):
  params = case.params.replace(**case.spec.params_variant)
  _edge_parity(case, params, variant=True, num_steps=200, seed=2)


def test_defaults_match_gymnasium_registration(case: Case):
  reference = gymnasium.make(case.spec.gym_id)
  assert case.params.max_steps == gymnasium.spec(case.spec.gym_id).max_episode_steps
  ours_obs, theirs_obs = case.env.observation_space(case.params), reference.observation_space
  assert isinstance(ours_obs, Box)
  assert tuple(ours_obs.shape) == theirs_obs.shape
  np.testing.assert_array_equal(np.broadcast_to(ours_obs.low, ours_obs.shape), theirs_obs.low)
  np.testing.assert_array_equal(np.broadcast_to(ours_obs.high, ours_obs.shape), theirs_obs.high)
  ours_act, theirs_act = case.env.action_space(case.params), reference.action_space
  if isinstance(theirs_act, gymnasium.spaces.Discrete):
    assert isinstance(ours_act, Discrete) and ours_act.n == theirs_act.n
  else:
    assert isinstance(ours_act, Box) and tuple(ours_act.shape) == theirs_act.shape
    np.testing.assert_array_equal(np.broadcast_to(ours_act.low, ours_act.shape), theirs_act.low)
    np.testing.assert_array_equal(np.broadcast_to(ours_act.high, ours_act.shape),
                                  theirs_act.high)


def test_initial_state_distribution_matches_gymnasium(case: Case):
  spec = case.spec
  obs, state = case.reset_batch(jax.random.split(jax.random.key(3), 2048), case.params)
  assert obs.dtype == jnp.float32
  assert all(case.env.observation_space(case.params).contains(o) for o in np.asarray(obs[:64]))
  np.testing.assert_array_equal(state.time, 0)
  fields = [f.name for f in dataclasses.fields(spec.state_cls) if f.name != "time"]
  assert len(fields) == len(spec.reset_ranges)
  for field, (low, high) in zip(fields, spec.reset_ranges):
    values = np.asarray(getattr(state, field))
    assert values.min() >= np.float32(low) and values.max() <= np.float32(high), field
    if low < high:  # uniform: the sample reaches both ends of the range
      width = high - low
      assert values.min() < low + 0.01 * width and values.max() > high - 0.01 * width, field
  # gymnasium's resets fall in the same ranges
  reference = gymnasium.make(spec.gym_id)
  for seed in range(100):
    reference.reset(seed=seed)
    physical = np.asarray(reference.unwrapped.state, np.float64)
    for value, (low, high) in zip(physical, spec.reset_ranges):
      assert low <= value <= high


# ---------------------------------------------------------------------------------------------
# Contracts: jit, vmap, auto-reset
# ---------------------------------------------------------------------------------------------


def _sample_actions(space, rng: np.random.Generator, num: int) -> np.ndarray:
  if isinstance(space, Discrete):
    return rng.integers(0, space.n, num).astype(np.int32)
  return rng.uniform(space.low, space.high, (num, *space.shape)).astype(np.float32)


def test_step_under_jit_and_vmap_matches_single(case: Case):
  """vmap over keys, states, actions and params (dynamics constants are pytree leaves)."""
  batch = 8
  reset_keys = jax.random.split(jax.random.key(4), batch)
  step_keys = jax.random.split(jax.random.key(5), batch)
  actions = _sample_actions(case.env.action_space(case.params), np.random.default_rng(6), batch)
  params_batch = jax.tree.map(lambda leaf: np.stack([np.asarray(leaf)] * batch), case.params)
  obs, state = case.reset_batch(reset_keys, case.params)
  assert obs.shape == (batch, *case.env.observation_space(case.params).shape)
  out = case.step_batch(step_keys, state, actions, params_batch)
  obs_next, _, reward, terminated, truncated, info = out
  assert reward.shape == (batch,) and reward.dtype == jnp.float32
  assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
  assert obs_next.dtype == jnp.float32
  assert set(info) == {"final_observation"}
  for i in (0, batch - 1):
    single_state = jax.tree.map(lambda x: np.asarray(x)[i], state)
    single = case.step(step_keys[i], single_state, actions[i], case.params)
    batched = jax.tree.map(lambda x: np.asarray(x)[i], out)
    for batched_leaf, single_leaf in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
      if jnp.issubdtype(single_leaf.dtype, jnp.floating):
        np.testing.assert_allclose(batched_leaf, single_leaf, rtol=1e-6, atol=1e-6)
      else:
        np.testing.assert_array_equal(batched_leaf, single_leaf)


def test_scan_rollout_auto_resets(case: Case):
  """``lax.scan`` of ``step`` with random actions: time counts up and restarts after each end."""
  env, params = case.env, case.params
  num_envs, num_steps = 4, 260
  space = env.action_space(params)

  @jax.jit
  def rollout(key):
    key_reset, key_scan = jax.random.split(key)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(key_reset, num_envs), params)

    def body(state, key):
      key_action, key_step = jax.random.split(key)
      action = jax.vmap(space.sample)(jax.random.split(key_action, num_envs))
      obs, state_next, _, terminated, truncated, info = jax.vmap(
          env.step, in_axes=(0, 0, 0, None))(
              jax.random.split(key_step, num_envs), state, action, params)
      return state_next, (obs, state.time, state_next.time, terminated | truncated,
                          info["final_observation"])

    _, outputs = jax.lax.scan(body, state, jax.random.split(key_scan, num_steps))
    return outputs

  obs, time_before, time_after, done, final_obs = map(np.asarray, rollout(jax.random.key(10)))
  assert np.isfinite(obs).all() and np.isfinite(final_obs).all()
  np.testing.assert_array_equal(time_after, np.where(done, 0, time_before + 1))
  np.testing.assert_array_equal(final_obs[~done], obs[~done])
  assert (time_before < params.max_steps).all()
  if params.max_steps < num_steps:  # every episode ends by the time limit at the latest
    assert done.any(axis=0).all()
  observation_space = env.observation_space(params)
  assert all(observation_space.contains(o) for o in obs[:, 0])


# Per environment: a state (fields before ``time``) from which the next step terminates.
_TERMINATING_STATES = {
    "CartPole": (0.0, 0.0, 0.209, 1.0),
    "MountainCar": (0.49, 0.06),
    "MountainCarContinuous": (0.44, 0.06),
    "Acrobot": (math.pi, 0.0, 0.0, 0.0),  # the tip straight up
}


@pytest.mark.parametrize("ending", ["time_limit", "termination", "none"])
def test_step_auto_reset_keeps_final_observation(case: Case, ending: str):
  env, params, spec = case.env, case.params, case.spec
  _, states = case.reset_batch(jax.random.split(jax.random.key(11), 1), params)
  state = jax.tree.map(lambda x: np.asarray(x)[0], states)
  if ending == "time_limit":
    state = state.replace(time=np.int32(params.max_steps - 1))
  elif ending == "termination":
    if spec.name not in _TERMINATING_STATES:
      assert spec.name == "Pendulum"  # the only one that never terminates
      return
    physical = _TERMINATING_STATES[spec.name]
    state = spec.state_cls(*np.asarray(physical, np.float32), np.int32(3))
  action = _sample_actions(env.action_space(params), np.random.default_rng(12), 1)[0]
  key = jax.random.key(13)

  obs, state_next, reward, terminated, truncated, info = case.step(key, state, action, params)
  obs_direct, state_direct, reward_direct, terminated_direct, truncated_direct, _ = (
      case.step_env(key, state, action, params))
  np.testing.assert_array_equal(info["final_observation"], obs_direct)
  assert float(reward) == float(reward_direct)
  assert bool(terminated) == bool(terminated_direct) == (ending == "termination")
  assert bool(truncated) == bool(truncated_direct) == (ending == "time_limit")
  if ending == "none":
    np.testing.assert_array_equal(obs, obs_direct)
    assert int(state_next.time) == int(state.time) + 1
    return
  # a fresh episode: time 0, physical state inside the initial ranges
  assert int(state_next.time) == 0
  assert not np.array_equal(obs, obs_direct)
  fields = [f.name for f in dataclasses.fields(spec.state_cls) if f.name != "time"]
  for field, (low, high) in zip(fields, spec.reset_ranges):
    assert np.float32(low) <= float(getattr(state_next, field)) <= np.float32(high)


# ---------------------------------------------------------------------------------------------
# Environment-specific behaviour
# ---------------------------------------------------------------------------------------------


def test_acrobot_clips_velocities_and_wraps_angles():
  case = _case("Acrobot")
  state = cc.AcrobotState(*np.float32([3.1, -3.1, 4 * np.pi, -9 * np.pi]), np.int32(0))
  obs, state_next, *_ = case.step_env(jax.random.key(0), state, np.int32(2), case.params)
  assert float(state_next.dtheta1) == np.float32(4 * np.pi)
  assert float(state_next.dtheta2) == np.float32(-9 * np.pi)
  for angle in (state_next.theta1, state_next.theta2):
    assert -np.float32(np.pi) <= float(angle) <= np.float32(np.pi)
  np.testing.assert_allclose(obs[4:], [4 * np.pi, -9 * np.pi], rtol=1e-7)


def test_mountain_car_left_wall_stops_the_car():
  for name in ("MountainCar", "MountainCarContinuous"):
    case = _case(name)
    state = case.spec.state_cls(np.float32(-1.19), np.float32(-0.05), np.int32(0))
    action = np.int32(0) if case.env.discrete_actions else np.float32([-1.0])
    obs, *_ = case.step_env(jax.random.key(0), state, action, case.params)
    np.testing.assert_array_equal(obs, np.float32([-1.2, 0.0]))


def test_mountain_car_continuous_reward_uses_unclipped_action():
  case = _case("MountainCarContinuous")
  state = cc.MountainCarContinuousState(np.float32(-0.5), np.float32(0.0), np.int32(0))
  _, _, reward, *_ = case.step_env(jax.random.key(0), state, np.float32([2.0]), case.params)
  np.testing.assert_allclose(reward, -0.4, rtol=1e-6)


def test_pendulum_keeps_theta_wrapped():
  case = _case("Pendulum")
  state = cc.PendulumState(np.float32(3.1), np.float32(8.0), np.int32(0))
  obs, state_next, *_ = case.step_env(jax.random.key(0), state, np.float32([2.0]),
                                      case.params)
  assert -np.pi <= float(state_next.theta) < np.pi
  expected_theta = 3.1 + 8.0 * 0.05  # speed clipped at 8, then past pi
  np.testing.assert_allclose(obs[:2], [np.cos(expected_theta), np.sin(expected_theta)],
                             atol=1e-6)


def test_invalid_static_settings_raise_value_error():
  with pytest.raises(ValueError, match="book_or_nips"):
    cc.AcrobotParams(book_or_nips="paper")
  with pytest.raises(ValueError, match="kinematics_integrator"):
    cc.CartPoleParams(kinematics_integrator="rk4")


def test_registry_builds_each_environment():
  for name in NAMES:
    env, params = envs.make(name)
    assert env.name == name
    assert params == env.default_params
