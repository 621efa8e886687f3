"""Statistics for aggregates: bootstrap intervals over episodes and over seeds, and the IQM.

**Over the episodes of one batch** (one seed, or any sample of independent rows), aggregates
carry a percentile bootstrap confidence interval (Efron & Tibshirani 1993, percentile method):
:func:`bootstrap_ci`, :func:`mean_ci`, :func:`nanmean_ci`.

**Over seeds** (independent training runs), the episodes of one seed are not independent of
each other: they share the seed's parameters, so pooling every seed's episodes into one sample
and resampling episodes leaves the between-seed variance out of the interval (four seeds with
coherence 0.82 / 0.78 / 0.13 / 0.15 pooled give an interval of width 0.07 around 0.28, while
the seeds themselves span 0.13 to 0.82). Across seeds this module therefore

* computes every statistic per seed and aggregates the per-seed values (mean, or the
  interquartile mean (IQM) of Agarwal et al. (2021), "Deep Reinforcement Learning at the Edge of
  the Statistical Precipice", where outlier runs are expected);
* gives an interval only from :data:`MIN_SEEDS_FOR_INTERVAL` seeds up, by a two-level
  (hierarchical) bootstrap that resamples seeds and then episodes within each resampled seed
  (:func:`hierarchical_bootstrap_ci`; Davison & Hinkley 1997, section 3.8, resampling at both
  stages); below that, a percentile bootstrap over 2 or 4 values is nothing but their range, so
  :func:`seed_summary` reports every seed's value and the range, named as such
  (``<key>/per_seed``, ``<key>/min``, ``<key>/max``), and :func:`iqm_ci` returns NaN bounds.

The IQM is the mean of the middle 50% of the sorted values, as ``scipy.stats.trim_mean(x,
0.25)`` (``floor(n / 4)`` values are cut at each end).

Resampling is one ``vmap`` (or ``lax.map``) over ``num_resamples`` index draws, so a whole
bootstrap is one compiled call; ``jax.vmap(bootstrap_ci, in_axes=(0, 0))`` runs many at once.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Statistic = Callable[[Any], Array]

#: Fewest seeds for which an interval over seeds is reported; below it, per-seed values and
#: their range (a bootstrap over 2 or 4 seeds is just their range).
MIN_SEEDS_FOR_INTERVAL = 10
#: Aggregates over seeds: the mean, or the interquartile mean (Agarwal et al. 2021).
AGGREGATES = ("mean", "iqm")


class ConfidenceInterval(NamedTuple):
  """A point estimate with a two-sided confidence interval.

  Attributes:
    estimate: the statistic on the full sample, ``[*stat_shape]``.
    low: lower bound, ``[*stat_shape]``.
    high: upper bound, ``[*stat_shape]``.
  """

  estimate: Array
  low: Array
  high: Array


def _check_confidence(confidence: float) -> None:
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")


def _check_resamples(num_resamples: int) -> None:
  if num_resamples < 1:
    raise ValueError(f"num_resamples must be a positive integer, got {num_resamples!r}")


@functools.partial(jax.jit, static_argnames=("statistic", "num_resamples", "confidence"))
def bootstrap_ci(
    key: Array,
    samples: Any,
    statistic: Statistic = jnp.mean,
    num_resamples: int = 2000,
    confidence: float = 0.95,
) -> ConfidenceInterval:
  """Percentile bootstrap confidence interval of any statistic of a sample.

  Draws ``num_resamples`` resamples of the ``N`` rows with replacement, evaluates ``statistic``
  on each (vmapped) and returns the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
  quantiles of the resampled statistics (Efron & Tibshirani 1993, percentile method).
  Resamples on which the statistic is undefined (NaN, e.g. a ``nanmean`` of only NaN entries)
  are left out of the quantiles.

  Args:
    key: PRNG key.
    samples: ``[N, ...]`` sample, or a pytree of arrays sharing the leading axis ``N``; rows
      are resampled together (a row may be a vector of per-episode values, one seed's
      results, or the numerator and denominator of a ratio statistic).
    statistic: pure function of ``samples``' structure returning ``[*stat_shape]``, e.g.
      ``jnp.mean``,
      ``jnp.nanmean`` (for samples with undefined entries) or :func:`interquartile_mean`.
      Must be hashable (it is a static argument of the compiled function).
    num_resamples: number of bootstrap resamples.
    confidence: two-sided coverage in ``(0, 1)``.

  Returns:
    A :class:`ConfidenceInterval` of ``[*stat_shape]`` arrays.
  """
  _check_confidence(confidence)
  _check_resamples(num_resamples)
  samples = jax.tree.map(jnp.asarray, samples)
  num_samples = jax.tree.leaves(samples)[0].shape[0]
  indices = jax.random.randint(key, (num_resamples, num_samples), 0, num_samples)
  resampled = jax.vmap(
      lambda idx: statistic(jax.tree.map(lambda leaf: leaf[idx], samples)))(indices)
  alpha = (1.0 - confidence) / 2.0
  low, high = jnp.nanquantile(resampled, jnp.array([alpha, 1.0 - alpha]), axis=0)
  return ConfidenceInterval(statistic(samples), low, high)


def mean_ci(
    key: Array, samples: Array, num_resamples: int = 2000, confidence: float = 0.95
) -> ConfidenceInterval:
  """Bootstrap confidence interval of the mean over the first axis.

  Args:
    key: PRNG key.
    samples: ``[N, ...]`` sample.
    num_resamples: number of bootstrap resamples.
    confidence: two-sided coverage in ``(0, 1)``.

  Returns:
    A :class:`ConfidenceInterval` of ``[...]`` arrays.
  """
  return bootstrap_ci(key, samples, _mean_over_rows, num_resamples, confidence)


def _mean_over_rows(x: Array) -> Array:
  return jnp.mean(x, axis=0)


def _nanmean_over_rows(x: Array) -> Array:
  return jnp.nanmean(x, axis=0)


def nanmean_ci(
    key: Array, samples: Array, num_resamples: int = 2000, confidence: float = 0.95
) -> ConfidenceInterval:
  """Like :func:`mean_ci`, ignoring NaN entries (undefined per-episode values).

  Args:
    key: PRNG key.
    samples: ``[N, ...]`` sample; NaN marks an undefined entry.
    num_resamples: number of bootstrap resamples.
    confidence: two-sided coverage in ``(0, 1)``.

  Returns:
    A :class:`ConfidenceInterval` of ``[...]`` arrays (NaN where every entry is undefined).
  """
  return bootstrap_ci(key, samples, _nanmean_over_rows, num_resamples, confidence)


def interquartile_mean(samples: Array) -> Array:
  """Interquartile mean over the first axis (Agarwal et al. 2021).

  The mean of the sorted values after cutting ``floor(N / 4)`` from each end, identical to
  ``scipy.stats.trim_mean(samples, 0.25, axis=0)``.

  Args:
    samples: ``[N, ...]`` values (e.g. one score per seed).

  Returns:
    ``[...]`` interquartile mean.
  """
  samples = jnp.asarray(samples)
  num_samples = samples.shape[0]
  cut = num_samples // 4
  ordered = jnp.sort(samples, axis=0)
  return jnp.mean(ordered[cut:num_samples - cut], axis=0)


def iqm_ci(
    key: Array, samples: Array, num_resamples: int = 2000, confidence: float = 0.95,
    min_samples: int = MIN_SEEDS_FOR_INTERVAL,
) -> ConfidenceInterval:
  """Interquartile mean with a percentile bootstrap confidence interval (Agarwal et al. 2021).

  Below ``min_samples`` rows (seeds) there is no honest interval (the bootstrap distribution of
  the IQM of 2 or 4 values is spanned by the values themselves), so the bounds are NaN: report
  the per-seed values and their range instead (:func:`seed_summary`).

  Args:
    key: PRNG key.
    samples: ``[N, ...]`` values, one row per run (seed).
    num_resamples: number of bootstrap resamples.
    confidence: two-sided coverage in ``(0, 1)``.
    min_samples: fewest rows that get an interval.

  Returns:
    A :class:`ConfidenceInterval` of ``[...]`` arrays (NaN bounds below ``min_samples`` rows).
  """
  samples = jnp.asarray(samples)
  if samples.shape[0] < min_samples:
    _check_confidence(confidence)
    estimate = interquartile_mean(samples)
    nan = jnp.full_like(estimate, jnp.nan)
    return ConfidenceInterval(estimate, nan, nan)
  return bootstrap_ci(key, samples, interquartile_mean, num_resamples, confidence)


def _check_aggregate(aggregate: str) -> None:
  if aggregate not in AGGREGATES:
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")


def nan_interquartile_mean(samples: Array) -> Array:
  """Interquartile mean over the first axis that leaves NaN entries out (per column).

  Args:
    samples: ``[N, ...]`` values; NaN marks an undefined value (e.g. a seed with no episode
      that reached the goal whose path efficiency is asked for).

  Returns:
    ``[...]``: the IQM of the finite values of each column (NaN where there are none).
  """
  samples = jnp.asarray(samples)
  finite = ~jnp.isnan(samples)
  count = jnp.sum(finite, axis=0)
  ordered = jnp.sort(samples, axis=0)  # NaN sorts last
  cut = count // 4
  rank = jnp.arange(samples.shape[0]).reshape((-1,) + (1,) * (samples.ndim - 1))
  keep = (rank >= cut) & (rank < count - cut)
  total = jnp.sum(jnp.where(keep, ordered, 0.0), axis=0)
  kept = jnp.sum(keep, axis=0)
  return jnp.where(kept > 0, total / jnp.maximum(kept, 1), jnp.nan)


def aggregate_over_seeds(per_seed: Array, aggregate: str = "mean") -> Array:
  """The across-seed aggregate of per-seed values, leaving undefined (NaN) seeds out.

  Args:
    per_seed: ``[G, ...]`` one value per seed.
    aggregate: ``"mean"`` or ``"iqm"`` (:func:`nan_interquartile_mean`).

  Returns:
    ``[...]`` aggregate (NaN where every seed is undefined).
  """
  _check_aggregate(aggregate)
  per_seed = jnp.asarray(per_seed, jnp.float32)
  if aggregate == "iqm":
    return nan_interquartile_mean(per_seed)
  finite = ~jnp.isnan(per_seed)
  count = jnp.sum(finite, axis=0)
  total = jnp.sum(jnp.where(finite, per_seed, 0.0), axis=0)
  return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


@functools.partial(jax.jit, static_argnames=(
    "statistic", "aggregate", "num_resamples", "confidence"))
def hierarchical_bootstrap_ci(
    key: Array,
    samples: Any,
    statistic: Statistic = _nanmean_over_rows,
    aggregate: str = "mean",
    num_resamples: int = 1000,
    confidence: float = 0.95,
) -> ConfidenceInterval:
  """Two-level percentile bootstrap over seeds and the episodes within each seed.

  Each resample draws ``G`` seeds with replacement, then, for each drawn seed, ``N`` of its
  episodes with replacement; ``statistic`` is evaluated per drawn seed and the values are
  aggregated over seeds (:func:`aggregate_over_seeds`). The interval is the percentile interval
  of the aggregates (Davison & Hinkley 1997, section 3.8: resampling the top-level units
  carries the between-seed variance; resampling within them adds the episode noise). The
  estimate is the aggregate of the per-seed statistics on the full sample.

  Only meaningful with enough seeds (:data:`MIN_SEEDS_FOR_INTERVAL`); the function does not
  refuse fewer, :func:`seed_summary` decides what to report.

  Args:
    key: PRNG key.
    samples: ``[G, N, ...]`` per-episode values of ``G`` seeds, or a pytree of such arrays
      (rows of one episode are resampled together).
    statistic: pure, hashable function of one seed's ``[N, ...]`` samples (the pytree
      structure of ``samples`` without the seed axis) returning ``[*stat_shape]``; NaN marks
      an undefined value, left out of the aggregate.
    aggregate: ``"mean"`` or ``"iqm"`` over seeds.
    num_resamples: bootstrap resamples (run sequentially in chunks, so memory stays small).
    confidence: two-sided coverage in ``(0, 1)``.

  Returns:
    A :class:`ConfidenceInterval` of ``[*stat_shape]`` arrays.
  """
  _check_confidence(confidence)
  _check_resamples(num_resamples)
  _check_aggregate(aggregate)
  samples = jax.tree.map(jnp.asarray, samples)
  leading = jax.tree.leaves(samples)[0].shape
  num_seeds, num_episodes = leading[0], leading[1]
  per_seed = jax.vmap(statistic)
  estimate = aggregate_over_seeds(per_seed(samples), aggregate)

  def one(key_r):
    key_seeds, key_episodes = jax.random.split(key_r)
    seeds = jax.random.randint(key_seeds, (num_seeds,), 0, num_seeds)
    episodes = jax.random.randint(key_episodes, (num_seeds, num_episodes), 0, num_episodes)
    resampled = jax.tree.map(lambda leaf: leaf[seeds[:, None], episodes], samples)
    return aggregate_over_seeds(per_seed(resampled), aggregate)

  keys = jax.random.split(key, num_resamples)
  values = jax.lax.map(one, keys, batch_size=min(num_resamples, 64))
  alpha = (1.0 - confidence) / 2.0
  low, high = jnp.nanquantile(values, jnp.array([alpha, 1.0 - alpha]), axis=0)
  return ConfidenceInterval(estimate, low, high)


def seed_summary(
    name: str,
    per_seed: Any,
    aggregate: str = "mean",
    interval: ConfidenceInterval | None = None,
    min_seeds: int = MIN_SEEDS_FOR_INTERVAL,
) -> dict[str, Any]:
  """One metric over seeds as flat keys: the aggregate, every seed's value, the range and,
  from ``min_seeds`` seeds up, an interval.

  Args:
    name: a ``"group/name"`` metric key.
    per_seed: ``[G]`` one value per seed (NaN for a seed where it is undefined).
    aggregate: ``"mean"`` or ``"iqm"`` (ignored for the estimate when ``interval`` is given:
      its estimate is used).
    interval: an interval over seeds (e.g. :func:`hierarchical_bootstrap_ci` of a scalar);
      reported only when ``G >= min_seeds``.
    min_seeds: fewest seeds that get an interval.

  Returns:
    ``{name: aggregate, name + "/per_seed": [G] array, name + "/min": [], name + "/max": []}``
    plus ``name + "/ci_low"`` and ``name + "/ci_high"`` when ``interval`` is given and
    ``G >= min_seeds``. ``/min`` and ``/max`` are the range of the per-seed values, not an
    interval.
  """
  values = jnp.asarray(per_seed, jnp.float32)
  if values.ndim != 1:
    raise ValueError(f"seed_summary({name!r}) needs one value per seed, got shape "
                     f"{values.shape}")
  estimate = aggregate_over_seeds(values, aggregate) if interval is None else interval.estimate
  finite = ~jnp.isnan(values)
  summary = {
      name: estimate,
      f"{name}/per_seed": values,
      f"{name}/min": jnp.where(jnp.any(finite), jnp.min(jnp.where(finite, values, jnp.inf)),
                               jnp.nan),
      f"{name}/max": jnp.where(jnp.any(finite), jnp.max(jnp.where(finite, values, -jnp.inf)),
                               jnp.nan),
  }
  if interval is not None and values.shape[0] >= min_seeds:
    summary[f"{name}/ci_low"] = interval.low
    summary[f"{name}/ci_high"] = interval.high
  return summary


def ci_dict(name: str, interval: ConfidenceInterval) -> dict[str, Array]:
  """Flattens a scalar interval into ``{name, name + "_ci_low", name + "_ci_high"}``.

  Args:
    name: a ``"group/name"`` metric key.
    interval: a :class:`ConfidenceInterval` of scalars.

  Returns:
    A flat metric dict with three entries.
  """
  return {
      name: interval.estimate,
      f"{name}_ci_low": interval.low,
      f"{name}_ci_high": interval.high,
  }


__all__ = [
    "AGGREGATES",
    "ConfidenceInterval",
    "MIN_SEEDS_FOR_INTERVAL",
    "aggregate_over_seeds",
    "bootstrap_ci",
    "ci_dict",
    "hierarchical_bootstrap_ci",
    "interquartile_mean",
    "iqm_ci",
    "mean_ci",
    "nan_interquartile_mean",
    "nanmean_ci",
    "seed_summary",
]
