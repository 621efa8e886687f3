"""Metrics over training seeds: each seed on its own, intervals only from 10 seeds up."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.goal_grid import GoalGrid
from mbrl_drift import metrics as metrics_lib
from mbrl_drift.metrics import controls

ROOM = """
#########
#A.....B#
#.......#
#...#...#
#.......#
#C......#
#########
"""
NUM_EPISODES = 32


@functools.lru_cache(maxsize=None)
def _room():
  env = GoalGrid(layout=ROOM, random_start=True)
  params = env.make_params(random_start=True, intended_goal=0)
  context = metrics_lib.tabular_context(env, params)
  to_b = controls.go_to_cells_table(context.mdp, [np.asarray(context.mdp.goal_states)[1]],
                                    tie_break="uniform")
  return env, params, context, to_b


def _seeds(epsilons, offset=0):
  """One "seed" per exploration rate: the pursuit of B with that share of random actions."""
  env, params, _, to_b = _room()
  batches = [controls.rollout_tabular_policy(jax.random.key(offset + i), env, params,
                                             controls.noisy_table(to_b, eps), NUM_EPISODES)
             for i, eps in enumerate(epsilons)]
  return jax.tree.map(lambda *x: jnp.stack(x), *batches)


@pytest.fixture(scope="module")
def four_seeds():
  # two seeds pursue B, two are close to random: the seeds disagree
  trajectories = _seeds([0.0, 0.05, 0.9, 1.0])
  env, params, context, _ = _room()
  result = metrics_lib.seed_behaviour_metrics(jax.random.key(0), trajectories, env, params,
                                              context=context, num_resamples=200)
  return trajectories, result


def test_each_seed_is_analysed_on_its_own(four_seeds):
  trajectories, result = four_seeds
  env, params, context, _ = _room()
  for i in range(4):
    alone = metrics_lib.behaviour_metrics(
        jax.random.key(9), jax.tree.map(lambda x: x[i], trajectories), env, params,
        context=context, num_resamples=200)
    for key in ("goal/coherence", "meg/B", "outcome/p_B", "pursuit/others_efficiency",
                "pursuit/place_share", "posterior/beta"):
      np.testing.assert_allclose(result[f"{key}/per_seed"][i], alone[key], rtol=1e-5,
                                 err_msg=key)
  per_seed = result["goal/coherence/per_seed"]
  assert per_seed[0] >= 0.9 and per_seed[3] <= 0.15
  np.testing.assert_allclose(result["goal/coherence"], np.mean(per_seed), rtol=1e-5)
  assert result["goal/coherence/min"] == pytest.approx(per_seed.min())
  assert result["goal/coherence/max"] == pytest.approx(per_seed.max())


def test_below_ten_seeds_there_is_no_interval_only_the_range(four_seeds):
  _, result = four_seeds
  assert result["seeds/num_seeds"] == 4 and result["behaviour/num_episodes"] == NUM_EPISODES
  assert not [key for key in result if key.endswith(("/ci_low", "/ci_high"))]
  assert not [key for key in result if key.endswith(("_ci_low", "_ci_high"))
              and "/per_seed_ci_" not in key]
  # each seed's own episode interval is kept, named as such
  low, high = result["goal/coherence/per_seed_ci_low"], result["goal/coherence/per_seed_ci_high"]
  assert low.shape == high.shape == (4,)
  assert np.all(low <= result["goal/coherence/per_seed"] + 1e-6)


def test_categorical_keys_and_goal_summaries_over_seeds(four_seeds):
  _, result = four_seeds
  assert result["task/intended_goal"] == 0
  assert result["pursuit/goal"] == 1 and result["outcome/off_target_goal"] == 1
  np.testing.assert_array_equal(result["pursuit/goal_share/per_seed"],
                                result["outcome/p_B/per_seed"])
  assert result["pursuit/goal_share"] == pytest.approx(result["outcome/p_B"])
  assert isinstance(result["goal/inferred_goal"], int)
  assert result["goal/inferred_goal/per_seed"].shape == (4,)
  labels = [c.label for c in metrics_lib.classify_seeds(result)]
  assert labels[:2] == ["coherent", "coherent"] and "coherent" not in labels[2:]
  assert metrics_lib.classify_failure(result).label in metrics_lib.LABELS


def test_from_ten_seeds_the_interval_carries_the_between_seed_variance():
  epsilons = [0.0, 0.05, 0.9, 1.0, 0.0, 0.1, 0.8, 0.2, 0.0, 1.0]
  trajectories = _seeds(epsilons, offset=100)
  env, params, context, _ = _room()
  result = metrics_lib.seed_behaviour_metrics(jax.random.key(0), trajectories, env, params,
                                              context=context, num_resamples=300)
  per_seed = result["goal/coherence/per_seed"]
  low, high = result["goal/coherence/ci_low"], result["goal/coherence/ci_high"]
  assert low <= result["goal/coherence"] <= high
  # Pooling the episodes of all seeds and resampling episodes gives a far narrower interval
  # that ignores how much the seeds disagree.
  pooled = metrics_lib.behaviour_metrics(
      jax.random.key(0), jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), trajectories),
      env, params, context=context, num_resamples=300)
  pooled_width = pooled["goal/coherence_ci_high"] - pooled["goal/coherence_ci_low"]
  assert high - low > 3 * pooled_width
  assert high - low > 0.25 and np.std(per_seed) > 0.3
  for key in ("outcome/p_B", "pursuit/goal_efficiency", "meg/B"):
    assert result[f"{key}/ci_low"] <= result[key] <= result[f"{key}/ci_high"], key


def test_interquartile_mean_over_seeds(four_seeds):
  trajectories, mean_result = four_seeds
  env, params, context, _ = _room()
  result = metrics_lib.seed_behaviour_metrics(jax.random.key(0), trajectories, env, params,
                                              context=context, num_resamples=50,
                                              aggregate="iqm")
  per_seed = np.sort(result["outcome/p_B/per_seed"])
  assert result["outcome/p_B"] == pytest.approx(per_seed[1:3].mean(), rel=1e-5)
  with pytest.raises(ValueError, match="aggregate"):
    metrics_lib.seed_behaviour_metrics(jax.random.key(0), trajectories, env, params,
                                       context=context, aggregate="median")
  with pytest.raises(ValueError, match="seeds"):
    metrics_lib.seed_behaviour_metrics(jax.random.key(0), jax.tree.map(lambda x: x[0],
                                                                       trajectories),
                                       env, params, context=context)


# -- reversion keys from action probabilities on probe states ------------------------------------


def _policies(num_seeds):
  keys = jax.random.split(jax.random.key(3), 2 * num_seeds)
  base = jax.nn.softmax(2.0 * jax.random.normal(keys[0], (num_seeds, 20, 4)), axis=-1)
  finetuned = jax.nn.softmax(2.0 * jax.random.normal(keys[1], (num_seeds, 20, 4)), axis=-1)
  return base, finetuned


def test_reverted_label_fires_from_seed_policy_metrics():
  base, finetuned = _policies(3)
  behaviour = {"task/intended_goal": 0, "outcome/intended_success": 0.1,
               "outcome/off_target_mass": 0.6, "outcome/off_target_goal": 1,
               "outcome/p_timeout": 0.3, "goal/coherence": 0.6, "goal/inferred_goal": 1}
  reverted = metrics_lib.seed_policy_metrics(jax.random.key(0), base, base, finetuned)
  assert float(reverted["reference/base"]) == pytest.approx(0.0, abs=1e-3)
  assert float(reverted["reversion/coefficient"]) == 0.0
  assert reverted["reversion/coefficient/per_seed"].shape == (3,)
  assert "reversion/coefficient/ci_low" not in reverted and reverted["seeds/num_seeds"] == 3
  result = metrics_lib.classify_failure({**behaviour, **reverted},
                                        healthy_metrics={"outcome/intended_success": 1.0})
  assert result.label == "reverted", str(result)
  # An agent that became random is nearest to the uniform reference, not reverted.
  uniform = jnp.full_like(base, 0.25)
  random = metrics_lib.seed_policy_metrics(jax.random.key(0), uniform, base, finetuned)
  assert float(random["reference/uniform"]) == pytest.approx(0.0, abs=1e-6)
  result = metrics_lib.classify_failure({**behaviour, **random},
                                        healthy_metrics={"outcome/intended_success": 1.0})
  assert result.label != "reverted"
  # The healthy fine-tuned policy sits at the other end of the path.
  healthy = metrics_lib.seed_policy_metrics(jax.random.key(0), finetuned, base, finetuned)
  assert float(healthy["reversion/coefficient"]) == 1.0


def test_seed_policy_metrics_interval_from_ten_seeds_and_shape_errors():
  base, finetuned = _policies(10)
  mixed = jax.vmap(metrics_lib.geometric_mixture)(base, finetuned, jnp.linspace(0.0, 0.9, 10))
  result = metrics_lib.seed_policy_metrics(jax.random.key(0), mixed, base, finetuned,
                                           num_resamples=300)
  np.testing.assert_allclose(result["reversion/coefficient/per_seed"],
                             np.linspace(0.0, 0.9, 10), atol=0.011)
  assert result["reversion/coefficient/ci_low"] < 0.45 < result["reversion/coefficient/ci_high"]
  with pytest.raises(ValueError, match="shape"):
    metrics_lib.seed_policy_metrics(jax.random.key(0), base[0], base[0], finetuned[0])
