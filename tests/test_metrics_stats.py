"""Bootstrap confidence intervals and the interquartile mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from mbrl_drift.metrics import stats


def test_bootstrap_mean_interval_covers_known_mean_at_nominal_rate():
  # 200 synthetic data sets of 100 exponential draws (skewed, mean 1): the 95% percentile
  # interval of the mean must cover the true mean in 90-99% of them.
  num_repetitions, num_samples = 200, 100
  data_keys, boot_keys = jnp.split(jax.random.split(jax.random.key(0), 2 * num_repetitions), 2)
  samples = jax.vmap(lambda k: jax.random.exponential(k, (num_samples,)))(data_keys)
  intervals = jax.vmap(lambda k, x: stats.mean_ci(k, x, 1000, 0.95))(boot_keys, samples)
  covered = (intervals.low <= 1.0) & (1.0 <= intervals.high)
  coverage = float(jnp.mean(covered))
  assert 0.90 <= coverage <= 0.99, coverage
  np.testing.assert_allclose(intervals.estimate, jnp.mean(samples, axis=1), rtol=1e-6)


def test_bootstrap_interval_orders_and_is_reproducible():
  x = jax.random.normal(jax.random.key(1), (50,)) + 3.0
  first = stats.bootstrap_ci(jax.random.key(2), x)
  second = stats.bootstrap_ci(jax.random.key(2), x)
  other_key = stats.bootstrap_ci(jax.random.key(3), x)
  assert float(first.low) < float(first.estimate) < float(first.high)
  np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
  assert float(other_key.low) != float(first.low)
  # The interval narrows as the confidence level drops.
  narrow = stats.bootstrap_ci(jax.random.key(2), x, confidence=0.5)
  assert float(narrow.high - narrow.low) < float(first.high - first.low)


def test_bootstrap_of_constant_sample_is_degenerate():
  interval = stats.mean_ci(jax.random.key(0), jnp.full((20,), 2.5))
  np.testing.assert_allclose(np.asarray(interval), 2.5)


def test_bootstrap_of_any_statistic_and_of_pytree_samples():
  key = jax.random.key(4)
  x = jax.random.normal(key, (200,))
  median = stats.bootstrap_ci(key, x, jnp.median)
  np.testing.assert_allclose(median.estimate, np.median(np.asarray(x)), rtol=1e-6)
  assert float(median.low) < float(median.estimate) < float(median.high)

  # A ratio of sums resampled episode by episode: numerator and denominator stay paired.
  numerator = jnp.arange(1.0, 11.0)
  denominator = 2.0 * numerator

  def ratio(samples):
    num, den = samples
    return jnp.sum(num) / jnp.sum(den)

  interval = stats.bootstrap_ci(key, (numerator, denominator), ratio)
  np.testing.assert_allclose(np.asarray(interval), 0.5, rtol=1e-6)


def test_vector_statistics_get_one_interval_per_column():
  columns = jnp.stack([jnp.zeros(30), jnp.ones(30), jnp.arange(30.0)], axis=1)
  interval = stats.mean_ci(jax.random.key(5), columns)
  assert interval.estimate.shape == (3,)
  np.testing.assert_allclose(interval.low[:2], [0.0, 1.0])
  np.testing.assert_allclose(interval.estimate[2], 14.5)


def test_nanmean_interval_ignores_undefined_entries():
  x = jnp.array([1.0, jnp.nan, 3.0, jnp.nan, 2.0, 2.0])
  interval = stats.nanmean_ci(jax.random.key(6), x, 500)
  np.testing.assert_allclose(interval.estimate, 2.0)
  assert 1.0 <= float(interval.low) <= 2.0 <= float(interval.high) <= 3.0


@pytest.mark.parametrize("num_samples", [1, 3, 4, 7, 10, 13, 100])
def test_interquartile_mean_matches_scipy_trim_mean(num_samples):
  x = np.asarray(jax.random.normal(jax.random.key(num_samples), (num_samples, 2)))
  np.testing.assert_allclose(
      stats.interquartile_mean(jnp.asarray(x)), scipy.stats.trim_mean(x, 0.25, axis=0),
      rtol=1e-5)


def test_interquartile_mean_resists_outliers():
  # 40 runs near 1 and two diverged runs at 100: the mean is pulled to ~5.8, the IQM is not,
  # and no plausible resample holds the ten outliers needed to move it.
  scores = jnp.concatenate([1.0 + 0.1 * jax.random.normal(jax.random.key(0), (38,)),
                            jnp.array([100.0, 100.0])])
  assert float(jnp.mean(scores)) > 5.0
  assert abs(float(stats.interquartile_mean(scores)) - 1.0) < 0.05
  interval = stats.iqm_ci(jax.random.key(0), scores)
  assert float(interval.high) < 1.2
  assert float(interval.low) <= float(interval.estimate) <= float(interval.high)


def test_ci_dict_flattens_to_group_keys():
  interval = stats.ConfidenceInterval(jnp.float32(1.0), jnp.float32(0.5), jnp.float32(1.5))
  assert stats.ci_dict("outcome/return", interval) == {
      "outcome/return": 1.0, "outcome/return_ci_low": 0.5, "outcome/return_ci_high": 1.5}


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_bad_confidence_is_a_value_error(confidence):
  with pytest.raises(ValueError, match="confidence"):
    stats.bootstrap_ci(jax.random.key(0), jnp.ones(5), confidence=confidence)


def test_bad_resample_count_is_a_value_error():
  with pytest.raises(ValueError, match="num_resamples"):
    stats.bootstrap_ci(jax.random.key(0), jnp.ones(5), num_resamples=0)


# -- over seeds ----------------------------------------------------------------------------------


def test_percentile_bootstrap_agrees_with_scipy():
  scipy_stats = pytest.importorskip("scipy.stats")
  x = np.asarray(jax.random.exponential(jax.random.key(7), (80,)), np.float64)
  ours = stats.mean_ci(jax.random.key(8), jnp.asarray(x), 4000, 0.95)
  reference = scipy_stats.bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=4000,
                                    method="percentile", random_state=0).confidence_interval
  scale = float(np.std(x) / np.sqrt(x.size))  # standard error of the mean
  assert abs(float(ours.low) - reference.low) < 0.15 * scale
  assert abs(float(ours.high) - reference.high) < 0.15 * scale


def test_iqm_interval_needs_ten_seeds():
  four = jnp.array([0.82, 0.78, 0.13, 0.15])
  interval = stats.iqm_ci(jax.random.key(0), four)
  assert float(interval.estimate) == pytest.approx(np.mean([0.15, 0.78]))
  assert np.isnan(float(interval.low)) and np.isnan(float(interval.high))
  ten = jnp.linspace(0.0, 1.0, 10)
  interval = stats.iqm_ci(jax.random.key(0), ten)
  assert float(interval.low) < float(interval.estimate) < float(interval.high)


@pytest.mark.parametrize("num_seeds", [2, 4, 9, 10, 13])
def test_seed_summary_names_the_range_and_gives_an_interval_from_ten_seeds(num_seeds):
  values = jnp.linspace(0.1, 0.9, num_seeds)
  interval = stats.ConfidenceInterval(jnp.float32(0.5), jnp.float32(0.3), jnp.float32(0.7))
  summary = stats.seed_summary("goal/coherence", values, interval=interval)
  assert float(summary["goal/coherence/min"]) == pytest.approx(0.1)
  assert float(summary["goal/coherence/max"]) == pytest.approx(0.9)
  np.testing.assert_allclose(summary["goal/coherence/per_seed"], values)
  has_interval = "goal/coherence/ci_low" in summary
  assert has_interval == (num_seeds >= stats.MIN_SEEDS_FOR_INTERVAL)
  # without an interval the estimate is the aggregate; NaN seeds are left out
  plain = stats.seed_summary("x/y", jnp.array([1.0, jnp.nan, 3.0]))
  assert float(plain["x/y"]) == 2.0 and float(plain["x/y/max"]) == 3.0
  assert float(stats.seed_summary("x/y", jnp.array([1.0, 5.0, 3.0, 4.0]),
                                  aggregate="iqm")["x/y"]) == pytest.approx(3.5)


def test_nan_interquartile_mean_matches_trim_mean_of_the_finite_values():
  x = np.array([[3.0, 1.0], [np.nan, 2.0], [1.0, 8.0], [7.0, np.nan], [2.0, 4.0], [9.0, 0.0]])
  ours = np.asarray(stats.nan_interquartile_mean(jnp.asarray(x)))
  for column in range(2):
    finite = x[:, column][~np.isnan(x[:, column])]
    assert ours[column] == pytest.approx(scipy.stats.trim_mean(finite, 0.25))
  assert np.isnan(float(stats.nan_interquartile_mean(jnp.array([jnp.nan, jnp.nan]))))


def _four_seeds_of_episodes():
  """Per-episode coherence-like values: seeds near 0.82, 0.78, 0.13 and 0.15 (64 episodes)."""
  centres = jnp.array([0.82, 0.78, 0.13, 0.15])
  noise = 0.05 * jax.random.normal(jax.random.key(0), (4, 64))
  return centres[:, None] + noise


def test_hierarchical_bootstrap_includes_between_seed_variance():
  per_episode = _four_seeds_of_episodes()
  pooled = stats.mean_ci(jax.random.key(1), per_episode.reshape(-1))
  nested = stats.hierarchical_bootstrap_ci(jax.random.key(1), per_episode)
  np.testing.assert_allclose(nested.estimate, pooled.estimate, rtol=1e-5)
  # resampling episodes only: an interval of width ~0.07 that excludes every seed's value
  assert float(pooled.high - pooled.low) < 0.15
  # resampling seeds, then episodes: spans most of the seeds' range
  assert float(nested.low) < 0.3 and float(nested.high) > 0.6


def test_hierarchical_bootstrap_without_seed_variance_matches_the_episode_bootstrap():
  # Ten seeds drawn from one distribution: both intervals estimate the same sampling spread.
  per_episode = jax.random.normal(jax.random.key(2), (10, 50))
  nested = stats.hierarchical_bootstrap_ci(jax.random.key(3), per_episode, num_resamples=2000)
  flat = stats.mean_ci(jax.random.key(3), per_episode.reshape(-1), 2000)
  width_nested = float(nested.high - nested.low)
  width_flat = float(flat.high - flat.low)
  # the two-stage bootstrap is a little wider (it resamples at both levels), never narrower
  assert width_flat * 0.9 < width_nested < width_flat * 1.8


def test_hierarchical_bootstrap_of_a_pytree_statistic_and_iqm():
  numerator = jnp.ones((12, 5))
  denominator = 2.0 * jnp.ones((12, 5))

  def ratio(samples):
    num, den = samples
    return jnp.sum(num) / jnp.sum(den)

  interval = stats.hierarchical_bootstrap_ci(jax.random.key(0), (numerator, denominator), ratio)
  np.testing.assert_allclose(np.asarray(interval), 0.5, rtol=1e-6)
  outliers = jnp.concatenate([jnp.zeros((11, 4)), 100.0 * jnp.ones((1, 4))])
  iqm = stats.hierarchical_bootstrap_ci(jax.random.key(0), outliers, aggregate="iqm")
  assert float(iqm.estimate) == 0.0
  with pytest.raises(ValueError, match="aggregate"):
    stats.hierarchical_bootstrap_ci(jax.random.key(0), outliers, aggregate="median")
