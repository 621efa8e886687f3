"""Component-health metrics: world-model errors, value calibration, value-implied goal, planner."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats as scipy_stats

import envs
from mbrl_drift import metrics as metrics_lib
from mbrl_drift.agents.base import EnvSpec
from mbrl_drift.agents.mpc.agent import PlannerAgent as Agent
from mbrl_drift.config import AgentConfig
from mbrl_drift.metrics import controls

GAMMA = 0.97
NUM_EPISODES = 16
HORIZON = 2


def _hook(**outputs):
  """An output hook replacing whole component outputs: path -> function of the output."""
  replacements = {path.replace("__", "/"): fn for path, fn in outputs.items()}

  def hook(path, out):
    return replacements[path](out) if path in replacements else out
  return hook


class OpenRoom:
  """OpenRoom with random starts, an untrained tiny agent and uniform-policy episodes."""

  def __init__(self):
    self.env, _ = envs.make("GoalGrid-OpenRoom")
    self.params = self.env.make_params(random_start=True, intended_goal=0)
    self.agent = Agent(
        AgentConfig(latent_dim=6, hidden_dim=16, num_layers=1, horizon=1, max_horizon=2,
                    gamma=GAMMA),
        EnvSpec.from_env(self.env, self.params))
    self.agent_params = self.agent.init(jax.random.key(0))
    self.episodes = controls.rollout_tabular_policy(
        jax.random.key(1), self.env, self.params,
        controls.uniform_table(self.env.num_states, 4), NUM_EPISODES)
    self.mdp = self.env.tabular(self.params)

  def numpy_episodes(self):
    e = self.episodes
    return (np.asarray(e.obs), np.asarray(e.action), np.asarray(e.reward),
            np.asarray(e.valid), np.asarray(e.terminated))


@pytest.fixture(scope="module")
def room():
  return OpenRoom()


@pytest.fixture(scope="module")
def four_rooms():
  env, _ = envs.make("GoalGrid-FourRooms")
  mdp = env.tabular(env.default_params)
  v, q = metrics_lib.optimal_tables(mdp, GAMMA)
  return env, mdp, np.asarray(v), np.asarray(q)


# -- array helpers -----------------------------------------------------------------------------

def test_monte_carlo_returns_match_hand_computation():
  reward = jnp.array([[1.0, 2.0, 3.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
  valid = jnp.array([[True, True, True, False], [True, False, False, False]])
  returns = metrics_lib.monte_carlo_returns(reward, valid, 0.5)
  # Row 0: G_2 = 3, G_1 = 2 + 0.5 * 3, G_0 = 1 + 0.5 * 3.5.
  np.testing.assert_allclose(returns, [[2.75, 3.5, 3.0, 0.0], [5.0, 0.0, 0.0, 0.0]], rtol=1e-6)
  # A reward on a padding step is ignored.
  padded = reward.at[0, 3].set(100.0)
  np.testing.assert_allclose(metrics_lib.monte_carlo_returns(padded, valid, 0.5), returns)


def test_step_terminations_mark_the_last_step_of_terminated_episodes():
  valid = jnp.array([[True, True, False], [True, True, True], [True, False, False]])
  terminated = jnp.array([True, True, False])
  np.testing.assert_array_equal(
      metrics_lib.step_terminations(valid, terminated),
      [[False, True, False], [False, False, True], [False, False, False]])


def test_correlations_match_scipy_with_ties_and_masks():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 5, size=40).astype(np.float32)  # many ties
  y = (x + rng.integers(0, 3, size=40)).astype(np.float32)
  np.testing.assert_allclose(metrics_lib.average_ranks(x), scipy_stats.rankdata(x) - 1)
  np.testing.assert_allclose(metrics_lib.spearman_correlation(x, y),
                             scipy_stats.spearmanr(x, y).statistic, rtol=1e-5)
  np.testing.assert_allclose(metrics_lib.pearson_correlation(x, y),
                             np.corrcoef(x, y)[0, 1], rtol=1e-5)
  mask = rng.random(40) < 0.5
  np.testing.assert_allclose(metrics_lib.spearman_correlation(x, y, mask),
                             scipy_stats.spearmanr(x[mask], y[mask]).statistic, rtol=1e-5)
  # Undefined cases are NaN: a constant side, a single pair, a non-finite selected value.
  assert np.isnan(metrics_lib.spearman_correlation(np.full(5, 0.3), np.arange(5.0)))
  assert np.isnan(metrics_lib.pearson_correlation(np.full(5, 0.3), np.arange(5.0)))
  assert np.isnan(metrics_lib.spearman_correlation(x, y, np.arange(40) == 3))
  assert np.isnan(metrics_lib.spearman_correlation(np.where(np.arange(40) == 0, np.nan, x), y))
  # ... unless the non-finite value is masked out.
  keep = np.arange(40) != 0
  np.testing.assert_allclose(
      metrics_lib.spearman_correlation(np.where(keep, x, np.nan), y, keep),
      scipy_stats.spearmanr(x[keep], y[keep]).statistic, rtol=1e-5)


def test_spearman_of_optimal_values_with_itself_and_its_negation(four_rooms):
  _, mdp, v, _ = four_rooms
  mask = ~np.asarray(mdp.terminal)
  for k in range(v.shape[0]):
    assert float(metrics_lib.spearman_correlation(v[k], v[k], mask)) == pytest.approx(1.0)
    assert float(metrics_lib.spearman_correlation(v[k], -v[k], mask)) == pytest.approx(-1.0)


def test_value_implied_goal_of_optimal_values_is_their_goal(four_rooms):
  env, mdp, v, _ = four_rooms
  mask = ~mdp.terminal
  approach = metrics_lib.goal_approach_states(mdp)
  alignment = jax.jit(metrics_lib.value_goal_alignment, static_argnames="goal_names")
  names = tuple(env.goal_names)
  for k, name in enumerate(names):
    for predicted in (v[k], 3.0 * v[k] - 7.0):  # ranks ignore the value scale
      result = alignment(predicted, v, mask, approach, intended_goal=k, goal_names=names)
      assert int(result["health/value_implied_goal"]) == k
      assert float(result[f"health/value_rank_corr_{name}"]) == pytest.approx(1.0)
      assert float(result["health/value_rank_corr_intended"]) == pytest.approx(1.0)
      assert float(result["health/value_implied_is_intended"]) == 1.0
      assert 0.0 < float(result["health/value_implied_margin"]) < 2.0
      assert int(result["health/value_peak_goal"]) == k
    # Values of goal k while goal k + 1 is intended: the misalignment shows.
    result = alignment(v[k], v, mask, approach, intended_goal=(k + 1) % len(names),
                       goal_names=names)
    assert int(result["health/value_implied_goal"]) == k
    assert float(result["health/value_implied_is_intended"]) == 0.0
    assert float(result["health/value_rank_corr_intended"]) < 0.9
  # Values that are NaN everywhere imply no goal.
  nowhere = alignment(jnp.full(mdp.num_states, jnp.nan), v, mask, approach, goal_names=names)
  assert int(nowhere["health/value_implied_goal"]) == -1
  assert int(nowhere["health/value_peak_goal"]) == -1
  assert np.isnan(nowhere["health/value_rank_corr_A"])


def test_goal_approach_states_are_one_move_from_the_goal(four_rooms):
  _, mdp, _, _ = four_rooms
  approach = np.asarray(metrics_lib.goal_approach_states(mdp))
  next_state = np.asarray(mdp.next_state)
  terminal = np.asarray(mdp.terminal)
  for k, goal in enumerate(np.asarray(mdp.goal_states)):
    expected = np.array([not terminal[s] and goal in next_state[s]
                         for s in range(mdp.num_states)])
    np.testing.assert_array_equal(approach[k], expected)
    assert 1 <= expected.sum() <= 4


def test_optimal_action_share_on_optimal_and_worst_actions(four_rooms):
  _, mdp, _, q = four_rooms
  mask = ~np.asarray(mdp.terminal)
  for k in range(q.shape[0]):
    best = np.argmax(q[k], axis=-1)
    assert float(metrics_lib.optimal_action_share(best, q[k], mask)) == 1.0
    worst = np.argmin(q[k], axis=-1)
    all_tied = np.min(q[k], -1) >= np.max(q[k], -1) - 1e-5
    share = float(metrics_lib.optimal_action_share(worst, q[k], mask))
    assert share == pytest.approx(all_tied[mask].mean())
    assert share < 0.05
  # Each goal's optimal actions score 1 for that goal and less for the others.
  best_for_0 = np.argmax(q[0], axis=-1)
  assert float(metrics_lib.optimal_action_share(best_for_0, q[1], mask)) < 0.9
  assert np.isnan(metrics_lib.optimal_action_share(best_for_0, q[0], np.zeros_like(mask)))


# -- world model -------------------------------------------------------------------------------

def test_world_model_errors_vanish_when_the_prediction_is_the_target(room):
  # Encoder and dynamics both output the zero latent: every prediction equals its target.
  agent = room.agent.with_output_hook(_hook(world_model__encoder=jnp.zeros_like,
                                            world_model__dynamics=jnp.zeros_like))
  result = metrics_lib.world_model_errors(agent, room.agent_params, room.episodes, HORIZON)
  for k in range(1, HORIZON + 1):
    assert float(result[f"health/latent_error_{k}"]) == 0.0
    # ... but a collapsed encoder has no spread, so its relative error is undefined.
    assert np.isnan(result[f"health/latent_error_relative_{k}"])
  assert float(result["health/latent_spread"]) == 0.0


def test_world_model_errors_match_a_step_by_step_computation(room):
  # Dynamics to zero, reward 0, termination logit -1: known predictions, real targets.
  logit = -1.0
  agent = room.agent.with_output_hook(_hook(
      world_model__dynamics=jnp.zeros_like, world_model__reward=jnp.zeros_like,
      world_model__termination=lambda out: jnp.full_like(out, logit)))
  params = room.agent_params
  result = metrics_lib.world_model_errors(agent, params, room.episodes, HORIZON)
  obs, _, reward, valid, terminated = room.numpy_episodes()
  assert 0 < terminated.sum() < NUM_EPISODES  # both kinds of episode end are covered
  latents = np.asarray(jax.vmap(jax.vmap(lambda o: agent.encode(params, o)))(obs))
  decoded_zero = np.asarray(agent.decode(params, jnp.zeros(agent.config.latent_dim)))
  reconstruction = np.asarray(jax.vmap(jax.vmap(
      lambda o: agent.decode(params, agent.encode(params, o))))(obs))
  xent = {label: float(optax.sigmoid_binary_cross_entropy(jnp.float32(logit),
                                                          jnp.float32(label)))
          for label in (0.0, 1.0)}
  lengths = valid.sum(axis=1)
  for k in range(1, HORIZON + 1):
    latent, rewards, xents, correct, recall, decoder = [], [], [], [], [], []
    for n in range(NUM_EPISODES):
      for t in range(lengths[n] - k + 1):
        step = t + k - 1
        label = float(terminated[n] and step == lengths[n] - 1)
        latent.append(np.mean(latents[n, t + k] ** 2))
        rewards.append(reward[n, step] ** 2)
        xents.append(xent[label])
        correct.append(label == 0.0)
        if label:
          recall.append(False)
        decoder.append(np.mean((decoded_zero - obs[n, t + k]) ** 2))
    assert int(result[f"health/model_pairs_{k}"]) == len(latent)
    np.testing.assert_allclose(result[f"health/latent_error_{k}"], np.mean(latent), rtol=1e-5)
    np.testing.assert_allclose(result[f"health/reward_error_{k}"], np.mean(rewards), rtol=1e-5)
    np.testing.assert_allclose(result[f"health/termination_xent_{k}"], np.mean(xents),
                               rtol=1e-5)
    np.testing.assert_allclose(result[f"health/termination_accuracy_{k}"], np.mean(correct),
                               rtol=1e-6)
    assert len(recall) > 0 and float(result[f"health/termination_recall_{k}"]) == 0.0
    np.testing.assert_allclose(result[f"health/decoder_error_{k}"], np.mean(decoder), rtol=1e-5)
  reconstruction_error = [np.mean((reconstruction[n, t] - obs[n, t]) ** 2)
                          for n in range(NUM_EPISODES) for t in range(lengths[n])]
  np.testing.assert_allclose(result["health/decoder_error_0"], np.mean(reconstruction_error),
                             rtol=1e-5)
  observed = np.concatenate([latents[n, :lengths[n] + 1] for n in range(NUM_EPISODES)])
  np.testing.assert_allclose(result["health/latent_spread"], np.mean(np.var(observed, axis=0)),
                             rtol=1e-4)


def test_world_model_errors_need_recorded_observations(room):
  e = room.episodes
  without_obs = metrics_lib.EpisodeBatch(e.obs[:, :1], e.action, e.reward, e.valid,
                                         e.terminated)
  with pytest.raises(ValueError, match="record_obs=True"):
    metrics_lib.world_model_errors(room.agent, room.agent_params, without_obs, HORIZON)
  with pytest.raises(ValueError, match="horizon"):
    metrics_lib.world_model_errors(room.agent, room.agent_params, e, 0)


# -- value calibration -------------------------------------------------------------------------

def test_value_calibration_matches_hand_computation(room):
  constant = 0.25
  agent = room.agent.with_output_hook(_hook(value=lambda out: jnp.full_like(out, constant)))
  result = metrics_lib.value_calibration(agent, room.agent_params, room.episodes)
  _, _, reward, valid, terminated = room.numpy_episodes()
  errors, returns = [], []
  for n in np.flatnonzero(terminated):
    length = valid[n].sum()
    for t in range(length):
      g = sum(GAMMA ** (i - t) * reward[n, i] for i in range(t, length))
      errors.append(constant - g)
      returns.append(g)
  assert int(result["health/value_calibration_steps"]) == len(errors)
  np.testing.assert_allclose(result["health/value_error"], np.mean(errors), rtol=1e-5)
  np.testing.assert_allclose(result["health/value_abs_error"], np.mean(np.abs(errors)),
                             rtol=1e-5)
  np.testing.assert_allclose(result["health/value_mean_return"], np.mean(returns), rtol=1e-5)
  np.testing.assert_allclose(result["health/value_mean_predicted"], constant, rtol=1e-6)
  truncated_steps = valid[~terminated].sum()
  np.testing.assert_allclose(result["health/value_censored_share"],
                             truncated_steps / valid.sum(), rtol=1e-6)
  # A constant value function has no correlation with the returns.
  assert np.isnan(result["health/value_mc_correlation"])


# -- planner -----------------------------------------------------------------------------------

def test_planner_of_a_fresh_agent_is_consistent_and_scored_exactly(room):
  # Freshly initialised reward, value and termination heads are zero, so every plan scores 0
  # and the greedy action is action 0 ("up") at every horizon.
  probes = room.env.all_observations(room.params)
  mask = ~room.mdp.terminal
  _, q = metrics_lib.optimal_tables(room.mdp, GAMMA)
  result = metrics_lib.planner_health(jax.random.key(0), room.agent, room.agent_params, probes,
                                      mask, optimal_q=q, intended_goal=0,
                                      goal_names=tuple(room.env.goal_names))
  assert float(result["health/planner_horizon_agreement_1"]) == 1.0
  assert float(result["health/planner_agreement_with_max_horizon"]) == 1.0
  assert float(result["health/planner_nonfinite_share"]) == 0.0
  up = jnp.zeros(room.mdp.num_states, jnp.int32)
  for k, name in enumerate(room.env.goal_names):
    expected = float(metrics_lib.optimal_action_share(up, q[k], mask))
    assert float(result[f"health/planner_optimal_share_{name}"]) == pytest.approx(expected)
  assert float(result["health/planner_optimal_share"]) == pytest.approx(
      float(result["health/planner_optimal_share_A"]))


def test_planner_greedy_actions_need_discrete_actions():
  agent = Agent(AgentConfig(latent_dim=4, hidden_dim=8, num_layers=1, planner="cem"),
                EnvSpec(obs_dim=3, action_dim=2, discrete=False, action_low=(-1.0, -1.0),
                        action_high=(1.0, 1.0)))
  with pytest.raises(ValueError, match="discrete"):
    metrics_lib.planner_greedy_actions(jax.random.key(0), agent, agent.init(jax.random.key(1)),
                                       jnp.zeros((2, 3)))


# -- everything at once ------------------------------------------------------------------------

def test_component_health_runs_under_jit_and_vmap_on_trained_agents(room, tiny_trained_seeds):
  trainer = tiny_trained_seeds.trainer
  agent, env, env_params = trainer.agent, trainer.env, trainer.env_params
  assert env == room.env and env_params == room.params  # the room's episodes are held-out data
  state = tiny_trained_seeds.state  # two seeds trained in one jit(vmap(train)) call
  # Two batches of held-out real episodes, one per seed.
  episodes = jax.tree.map(lambda x: x.reshape(2, NUM_EPISODES // 2, *x.shape[1:]),
                          room.episodes)
  assert np.all(np.asarray(episodes.terminated).sum(axis=1) >= 1)

  health = jax.jit(jax.vmap(
      lambda p, e: metrics_lib.component_health(jax.random.key(2), agent, p, env, env_params, e,
                                                num_resamples=200)))
  result = health(state.params, episodes)
  for key, value in result.items():
    assert key.startswith("health/"), key
    assert np.shape(value) == (2,), key
    assert np.all(np.isfinite(value)), (key, value)
  for key in [k for k in result if k.endswith("_ci_low")]:
    name = key[:-len("_ci_low")]
    assert np.all(result[key] <= result[name] + 1e-6), name
    assert np.all(result[name] <= result[f"{name}_ci_high"] + 1e-6), name
  for k in range(1, agent.config.max_horizon + 1):
    assert f"health/latent_error_{k}_ci_high" in result
  for k in range(agent.config.max_horizon + 1):
    assert f"health/decoder_error_{k}" in result
  for share in ("planner_optimal_share", "planner_horizon_agreement_1",
                "termination_accuracy_1", "value_censored_share"):
    assert np.all((result[f"health/{share}"] >= 0) & (result[f"health/{share}"] <= 1)), share
  assert set(np.asarray(result["health/value_implied_goal"]).tolist()) <= {0, 1}
  # Each seed is measured on its own parameters and episodes.
  assert result["health/latent_error_1"][0] != result["health/latent_error_1"][1]
  # The same key gives the same numbers.
  again = health(state.params, episodes)
  for key in result:
    np.testing.assert_array_equal(again[key], result[key], err_msg=key)
