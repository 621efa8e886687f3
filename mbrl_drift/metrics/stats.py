"""Statistics for aggregates: percentile bootstrap confidence intervals and the interquartile mean.

Every aggregate the testbed reports over episodes or seeds carries a bootstrap confidence
interval (Efron & Tibshirani 1993, percentile method). Aggregates over seeds, where outlier runs
are expected, use the interquartile mean (IQM) of Agarwal et al. (2021), "Deep Reinforcement
Learning at the Edge of the Statistical Precipice": the mean of the middle 50% of the sorted
values, as ``scipy.stats.trim_mean(x, 0.25)`` (``floor(n / 4)`` values are cut at each end).

Resampling is one ``vmap`` over ``num_resamples`` index draws, so a whole bootstrap is one
compiled call; ``jax.vmap(bootstrap_ci, in_axes=(0, 0))`` runs many bootstraps at once.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Statistic = Callable[[Any], Array]


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
    key: Array, samples: Array, num_resamples: int = 2000, confidence: float = 0.95
) -> ConfidenceInterval:
  """Interquartile mean with a percentile bootstrap confidence interval (Agarwal et al. 2021).

  Args:
    key: PRNG key.
    samples: ``[N, ...]`` values, one row per run (seed).
    num_resamples: number of bootstrap resamples.
    confidence: two-sided coverage in ``(0, 1)``.

  Returns:
    A :class:`ConfidenceInterval` of ``[...]`` arrays.
  """
  return bootstrap_ci(key, samples, interquartile_mean, num_resamples, confidence)


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
