"""The policy agent: config, act, loss pieces, PPO, behaviour cloning and fine-tuning."""

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import agents, faults
from mbrl_drift.agents.base import EnvSpec, eval_args
from mbrl_drift.agents.policy import PolicyConfig, parse_demonstrator, presets
from mbrl_drift.agents.policy import demonstrators as demos_lib
from mbrl_drift.agents.policy.agent import (PolicyAgent, categorical_kl, gaussian_kl,
                                            greedy_probs)
from mbrl_drift.agents.policy.ppo import bc_anchor, clipped_surrogate, gae, value_loss
from mbrl_drift.config import TrainConfig
from mbrl_drift.faults.training import TrainingHooks
from mbrl_drift.train import make_train

DISCRETE = EnvSpec(obs_dim=5, action_dim=3, discrete=True)
CONTINUOUS = EnvSpec(obs_dim=4, action_dim=2, discrete=False, action_low=(-2.0, 0.0),
                     action_high=(2.0, 1.0))
SMALL = PolicyConfig(hidden_dim=16, num_layers=1)

TINY_LAYOUT = """
#######
#A...B#
#.....#
#..S..#
#######
"""
TINY_ENV_KWARGS = (("layout", TINY_LAYOUT),)
DEMONSTRATOR = "goal mixture 0.7 A / 0.3 B beta=200"


def small_agent(spec=DISCRETE, **changes):
  return PolicyAgent(config=dataclasses.replace(SMALL, **changes), spec=spec)


def policy_compare():
  """``mbrl_drift/metrics/policy_compare.py`` loaded on its own (it needs only jax)."""
  path = os.path.join(os.path.dirname(agents.__file__), "..", "metrics", "policy_compare.py")
  spec = importlib.util.spec_from_file_location("policy_compare_standalone", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def tiny_config(**agent_changes):
  agent = PolicyConfig(hidden_dim=32, num_layers=1, rollout_steps=16, num_minibatches=2,
                       update_epochs=2, lr=3e-3, gamma=0.95, **agent_changes)
  return TrainConfig(env="GoalGrid-OpenRoom", env_kwargs=TINY_ENV_KWARGS, agent_kind="policy",
                     num_envs=8, total_steps=8 * 16 * 4, num_chunks=2, agent=agent)


_COMPILED_RUNS = {}


def run_from(trainer, keys, params):
  """``trainer.init`` from ``params`` ``[seeds, ...]`` then every chunk, vmapped (compiled once
  per trainer)."""

  def run(key, params):
    state = trainer.init(key, params)
    return jax.lax.scan(lambda s, _: trainer.run_chunk(s), state, None,
                        length=trainer.config.num_chunks)

  if id(trainer) not in _COMPILED_RUNS:
    _COMPILED_RUNS[id(trainer)] = (trainer, jax.jit(jax.vmap(run)))
  return _COMPILED_RUNS[id(trainer)][1](keys, params)


_TINY_TRAINER = []


def tiny_trainer():
  """The trainer of ``tiny_config()`` (built once)."""
  if not _TINY_TRAINER:
    _TINY_TRAINER.append(make_train(tiny_config()))
  return _TINY_TRAINER[0]


# ---------------------------------------------------------------------------------------------
# Registration and config
# ---------------------------------------------------------------------------------------------


def test_registered_and_imports_no_jax():
  definition = agents.get("policy")
  assert definition.config_type is PolicyConfig
  assert definition.reward_consumers == ("actor", "critic")
  assert definition.target_consumers == ("critic",)
  code = ("import sys; from mbrl_drift import agents; d = agents.get('policy'); "
          "from mbrl_drift.agents.policy import PolicyConfig; PolicyConfig(); "
          "d.config_type(demonstrator='goal mixture 0.7 A / 0.3 B'); "
          "assert 'jax' not in sys.modules, 'jax imported'")
  subprocess.run([sys.executable, "-c", code], check=True,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_presets_build():
  for name, config in presets().items():
    assert config.env == name and config.agent_kind == "policy"
    trainer = make_train(config)
    assert trainer.iterations_per_chunk >= 1


@pytest.mark.parametrize("field, value", [
    ("hidden_dim", 0), ("activation", "gelu"), ("algorithm", "sac"), ("kl_direction", "both"),
    ("gamma", 1.5), ("clip_eps", 0.0), ("kl_to_base", -1.0), ("bc_coef", float("nan")),
    ("lr", 0.0), ("num_minibatches", 0), ("demonstrator", "goal"), ("anneal_lr", 1),
])
def test_config_errors_name_the_field(field, value):
  with pytest.raises(ValueError, match=f"invalid config field {field}="):
    PolicyConfig(**{field: value})


def test_bc_needs_a_demonstrator():
  with pytest.raises(ValueError, match="demonstrator"):
    PolicyConfig(algorithm="bc")


def test_train_config_rejects_fields_the_policy_does_not_read():
  with pytest.raises(ValueError, match="buffer_size"):
    TrainConfig(env="CartPole", agent_kind="policy", agent=PolicyConfig(), buffer_size=123)


def test_sizes_that_do_not_divide_are_errors():
  with pytest.raises(ValueError, match="num_minibatches"):
    make_train(dataclasses.replace(tiny_config(), agent=dataclasses.replace(
        tiny_config().agent, num_minibatches=7)))
  with pytest.raises(ValueError, match="total_steps"):
    make_train(dataclasses.replace(tiny_config(), total_steps=100))
  with pytest.raises(ValueError, match="freeze"):
    make_train(dataclasses.replace(tiny_config(), freeze=("world_model",)))


# ---------------------------------------------------------------------------------------------
# Demonstrator specs
# ---------------------------------------------------------------------------------------------


def test_demonstrator_spec_parses():
  spec = parse_demonstrator("goal mixture 0.7 A / 0.3 B beta=20 epsilon=0.1 avoid_vases")
  assert spec.kind == "goal" and spec.goals == ("A", "B")
  np.testing.assert_allclose(spec.weights, (0.7, 0.3))
  assert (spec.beta, spec.epsilon, spec.vase_penalty) == (20.0, 0.1, 1.0)
  assert parse_demonstrator("goal 1").goals == ("1",)
  spec = parse_demonstrator("goal mixture 2 A / 1 B / 1 C")
  np.testing.assert_allclose(spec.weights, (0.5, 0.25, 0.25))
  spec = parse_demonstrator("run runs/base seed=1 selection=sample")
  assert (spec.kind, spec.path, spec.seed, spec.selection) == ("run", "runs/base", 1, "sample")
  assert parse_demonstrator("npz demos.npz").path == "demos.npz"


@pytest.mark.parametrize("spec, problem", [
    ("", "empty"), ("expert A", "unknown demonstrator kind"), ("goal", "needs a goal"),
    ("goal a", "not a goal label"), ("goal A beta=0", "beta"), ("goal A epsilon=2", "epsilon"),
    ("goal A temperature=1", "unknown option"), ("goal mixture 0.7 A", "at least two"),
    ("goal mixture 0.7 A / -1 B", "weight"), ("goal mixture 0.7 A / 0.3", "not 'WEIGHT GOAL'"), ("goal mixture 0.5 A / 0.5 A", "twice"),
    ("goal mixture 0.7 A 0.3 B", "not 'WEIGHT GOAL'"), ("npz demos.csv", ".npz"),
    ("run", "needs a path"), ("run dir seed=x", "seed"), ("run dir selection=best", "selection"),
])
def test_demonstrator_spec_errors_list_valid_forms(spec, problem):
  with pytest.raises(ValueError, match="valid forms") as error:
    parse_demonstrator(spec)
  assert problem in str(error.value)


def test_demonstrator_goal_must_exist():
  env, env_params = tiny_trainer().env, tiny_trainer().env_params
  with pytest.raises(ValueError, match="goals: 0 \\(A\\), 1 \\(B\\)"):
    demos_lib.soft_optimal_policies(env, env_params, parse_demonstrator("goal C"))


def test_npz_demonstrations(tmp_path):
  path = tmp_path / "demos.npz"
  np.savez(path, observations=np.ones((6, 5), np.float32), actions=np.array([0, 1, 2, 0, 1, 2]))
  demos = demos_lib.npz_demonstrations(parse_demonstrator(f"npz {path}"), DISCRETE)
  assert demos.obs.shape == (6, 5) and demos.action.tolist() == [0, 1, 2, 0, 1, 2]
  assert not demos.has_returns
  np.savez(path, observations=np.ones((6, 4), np.float32), actions=np.zeros(6))
  with pytest.raises(ValueError, match="features"):
    demos_lib.npz_demonstrations(parse_demonstrator(f"npz {path}"), DISCRETE)


def test_run_demonstrations_roll_out_any_agent_greedily():
  trainer = tiny_trainer()
  agent = trainer.agent
  params = jax.tree.map(lambda x: jnp.stack([x, x]), agent.init(jax.random.key(0)))

  class FakeRun:  # what mbrl_drift.runs.load_run returns: .trainer.agent and .params [seeds]
    def __init__(self):
      self.trainer = trainer
      self.params = params

  spec = parse_demonstrator("run some/run seed=1")
  demos = demos_lib.run_demonstrations(spec, trainer.env, trainer.env_params, agent.spec,
                                       jax.random.key(0), 4, 0.9, load_run=lambda path: FakeRun())
  p1 = jax.tree.map(lambda x: x[1], params)
  expected = jax.vmap(lambda o: jnp.argmax(agent.actor_output(p1, o)))(demos.obs)
  np.testing.assert_array_equal(demos.action, expected)


# ---------------------------------------------------------------------------------------------
# Acting
# ---------------------------------------------------------------------------------------------


def test_components_and_base():
  agent = small_agent()
  assert agent.component_paths == ("actor", "critic")
  with_base = dataclasses.replace(agent, has_base=True)
  params = with_base.init(jax.random.key(0))
  assert with_base.component_paths == ("actor", "critic", "base/actor")
  assert faults.resolve_target(params, "base/actor") == ("base/actor",)
  for a, b in zip(jax.tree.leaves(params["actor"]), jax.tree.leaves(params["base"]["actor"])):
    np.testing.assert_array_equal(a, b)
  assert agent.eval_axes.selections == ("greedy", "sample")
  assert agent.eval_axes.depth_name is None and agent.for_depth(5) is agent


def test_act_discrete_under_jit_and_vmap():
  agent = small_agent()
  params = agent.init(jax.random.key(0))
  params["actor"] = jax.tree.map(lambda x: x * 50.0, params["actor"])  # peaked logits
  obs = jax.random.normal(jax.random.key(1), (8, DISCRETE.obs_dim))
  keys = jax.random.split(jax.random.key(2), 8)
  act = jax.jit(jax.vmap(agent.act, in_axes=(None, 0, 0, None)))
  greedy = act(params, keys, obs, eval_args(selection=0))
  sample = act(params, keys, obs, eval_args(selection=1))
  probs = jax.vmap(lambda o: agent.action_distribution(params, o))(obs)
  assert greedy.action.dtype == jnp.int32 and greedy.action.shape == (8,)
  np.testing.assert_array_equal(greedy.action, jnp.argmax(probs, -1))
  np.testing.assert_allclose(greedy.action_probs, jax.nn.one_hot(greedy.action, 3), atol=1e-6)
  np.testing.assert_allclose(sample.action_probs, probs, rtol=1e-5, atol=1e-7)
  assert not np.any(greedy.nonfinite) and not np.any(sample.nonfinite)
  # Sampling follows the probabilities: a cold temperature gives the greedy action.
  cold = act(params, keys, obs, eval_args(selection=1, temperature=1e-4))
  np.testing.assert_array_equal(cold.action, greedy.action)


def test_greedy_ties_share_the_mass():
  np.testing.assert_allclose(greedy_probs(jnp.array([1.0, 3.0, 3.0, 0.0])), [0, 0.5, 0.5, 0])


def test_sample_frequencies_match_probabilities():
  agent = small_agent()
  params = agent.init(jax.random.key(3))
  params["actor"] = jax.tree.map(lambda x: x * 20.0, params["actor"])
  obs = jnp.ones(DISCRETE.obs_dim)
  keys = jax.random.split(jax.random.key(4), 4000)
  out = jax.jit(jax.vmap(agent.act, in_axes=(None, 0, None, None)))(params, keys, obs,
                                                                     eval_args(selection=1))
  frequencies = np.bincount(np.asarray(out.action), minlength=3) / 4000
  np.testing.assert_allclose(frequencies, agent.action_distribution(params, obs), atol=0.03)


def test_act_continuous_maps_to_bounds():
  agent = small_agent(CONTINUOUS)
  params = agent.init(jax.random.key(0))
  obs = jax.random.normal(jax.random.key(1), (16, CONTINUOUS.obs_dim))
  keys = jax.random.split(jax.random.key(2), 16)
  act = jax.jit(jax.vmap(agent.act, in_axes=(None, 0, 0, None)))
  for selection in (0, 1):
    out = act(params, keys, obs, eval_args(selection=selection))
    assert out.action.shape == (16, 2) and out.action_probs is None
    assert np.all(out.action[:, 0] >= -2) and np.all(out.action[:, 0] <= 2)
    assert np.all(out.action[:, 1] >= 0) and np.all(out.action[:, 1] <= 1)
  greedy = act(params, keys, obs, eval_args(selection=0))
  mean = jax.vmap(lambda o: agent.actor_output(params, o)[:2])(obs)
  np.testing.assert_allclose(greedy.action, jax.vmap(CONTINUOUS.to_env_action)(jnp.tanh(mean)),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="discrete"):
    agent.action_distribution(params, obs[0])


@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS], ids=["discrete", "continuous"])
def test_nonfinite_params_give_random_valid_actions(spec):
  agent = small_agent(spec)
  params = agent.init(jax.random.key(0))
  broken = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
  keys = jax.random.split(jax.random.key(1), 64)
  act = jax.jit(jax.vmap(agent.act, in_axes=(None, 0, None, None)))
  for selection in (0, 1):
    out = act(broken, keys, jnp.ones(spec.obs_dim), eval_args(selection=selection))
    assert np.all(out.nonfinite)
    assert np.all(np.isfinite(np.asarray(out.action, np.float32)))
    if spec.discrete:
      assert set(np.unique(out.action)) <= {0, 1, 2} and len(np.unique(out.action)) > 1
      np.testing.assert_allclose(out.action_probs, np.full((64, 3), 1 / 3), rtol=1e-6)
  action, env_action, log_prob, nonfinite = agent.sample(
      jax.random.key(2), jnp.full((spec.action_dim * (1 if spec.discrete else 2),), jnp.inf))
  assert bool(nonfinite) and np.all(np.isfinite(np.asarray(env_action, np.float32)))


def test_output_hook_reaches_every_component():
  agent = dataclasses.replace(small_agent(), has_base=True)
  params = agent.init(jax.random.key(0))
  seen = []

  def hook(path, output):
    seen.append(path)
    return output * 0.0

  hooked = agent.with_output_hook(hook)
  obs = jnp.ones(DISCRETE.obs_dim)
  np.testing.assert_allclose(hooked.action_distribution(params, obs), np.full(3, 1 / 3))
  assert float(hooked.value(params, obs)) == 0.0
  hooked.actor_output(params, obs, "base/actor")
  assert seen == ["actor", "critic", "base/actor"]


# ---------------------------------------------------------------------------------------------
# Loss pieces
# ---------------------------------------------------------------------------------------------


def test_gae_termination_vs_truncation():
  gamma, lam = 0.9, 0.5
  reward = jnp.array([1.0, 2.0, 3.0])
  value = jnp.array([0.5, 1.0, 1.5])
  bootstrap = jnp.array([1.0, 10.0, 2.0])  # V of the state each transition reached
  no_end = jnp.zeros(3, bool)
  # Step 1 ends its episode: terminated (no bootstrap) or truncated (bootstrap from V=10).
  ended = jnp.array([False, True, False])
  for terminated, truncated in ((ended, no_end), (no_end, ended)):
    advantages, returns = jax.jit(gae, static_argnums=(5, 6))(reward, value, bootstrap,
                                                              terminated, truncated, gamma, lam)
    delta2 = 3.0 + gamma * 2.0 - 1.5
    delta1 = 2.0 + (0.0 if terminated[1] else gamma * 10.0) - 1.0
    delta0 = 1.0 + gamma * 1.0 - 0.5
    a2 = delta2
    a1 = delta1  # the episode ends at step 1: nothing flows back from step 2
    a0 = delta0 + gamma * lam * a1
    np.testing.assert_allclose(advantages, [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(returns, np.array([a0, a1, a2]) + value, rtol=1e-6)


def test_gae_lambda_one_is_the_discounted_return():
  reward = jnp.array([1.0, 1.0, 1.0, 1.0])
  value = jnp.array([0.3, 0.2, 0.1, 0.0])
  terminated = jnp.array([False, False, False, True])
  bootstrap = jnp.array([0.2, 0.1, 0.0, 7.0])  # V(s_{t+1}); ignored after the termination
  _, returns = gae(reward, value, bootstrap, terminated, jnp.zeros(4, bool), 0.5, 1.0)
  np.testing.assert_allclose(returns, [1 + 0.5 + 0.25 + 0.125, 1 + 0.5 + 0.25, 1.5, 1.0])


def test_clipped_surrogate_and_value_loss():
  ratio = jnp.array([0.5, 1.0, 1.5, 1.5, 0.5])
  advantage = jnp.array([1.0, 2.0, 1.0, -1.0, -1.0])
  # -min(r A, clip(r, 0.8, 1.2) A)
  expected = [-0.5, -2.0, -1.2, 1.5, 0.8]
  np.testing.assert_allclose(clipped_surrogate(ratio, advantage, 0.2), expected, rtol=1e-6)
  value, old, target = jnp.array([2.0, 0.0]), jnp.array([1.0, 0.5]), jnp.array([0.0, 1.0])
  # clipped values: 1 + clip(1, -.2, .2) = 1.2 ; 0.5 + clip(-0.5) = 0.3
  np.testing.assert_allclose(value_loss(value, old, target, 0.2),
                             [0.5 * max(4.0, 1.44), 0.5 * max(1.0, 0.49)], rtol=1e-6)
  np.testing.assert_allclose(value_loss(value, old, target, 0.2, clip=False), [2.0, 0.5])


def test_kl_pieces():
  p_logits, q_logits = jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 0.0, -1.0])
  p, q = jax.nn.softmax(p_logits), jax.nn.softmax(q_logits)
  np.testing.assert_allclose(categorical_kl(p_logits, q_logits), np.sum(p * np.log(p / q)),
                             rtol=1e-5)
  dist_p = jnp.array([0.5, -1.0, math.log(0.5), 0.0])  # means (0.5, -1), stds (0.5, 1)
  dist_q = jnp.array([0.0, 0.0, 0.0, math.log(2.0)])
  expected = (math.log(1 / 0.5) + (0.25 + 0.25) / 2 - 0.5) + (math.log(2) + (1 + 1) / 8 - 0.5)
  np.testing.assert_allclose(gaussian_kl(dist_p, dist_q), expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Training (module-scoped: each program compiles once)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloned_base():
  """A behaviour-cloned base on the tiny grid (2 seeds) and its demonstrator's reference."""
  config = dataclasses.replace(tiny_config(algorithm="bc", demonstrator=DEMONSTRATOR,
                                           demo_episodes=1500, bc_epochs=20, bc_batch_size=256,
                                           bc_lr=3e-3),
                               num_chunks=1)
  trainer = make_train(config)
  state, metrics = jax.jit(jax.vmap(trainer.train))(jax.random.split(jax.random.key(0), 2))
  reference = demos_lib.demonstrator_reference(trainer.env, trainer.env_params, DEMONSTRATOR)
  return trainer, state, metrics, reference


def test_bc_fits_a_tabular_demonstrator(cloned_base):
  trainer, state, metrics, reference = cloned_base
  assert metrics["loss/bc"].shape == (2, 1)
  np.testing.assert_array_equal(state.env_steps, [0, 0])
  env, env_params = trainer.env, trainer.env_params
  mdp = env.tabular(env_params)
  pc = policy_compare()
  for seed in range(2):
    params = jax.tree.map(lambda x: x[seed], state.params)
    table = demos_lib.policy_table(trainer.agent, params, env)
    distance = float(pc.mean_js_distance(table, reference["policy"], reference["visits"]))
    reach = demos_lib.goal_reach_distribution(mdp, table, int(env_params.max_steps))
    assert distance < 0.1, distance
    np.testing.assert_allclose(reach, reference["goal_reach"], atol=0.1)
    # The critic learned the demonstrations' returns (about 1 next to A, state 1).
    assert float(trainer.agent.value(params, env.all_observations()[1])) > 0.5


@pytest.fixture(scope="module")
def finetuned(cloned_base):
  """The cloned base fine-tuned toward goal B with kl_to_base 0 and 1 (2 seeds each)."""
  base_trainer, base_state, _, _ = cloned_base
  out = {}
  for coefficient in (0.0, 1.0):
    config = dataclasses.replace(
        tiny_config(kl_to_base=coefficient, ent_coef=0.0),
        env_kwargs=TINY_ENV_KWARGS + (("intended_goal", 1),), init_from="base-run",
        total_steps=8 * 16 * 8, num_chunks=2)
    trainer = make_train(config)
    keys = jax.random.split(jax.random.key(1), 2)
    state, metrics = run_from(trainer, keys, base_state.params)
    out[coefficient] = (trainer, state, metrics)
  return out


def test_finetuning_keeps_the_base_frozen_and_reports_kl(cloned_base, finetuned):
  _, base_state, _, _ = cloned_base
  for trainer, state, metrics in finetuned.values():
    for new, old in zip(jax.tree.leaves(state.params["base"]["actor"]),
                        jax.tree.leaves(base_state.params["actor"])):
      np.testing.assert_array_equal(new, old)
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(state.params["actor"]), jax.tree.leaves(base_state.params["actor"])))
    for name in ("episode/mean_return", "episode/completed", "train/env_steps", "loss/actor",
                 "loss/critic", "kl/to_base"):
      assert metrics[name].shape == (2, 2), name
    np.testing.assert_array_equal(metrics["train/env_steps"][:, -1], [8 * 16 * 8] * 2)


def test_larger_kl_coefficient_stays_closer_to_the_base(finetuned):
  kl_free = np.asarray(finetuned[0.0][2]["kl/to_base"])[:, -1]
  kl_held = np.asarray(finetuned[1.0][2]["kl/to_base"])[:, -1]
  assert np.all(kl_held < kl_free), (kl_held, kl_free)
  assert np.all(kl_free > 0.1)


def test_same_seed_same_parameters(cloned_base, finetuned):
  base_trainer, base_state, _, _ = cloned_base
  trainer, state, _ = finetuned[1.0]
  again, _ = run_from(trainer, jax.random.split(jax.random.key(1), 2), base_state.params)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(a, b)


def test_finetuning_a_finetuned_run_keeps_the_original_base(cloned_base, finetuned):
  _, base_state, _, _ = cloned_base
  trainer, state, _ = finetuned[0.0]
  params = jax.tree.map(lambda x: x[0], state.params)
  again = jax.jit(trainer.init)(jax.random.key(5), params)
  for new, old in zip(jax.tree.leaves(again.params["base"]["actor"]),
                      jax.tree.leaves(base_state.params["actor"])):
    np.testing.assert_array_equal(new, old[0])


def test_freeze_and_faults_never_move_the_base(cloned_base):
  _, base_state, _, _ = cloned_base
  config = dataclasses.replace(tiny_config(kl_to_base=0.1), init_from="base-run",
                               freeze=("critic",), num_chunks=1)
  hooks = TrainingHooks(
      reward_faults=(faults.reward_sign_flip(target="critic"),),
      gradient_transforms=(faults.gradient_noise(1.0, target="*"),),
      update_transforms=(faults.lr_spike(10.0, target="*"),))
  trainer = make_train(config, hooks)
  params = jax.tree.map(lambda x: x[0], base_state.params)
  state = jax.jit(trainer.init)(jax.random.key(0), params)
  state, metrics = jax.jit(trainer.run_chunk)(state)
  for new, old in zip(jax.tree.leaves(state.params["base"]), jax.tree.leaves(params["actor"])):
    np.testing.assert_array_equal(new, old)
  for new, old in zip(jax.tree.leaves(state.params["critic"]), jax.tree.leaves(params["critic"])):
    np.testing.assert_array_equal(new, old)
  assert np.isfinite(float(metrics["kl/to_base"]))


def test_signal_faults_must_address_a_consumer():
  hooks = TrainingHooks(reward_faults=(faults.reward_sign_flip(target="world_model/reward"),))
  with pytest.raises(ValueError, match="reward consumers"):
    make_train(tiny_config(), hooks)
  hooks = TrainingHooks(target_faults=(faults.target_noise(1.0, target="value"),))
  with pytest.raises(ValueError, match="critic"):
    make_train(tiny_config(), hooks)


def test_bc_anchor_regenerates_the_base_demonstrations(tmp_path):
  base_config = dataclasses.replace(tiny_config(algorithm="bc", demonstrator=DEMONSTRATOR,
                                                demo_episodes=20, demo_seed=3))
  base_trainer = tiny_trainer()
  (tmp_path / "config.json").write_text(json.dumps({"config": base_config.to_dict(),
                                                    "num_seeds": 2}))
  config = dataclasses.replace(tiny_config(bc_coef=0.5), init_from=str(tmp_path))
  anchor = bc_anchor(config, tiny_trainer().agent)
  c = base_config.agent
  expected = demos_lib.make_demonstrations(
      c.demonstrator, base_trainer.env, base_trainer.env_params, base_trainer.agent.spec,
      jax.random.key(c.demo_seed), c.demo_episodes, config.agent.gamma)
  np.testing.assert_array_equal(anchor.obs, expected.obs)
  np.testing.assert_array_equal(anchor.action, expected.action)
  # Without a readable base config, the anchor distils base/actor instead.
  missing = dataclasses.replace(config, init_from=str(tmp_path / "nowhere"))
  with pytest.warns(UserWarning, match="distils base/actor"):
    assert bc_anchor(missing, tiny_trainer().agent) is None
  with pytest.raises(ValueError, match="bc_coef"):
    bc_anchor(dataclasses.replace(tiny_config(bc_coef=0.5)), tiny_trainer().agent)


def test_continuous_ppo_smoke():
  config = TrainConfig(env="Pendulum", agent_kind="policy", num_envs=4, total_steps=4 * 32 * 2,
                       num_chunks=2,
                       agent=PolicyConfig(hidden_dim=16, num_layers=1, rollout_steps=32,
                                          num_minibatches=2, update_epochs=1))
  trainer = make_train(config)
  state, metrics = jax.jit(trainer.train)(jax.random.key(0))
  assert np.all(np.isfinite(np.asarray(metrics["loss/actor"])))
  assert int(state.env_steps) == 256
  assert state.params["actor"]["LogStd_0"]["log_std"].shape == (1,)
