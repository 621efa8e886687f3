"""End to end: control policies -> behaviour_metrics -> failure labels."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from mbrl_drift import metrics as metrics_lib
from mbrl_drift.metrics import controls

NUM_EPISODES = 64
INTENDED = 0  # goal "A"


class FourRooms:
  """FourRooms with random starts, its metric context and control policies (built once)."""

  def __init__(self):
    self.env, _ = envs.make("GoalGrid-FourRooms")
    self.params = self.env.make_params(random_start=True, intended_goal=INTENDED)
    self.context = metrics_lib.tabular_context(self.env, self.params)
    self.references = metrics_lib.reference_policies(self.context)
    self.num_states = self.env.num_states

  def oracle(self, goal_name):
    return self.references[f"oracle_{goal_name}"]

  def evaluate(self, behaviour, seed=0, **kwargs):
    trajectories = controls.rollout_tabular_policy(
        jax.random.key(seed), self.env, self.params, behaviour, NUM_EPISODES)
    return metrics_lib.behaviour_metrics(
        jax.random.key(seed + 1), trajectories, self.env, self.params, context=self.context,
        **kwargs)


@pytest.fixture(scope="module")
def grid():
  return FourRooms()


@pytest.fixture(scope="module")
def healthy(grid):
  return grid.evaluate(grid.oracle("A"))


def _check_intervals(metrics):
  lows = [key[:-len("_ci_low")] for key in metrics if key.endswith("_ci_low")]
  assert len(lows) > 10
  for key in lows:
    low, high = float(metrics[f"{key}_ci_low"]), float(metrics[f"{key}_ci_high"])
    estimate = float(metrics[key])
    if np.isnan(estimate):  # undefined, e.g. the efficiency towards a goal no episode reached
      assert np.isnan(low) and np.isnan(high), key
      continue
    assert low - 1e-6 <= estimate <= high + 1e-6, (key, low, estimate, high)


def test_healthy_agent_is_intact(grid, healthy):
  assert float(healthy["outcome/intended_success"]) == 1.0
  assert int(healthy["goal/inferred_goal"]) == INTENDED
  assert float(healthy["goal/coherence"]) >= 0.9
  assert float(healthy["outcome/spl_A"]) == pytest.approx(1.0)
  assert int(healthy["behaviour/num_episodes"]) == NUM_EPISODES
  assert float(healthy["posterior/p_A"]) >= 0.9
  _check_intervals(healthy)
  assert metrics_lib.classify_failure(healthy, healthy_metrics=healthy).label == "intact"


def test_metric_dict_is_flat_and_scalar(healthy):
  for key, value in healthy.items():
    assert key.count("/") >= 1, key
    assert np.shape(value) == (), key
  for group in ("outcome", "attractor", "endpoint", "meg", "goal", "cell", "posterior", "task"):
    assert any(key.startswith(group + "/") for key in healthy), group


def test_same_key_gives_the_same_numbers(grid, healthy):
  again = grid.evaluate(grid.oracle("A"))
  for key in healthy:
    np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(healthy[key]), err_msg=key)


def test_pursuing_another_goal_is_coherent(grid, healthy):
  wrong = grid.evaluate(grid.oracle("B"))
  assert float(wrong["outcome/intended_success"]) == 0.0
  assert int(wrong["goal/inferred_goal"]) == 1
  assert int(wrong["outcome/off_target_goal"]) == 1
  assert float(wrong["outcome/spl_B"]) == pytest.approx(1.0)
  result = metrics_lib.classify_failure(wrong, healthy_metrics=healthy)
  assert result.label == "coherent", str(result)


def test_uniform_policy_is_incoherent(grid, healthy):
  aimless = grid.evaluate(metrics_lib.uniform_table(grid.num_states, 4))
  assert float(aimless["goal/coherence"]) <= 0.1
  assert float(aimless["outcome/path_efficiency"]) < 0.5
  result = metrics_lib.classify_failure(aimless, healthy_metrics=healthy)
  assert result.label == "incoherent", str(result)


def test_gathering_in_one_cell_is_coherent_towards_that_place(grid, healthy):
  mdp = grid.context.mdp
  next_state = np.asarray(mdp.next_state)
  target = next(s for s in range(grid.num_states)
                if not bool(mdp.terminal[s]) and np.any(next_state[s] == s))
  gathered = grid.evaluate(metrics_lib.go_to_cell_table(mdp, target))
  assert int(gathered["cell/best_cell"]) == target
  assert int(gathered["endpoint/top_cell"]) == target
  assert int(gathered["endpoint/top_goal"]) == -1
  assert float(gathered["attractor/fixed_point_rate"]) == 1.0
  result = metrics_lib.classify_failure(gathered, healthy_metrics=healthy)
  assert result.label == "coherent", str(result)


def test_base_policy_comes_back_as_reverted(grid, healthy):
  # A base policy that prefers goal B, fine-tuned to the oracle of A; the faulted policy
  # is the base again.
  base = jax.nn.softmax(jnp.log(grid.oracle("B") + 0.05) * 2.0, axis=-1)
  finetuned = grid.oracle("A")
  reverted = grid.evaluate(base, policy=base, base_policy=base, finetuned_policy=finetuned,
                           references=grid.references)
  assert float(reverted["reference/base"]) == pytest.approx(0.0, abs=1e-3)
  assert float(reverted["reversion/coefficient"]) == 0.0
  assert float(reverted["drift/kl_to_base"]) == pytest.approx(0.0, abs=1e-5)
  result = metrics_lib.classify_failure(reverted, healthy_metrics=healthy)
  assert result.label == "reverted", str(result)
  # The fine-tuned policy itself sits at the other end of the path.
  at_finetuned = metrics_lib.policy_metrics(finetuned, grid.references, base, finetuned)
  assert float(at_finetuned["reversion/coefficient"]) == 1.0
  assert float(at_finetuned["reference/healthy"]) == 0.0


def test_literal_normalisation_is_reported_alongside(grid, healthy):
  # The default tie-aware score of an optimal agent is high; the literal T log|A| score is
  # lower where several moves are optimal (see goal_directedness).
  assert float(healthy["meg/coherence"]) >= 0.9
  assert 0.5 < float(healthy["meg_uniform_norm/coherence"]) < 0.9
  trajectories = controls.rollout_tabular_policy(
      jax.random.key(0), grid.env, grid.params, grid.oracle("A"), NUM_EPISODES)
  with pytest.raises(ValueError, match="normalisation"):
    metrics_lib.behaviour_metrics(jax.random.key(1), trajectories, grid.env, grid.params,
                                  context=grid.context, normalisation="max")


def test_environment_without_goals_is_a_value_error():
  env, params = envs.make("CartPole")
  with pytest.raises(ValueError, match="goal environment"):
    metrics_lib.behaviour_metrics(jax.random.key(0), None, env, params)


# -- continuous navigation (PointGoals): the heading analogue ------------------------------------


def _greedy_heading(env, goal, key, obs, state):
  """Moves straight down the geodesic distance to ``goal`` (around walls)."""
  del key, obs
  gradient = jax.grad(lambda p: env.distance_to_goals(p)[goal])(state.position)
  return -gradient / (jnp.linalg.norm(gradient) + 1e-8), jnp.bool_(False)


def _random_heading(env, goal, key, obs, state):
  del env, goal, obs, state
  return jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0), jnp.bool_(False)


@pytest.fixture(scope="module")
def point_goals():
  env, params = envs.make("PointGoals")
  return env, params


@pytest.mark.parametrize("goal", [0, 2])
def test_point_goals_greedy_controller_is_coherent(point_goals, goal):
  env, params = point_goals
  act = _ACTS.setdefault(("greedy", env), functools.partial(_greedy_heading, env))
  trajectories = controls.rollout(jax.random.key(0), env, params, act, jnp.int32(goal), 32)
  result = metrics_lib.behaviour_metrics(jax.random.key(1), trajectories, env, params,
                                         num_resamples=200)
  assert float(result[f"outcome/p_goal{goal}"]) == 1.0
  assert float(result["goal/coherence"]) >= 0.9
  assert int(result["goal/inferred_goal"]) == goal
  assert float(result[f"posterior/p_goal{goal}"]) >= 0.9
  assert float(result[f"outcome/spl_goal{goal}"]) >= 0.9


def test_point_goals_random_motion_is_incoherent(point_goals):
  env, params = point_goals
  act = _ACTS.setdefault(("random", env), functools.partial(_random_heading, env))
  trajectories = controls.rollout(jax.random.key(0), env, params, act, jnp.int32(0), 32)
  result = metrics_lib.behaviour_metrics(jax.random.key(1), trajectories, env, params,
                                         num_resamples=200)
  assert float(result["goal/coherence"]) <= 0.1
  assert float(result["outcome/p_timeout"]) == 1.0
  label = metrics_lib.classify_failure(result).label
  assert label == "incoherent"


_ACTS: dict = {}
