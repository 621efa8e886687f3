"""The agent interface contract, run on every registered agent.

A new agent joins this suite by adding a tiny config to ``TINY_CONFIGS``; registering an agent
without one fails ``test_every_registered_agent_has_a_tiny_config``.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import agents, faults
from mbrl_drift.agents.base import eval_args
from mbrl_drift.config import AgentConfig, TrainConfig
from mbrl_drift.evaluate import evaluate
from mbrl_drift.runs import load_run, train_run
from mbrl_drift.train import make_train

_TINY_RUN = dict(env="GoalGrid-OpenRoom", total_steps=256, num_envs=8, num_chunks=2,
                 eval_episodes=8)


def _tiny_planner() -> TrainConfig:
  return TrainConfig(**_TINY_RUN, buffer_size=256, batch_size=8, learning_starts=64,
                     agent=AgentConfig(latent_dim=8, hidden_dim=16, num_layers=1, horizon=1,
                                       max_horizon=2))


def _tiny_policy() -> TrainConfig:
  definition = agents.get("policy")
  agent = definition.config_type(**{k: v for k, v in
                                    dict(hidden_dim=16, num_layers=1, rollout_steps=8).items()
                                    if k in {f.name for f in
                                             dataclasses.fields(definition.config_type)}})
  return TrainConfig(**_TINY_RUN, agent_kind="policy", agent=agent)


#: Agent name -> a config that trains in seconds.
TINY_CONFIGS = {"planner": _tiny_planner, "policy": _tiny_policy}

AGENTS = [name for name in agents.names()]


def test_every_registered_agent_has_a_tiny_config():
  missing = sorted(set(agents.names()) - set(TINY_CONFIGS))
  assert not missing, f"add a tiny config for {missing} to TINY_CONFIGS"


@pytest.fixture(scope="module", params=AGENTS)
def trained(request, tmp_path_factory):
  """A tiny 2-seed run of one agent on disk, with its trainer."""
  config = TINY_CONFIGS[request.param]()
  out = tmp_path_factory.mktemp(request.param) / "run"
  train_run(config, 2, out, progress=False)
  return request.param, config, out


def test_init_gives_every_declared_component_and_is_deterministic(trained):
  _, config, _ = trained
  agent = make_train(config).agent
  params = agent.init(jax.random.key(3))
  again = jax.jit(agent.init)(jax.random.key(3))
  other = agent.init(jax.random.key(4))
  for path, component in agent.components.items():
    subtree = agents.get_path(params, path)
    shapes = jax.tree.map(jnp.shape, jax.eval_shape(component.init, jax.random.key(0)))
    assert jax.tree.map(jnp.shape, subtree) == shapes, path
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params),
                                                       jax.tree.leaves(other)))


def test_resumed_run_equals_an_uninterrupted_one_and_round_trips(trained, tmp_path):
  _, config, out = trained
  partial = tmp_path / "partial"
  assert not train_run(config, 2, partial, progress=False, max_chunks=1)["finished"]
  assert train_run(config, 2, partial, resume=True, progress=False)["finished"]
  resumed, finished = load_run(partial).state, load_run(out).state
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(finished)):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_array_equal(a, b)


def test_fault_at_severity_zero_is_the_identity(trained):
  _, _, out = trained
  run = load_run(out)
  params = jax.tree.map(lambda x: x[0], run.params)
  for path in run.trainer.agent.components:
    for fault in (faults.gaussian_noise(path, scale=1.0), faults.sign_flip(path)):
      broken = fault(jax.random.key(0), params, jnp.float32(0.0))
      for a, b in zip(jax.tree.leaves(broken), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


def test_evaluation_vmaps_over_seeds_and_selections(trained):
  _, _, out = trained
  run = load_run(out)
  agent, env, env_params = run.trainer.agent, run.trainer.env, run.trainer.env_params
  axes = agent.eval_axes
  depth = axes.depth_default

  def one(params, key, selection):
    return evaluate(agent, params, env, env_params, key, 4, eval_args(depth, selection),
                    max_steps=int(env_params.max_steps), record_obs=False)

  keys = jax.random.split(jax.random.key(0), 2)
  batched = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
  for selection in range(len(axes.selections)):
    trajectories = batched(run.params, keys, selection)
    assert trajectories.length.shape == (2, 4)
  # Seed i of the vmapped call equals seed i evaluated alone.
  alone = jax.jit(one)(jax.tree.map(lambda x: x[1], run.params), keys[1], 0)
  np.testing.assert_array_equal(batched(run.params, keys, 0).reached_goal[1], alone.reached_goal)


def test_act_reports_nonfinite_parameters_instead_of_raising(trained):
  _, _, out = trained
  run = load_run(out)
  agent, env, env_params = run.trainer.agent, run.trainer.env, run.trainer.env_params
  params = jax.tree.map(lambda x: jnp.full_like(x[0], jnp.nan), run.params)
  obs, _ = env.reset(jax.random.key(0), env_params)
  out = jax.jit(agent.act)(params, jax.random.key(1), jnp.ravel(obs).astype(jnp.float32),
                           eval_args(agent.eval_axes.depth_default))
  assert bool(out.nonfinite)
  action = int(out.action)
  assert 0 <= action < agent.spec.action_dim
  if out.action_probs is not None:
    assert out.action_probs.shape == (agent.spec.action_dim,)


def test_action_probs_sum_to_one_for_discrete_agents(trained):
  _, _, out = trained
  run = load_run(out)
  agent, env, env_params = run.trainer.agent, run.trainer.env, run.trainer.env_params
  params = jax.tree.map(lambda x: x[0], run.params)
  obs, _ = env.reset(jax.random.key(0), env_params)
  for selection in range(len(agent.eval_axes.selections)):
    out = agent.act(params, jax.random.key(1), jnp.ravel(obs).astype(jnp.float32),
                    eval_args(agent.eval_axes.depth_default, selection, epsilon=0.1))
    if out.action_probs is not None:
      np.testing.assert_allclose(float(jnp.sum(out.action_probs)), 1.0, rtol=1e-5)


def test_unknown_agent_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown agent 'nope'; registered agents: planner"):
    agents.get("nope")
  with pytest.raises(ValueError, match="agent_kind='nope'.*one of"):
    TrainConfig(agent_kind="nope")


def test_an_agent_config_of_another_kind_is_refused():
  with pytest.raises(ValueError, match="invalid config field agent="):
    TrainConfig(agent_kind="planner", agent=object())
