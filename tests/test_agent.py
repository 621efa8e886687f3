"""The planning agent: components, planner, n-step targets, buffer, joint training."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import buffer as replay
from mbrl_drift.agents.base import EnvSpec, eval_args, get_path, set_path
from mbrl_drift.agents.mpc.agent import PlannerAgent as Agent
from mbrl_drift.config import AgentConfig, TrainConfig, replace
from mbrl_drift.evaluate import evaluate, outcome_summary
from mbrl_drift.agents.mpc.planner import BOLTZMANN, EPSILON, GREEDY, act, exhaustive_scores, sequence_returns
from mbrl_drift.agents.mpc.train import component_optimiser, n_step_targets

DISCRETE_SPEC = EnvSpec(obs_dim=5, action_dim=3, discrete=True)
CONTINUOUS_SPEC = EnvSpec(obs_dim=4, action_dim=2, discrete=False, action_low=(-2.0, 0.0),
                          action_high=(2.0, 1.0))


def small_agent(spec=DISCRETE_SPEC, **changes):
  config = AgentConfig(latent_dim=6, hidden_dim=16, num_layers=1, horizon=2, max_horizon=3,
                       **changes)
  return Agent(config=config, spec=spec)


def test_components_are_separate_subtrees():
  agent = small_agent(use_actor=True)
  params = agent.init(jax.random.key(0))
  assert set(params) == {"world_model", "value", "actor"}
  assert set(params["world_model"]) == {"encoder", "dynamics", "reward", "termination", "decoder"}
  assert set(agent.component_paths) == {
      "world_model/encoder", "world_model/dynamics", "world_model/reward",
      "world_model/termination", "world_model/decoder", "value", "actor"}
  # Each component's apply only reads its own subtree.
  z = agent.encode(params, jnp.ones(5))
  broken = set_path(params, "value", jax.tree.map(lambda x: x + 100.0, params["value"]))
  np.testing.assert_array_equal(agent.encode(broken, jnp.ones(5)), z)
  assert agent.value(broken, z) != agent.value(params, z)


def test_set_path_does_not_modify_input():
  params = {"a": {"b": 1, "c": 2}, "d": 3}
  new = set_path(params, "a/b", 10)
  assert params == {"a": {"b": 1, "c": 2}, "d": 3}
  assert get_path(new, "a/b") == 10 and new["a"]["c"] == 2


@pytest.mark.parametrize("field, value, message", [
    ("planner", "beam", "planner"),
    ("horizon", 5, "horizon"),
    ("num_elites", 100, "num_elites"),
    ("epsilon", 1.5, "epsilon"),
])
def test_agent_config_errors_name_the_field(field, value, message):
  with pytest.raises(ValueError, match=message):
    AgentConfig(**{field: value})


@pytest.mark.parametrize("field, value", [
    ("env", "NoSuchEnv"), ("num_envs", 0), ("learning_starts", 10**9), ("rho", 2.0),
    ("buffer_size", 4), ("total_steps", 8), ("final_lr_fraction", 1.5),
    ("final_lr_fraction", -0.1),
])
def test_train_config_errors_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    TrainConfig(**{field: value})


def test_train_config_round_trips_and_hashes():
  config = replace(TrainConfig(), batch_size=32, agent__horizon=3)
  assert TrainConfig.from_dict(config.to_dict()) == config
  assert config.config_hash() == TrainConfig.from_dict(config.to_dict()).config_hash()
  assert config.config_hash() != TrainConfig().config_hash()
  with pytest.raises(ValueError, match="unknown train config field"):
    TrainConfig.from_dict({"batch": 3})


def test_learning_rate_decay_is_part_of_the_identity_only_when_used():
  assert "final_lr_fraction" not in TrainConfig().to_dict()  # old run hashes stay valid
  decayed = TrainConfig(final_lr_fraction=0.0)
  assert decayed.to_dict()["final_lr_fraction"] == 0.0
  assert TrainConfig.from_dict(decayed.to_dict()) == decayed
  assert decayed.config_hash() != TrainConfig().config_hash()


@pytest.mark.parametrize("final_lr_fraction", [0.0, 0.5, 1.0])
def test_component_learning_rates_decay_linearly_over_the_runs_updates(final_lr_fraction):
  config = TrainConfig(env="GoalGrid-OpenRoom", total_steps=640, num_envs=16, buffer_size=640,
                       learning_starts=160, updates_per_iteration=2, value_lr=0.1,
                       final_lr_fraction=final_lr_fraction)
  # Updates happen from iteration max(ceil(160 / 16), 8) = 10 to 40, two per iteration.
  assert config.learning_updates == (40 - 10 + 1) * 2
  optimiser = component_optimiser(config, "value")
  params = {"w": jnp.zeros(())}
  state = optimiser.init(params)
  steps = []
  for _ in range(config.learning_updates + 1):  # a constant gradient: Adam steps by the lr
    update, state = optimiser.update({"w": jnp.ones(())}, state, params)
    steps.append(-float(update["w"]))
  np.testing.assert_allclose(steps[0], 0.1, rtol=1e-3)
  middle = config.learning_updates // 2
  np.testing.assert_allclose(steps[middle], 0.1 * (1 - 0.5 * (1 - final_lr_fraction)),
                             rtol=1e-3)
  np.testing.assert_allclose(steps[-1], 0.1 * final_lr_fraction, rtol=1e-3, atol=1e-7)


def test_n_step_targets_match_hand_computation():
  gamma = 0.5
  reward = jnp.array([1.0, 2.0, 4.0, 8.0, 16.0])
  bootstrap = jnp.array([10.0, 20.0, 30.0, 40.0, 50.0])
  no = jnp.zeros(5, bool)
  targets = n_step_targets(reward, no, no, bootstrap, n_step=2, gamma=gamma, num_targets=3)
  np.testing.assert_allclose(targets, [1 + 0.5 * 2 + 0.25 * 20, 2 + 0.5 * 4 + 0.25 * 30,
                                       4 + 0.5 * 8 + 0.25 * 40], rtol=1e-6)
  # Termination at t=1: no reward after it and no bootstrap.
  terminated = jnp.array([False, True, False, False, False])
  targets = n_step_targets(reward, terminated, no, bootstrap, 3, gamma, 1)
  np.testing.assert_allclose(targets, [1 + 0.5 * 2], rtol=1e-6)
  # Truncation at t=1: bootstrap from the observation it reached.
  truncated = terminated
  targets = n_step_targets(reward, no, truncated, bootstrap, 3, gamma, 1)
  np.testing.assert_allclose(targets, [1 + 0.5 * 2 + 0.25 * 20], rtol=1e-6)


def test_buffer_sequences_are_contiguous_and_never_cross_the_write_position():
  buffer = replay.init_buffer(capacity=6, num_envs=2, obs_dim=1, action_shape=(),
                              action_dtype=jnp.int32)
  for t in range(9):  # wraps: holds steps 3..8
    value = jnp.full((2,), float(t))
    buffer = replay.add(buffer, value[:, None], jnp.zeros(2, jnp.int32), value,
                        jnp.zeros(2, bool), jnp.zeros(2, bool), value[:, None] + 1,
                        jnp.full(2, -1, jnp.int32))
  assert int(buffer.size) == 6
  batch = replay.sample_sequences(buffer, jax.random.key(0), 256, 3)
  rewards = np.asarray(batch["reward"])
  assert rewards.min() >= 3 and rewards.max() <= 8
  np.testing.assert_array_equal(np.diff(rewards, axis=1), 1.0)
  np.testing.assert_array_equal(batch["next_obs"][..., 0], rewards + 1)


def test_exhaustive_scores_equal_brute_force_and_horizon_is_traced():
  agent = small_agent()
  params = agent.init(jax.random.key(1))
  z0 = agent.encode(params, jnp.linspace(0, 1, 5))
  import itertools
  sequences = np.array(list(itertools.product(range(3), repeat=3)))
  returns = sequence_returns(agent, params, z0, jax.nn.one_hot(sequences, 3))
  # The horizon is traced: every horizon reuses one trace (a second one raises).
  scores_fn = jax.jit(chex.assert_max_traces(lambda h: exhaustive_scores(agent, params, z0, h),
                                             n=1))
  for horizon in (1, 2, 3):
    expected = [max(float(returns[i, horizon]) for i in range(len(sequences))
                    if sequences[i, 0] == a) for a in range(3)]
    np.testing.assert_allclose(scores_fn(horizon), expected, rtol=1e-5)


def test_sequence_returns_bootstrap_with_value_and_termination():
  agent = small_agent()
  params = agent.init(jax.random.key(2))
  # Fix reward = 1, termination probability 0.5, value = 3 through the zero-initialised heads.
  params = set_path(params, "world_model/reward/Dense_1/bias", jnp.array([1.0]))
  params = set_path(params, "world_model/termination/Dense_1/bias", jnp.array([0.0]))
  params = set_path(params, "value/Dense_1/bias", jnp.array([3.0]))
  gamma = agent.config.gamma
  returns = sequence_returns(agent, params, jnp.zeros(6), jax.nn.one_hot(jnp.zeros((1, 2), int), 3))
  np.testing.assert_allclose(returns[0], [3.0, 1 + gamma * 0.5 * 3,
                                          1 + gamma * 0.5 + gamma**2 * 0.25 * 3], rtol=1e-5)


@pytest.mark.parametrize("spec, planner", [(DISCRETE_SPEC, "exhaustive"),
                                           (DISCRETE_SPEC, "sampling"),
                                           (CONTINUOUS_SPEC, "cem")])
def test_act_modes_under_jit_and_vmap(spec, planner):
  agent = small_agent(spec, planner=planner, use_actor=True)
  params = agent.init(jax.random.key(3))
  obs = jax.random.normal(jax.random.key(4), (7, spec.obs_dim))
  keys = jax.random.split(jax.random.key(5), 7)
  batched = jax.jit(jax.vmap(lambda k, o, mode: act(agent, params, k, o, 2, mode, 0.5),
                             in_axes=(0, 0, None)))
  for mode in (GREEDY, EPSILON, BOLTZMANN):
    result = batched(keys, obs, mode)
    assert not np.any(result.nonfinite)
    if spec.discrete:
      assert result.action.shape == (7,) and np.all((result.action >= 0) & (result.action < 3))
    else:
      assert result.action.shape == (7, 2)
      assert np.all(result.action >= np.array(spec.action_low) - 1e-6)
      assert np.all(result.action <= np.array(spec.action_high) + 1e-6)
    again = batched(keys, obs, mode)
    np.testing.assert_array_equal(result.action, again.action)


def test_act_reports_nonfinite_values_instead_of_crashing():
  agent = small_agent()
  params = agent.init(jax.random.key(6))
  broken = set_path(params, "value/Dense_1/bias", jnp.array([jnp.nan]))
  result = act(agent, broken, jax.random.key(7), jnp.ones(5), 2, GREEDY)
  assert bool(result.nonfinite)
  assert 0 <= int(result.action) < 3


def test_training_is_deterministic_and_vmaps_over_seeds(tiny_train_config, tiny_trained_seeds):
  trainer, keys = tiny_trained_seeds.trainer, tiny_trained_seeds.keys
  state, metrics = tiny_trained_seeds.state, tiny_trained_seeds.metrics  # jit(vmap(train))(keys)
  state_again, metrics_again = tiny_trained_seeds.train(keys)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_again.params)):
    np.testing.assert_array_equal(a, b)
  assert metrics["loss/value"].shape == (2, tiny_train_config.num_chunks)
  assert np.all(np.isfinite(metrics["loss/consistency"]))
  assert np.all(np.asarray(state.env_steps) == tiny_train_config.iterations
                // tiny_train_config.num_chunks * tiny_train_config.num_chunks
                * tiny_train_config.num_envs)
  # The two seeds differ, and training changed every component.
  first = jax.tree.leaves(state.params)[0]
  assert not np.array_equal(first[0], first[1])
  initial = tiny_trained_seeds.init(keys).params
  for path in trainer.agent.component_paths:
    before, after = get_path(initial, path), get_path(state.params, path)
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(before),
                                                        jax.tree.leaves(after))), path


def test_chunks_compose_to_the_whole_run(tiny_train_config, tiny_trained_seeds):
  whole = tiny_trained_seeds.state  # jit(vmap(train))(keys)
  state = tiny_trained_seeds.init(tiny_trained_seeds.keys)
  for _ in range(tiny_train_config.num_chunks):
    state, _ = tiny_trained_seeds.run_chunk(state)
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_evaluate_trajectories_are_consistent(tiny_trained_seeds):
  trainer = tiny_trained_seeds.trainer
  initial = tiny_trained_seeds.init(tiny_trained_seeds.keys).params
  params = jax.tree.map(lambda x: x[0], initial)  # untrained parameters of the first seed
  env, env_params = trainer.env, trainer.env_params
  run = jax.jit(chex.assert_max_traces(
      lambda k, h: evaluate(trainer.agent, params, env, env_params, k, 16,
                            eval_args(depth=h, selection=BOLTZMANN),
                            max_steps=int(env_params.max_steps)), n=1))
  traj = run(jax.random.key(1), 2)
  T = int(env_params.max_steps)
  assert traj.obs.shape[:2] == (16, T + 1) and traj.valid.shape == (16, T)
  np.testing.assert_array_equal(traj.length, traj.valid.sum(axis=1))
  np.testing.assert_allclose(traj.episode_return, traj.reward.sum(axis=1), rtol=1e-6)
  # valid steps form a prefix; episodes that reached a goal ended by termination.
  assert np.all(np.diff(traj.valid.astype(int), axis=1) <= 0)
  reached = np.asarray(traj.reached_goal) >= 0
  np.testing.assert_array_equal(reached, np.asarray(traj.terminated))
  np.testing.assert_array_equal(traj.length[~reached], T)
  # The state index follows the observation (one-hot prefix of the GoalGrid observation).
  obs_index = np.argmax(np.asarray(traj.obs)[..., :env.num_states], axis=-1)
  np.testing.assert_array_equal(obs_index, traj.state_index)
  summary = outcome_summary(traj, 0, env.num_goals)
  total = summary["outcome/timeout"] + sum(summary[f"outcome/reach_goal_{k}"]
                                           for k in range(env.num_goals))
  np.testing.assert_allclose(total, 1.0, rtol=1e-6)
  # Same key, same trajectories; another horizon reuses the trace (a second one raises).
  np.testing.assert_array_equal(run(jax.random.key(1), 2).action, traj.action)
  run(jax.random.key(1), 1)


def test_n_step_targets_treat_terminal_time_limit_steps_as_terminal():
  # gymnasium's classic control may report terminated and truncated on the same step.
  reward = jnp.array([1.0, 1.0, 1.0])
  both = jnp.array([False, True, False])
  targets = n_step_targets(reward, both, both, jnp.full(3, 100.0), 3, 0.5, 1)
  np.testing.assert_allclose(targets, [1.5], rtol=1e-6)
