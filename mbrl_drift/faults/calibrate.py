"""Matched-damage calibration: the severity at which a fault costs a given amount of performance.

Comparing faults of different kinds is only fair at matched damage: e.g. "the value swap and the
world-model noise that both cost 50% of the return". :func:`calibrate_severity` finds, for one
fault, the severity whose metric drop from the unfaulted (severity 0) baseline matches a target.

The caller supplies ``evaluate_fn(severities [n]) -> metrics [n]``, typically a jitted
``vmap`` of its evaluation over severities, and every call passes exactly ``grid_size``
severities, so it compiles once. The search:

1. evaluates a grid on ``[lo, hi]`` (with severity 0 first when no baseline is given);
2. while the target drop is not reached, evaluates the next interval ``[hi, hi * expansion]``
   (at most ``max_expansions`` times);
3. for ``num_rounds`` rounds, evaluates a finer grid inside the bracket around the crossing;
4. confirms the interpolated crossing severity with one call of ``grid_size`` copies of it
   (their mean is the reported metric, which averages the noise when the caller draws fresh
   randomness per entry).

Noise. The metric is assumed to degrade roughly monotonically with severity, but it is noisy.
The crossing is located on an isotonic (non-decreasing) regression of the drops of every point
evaluated so far (pool-adjacent-violators, Barlow et al. 1972), with the point (0, 0) added by
definition of the baseline; the bracket is the pair of consecutive evaluated severities whose
fitted drops straddle the target, and the severity is linearly interpolated between them. A
non-finite metric (e.g. from NaN weights) counts as an infinite drop. The achieved drop of the
confirmed severity can still differ from the target by the evaluation noise: it is reported, not
hidden. When the target is never reached, the result has ``reached=False`` and the evaluated
severity with the largest fitted drop.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
  """The outcome of :func:`calibrate_severity`.

  Attributes:
    severity: the calibrated severity.
    metric: the metric measured at ``severity`` (mean of the confirmation call).
    drop: ``baseline - metric`` (sign-adjusted, relative when asked), the achieved drop.
    baseline: the metric at severity 0.
    target_drop: the requested drop.
    reached: whether the target drop was bracketed.
    num_evaluations: severities evaluated in total (``num_calls * grid_size``).
    num_calls: calls made to ``evaluate_fn``.
    bracket: ``(low, high)`` the final bracket of evaluated severities around the crossing.
    severities: ``[num_evaluations]`` every severity evaluated, in call order.
    metrics: ``[num_evaluations]`` the corresponding metrics.
  """

  severity: float
  metric: float
  drop: float
  baseline: float
  target_drop: float
  reached: bool
  num_evaluations: int
  num_calls: int
  bracket: tuple[float, float]
  severities: np.ndarray
  metrics: np.ndarray


def isotonic_fit(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
  """Non-decreasing least-squares fit of a sequence (pool adjacent violators).

  Args:
    values: ``[n]`` values in the order of the independent variable; ``+inf`` allowed.
    weights: ``[n]`` positive weights (default 1).

  Returns:
    ``[n]`` the fitted non-decreasing values.
  """
  values = np.asarray(values, np.float64)
  weights = np.ones_like(values) if weights is None else np.asarray(weights, np.float64)
  blocks: list[list[float]] = []  # [mean, weight, count]
  for value, weight in zip(values, weights):
    blocks.append([value, weight, 1])
    while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
      mean_b, weight_b, count_b = blocks.pop()
      mean_a, weight_a, count_a = blocks.pop()
      mean = (mean_a * weight_a + mean_b * weight_b) / (weight_a + weight_b)  # inf stays inf
      blocks.append([mean, weight_a + weight_b, count_a + count_b])
  return np.concatenate([np.full(count, mean) for mean, _, count in blocks])


def calibrate_severity(
    evaluate_fn: Callable[[jnp.ndarray], jnp.ndarray],
    target_drop: float,
    baseline: float | None = None,
    lo: float = 0.0,
    hi: float = 1.0,
    num_rounds: int = 3,
    grid_size: int = 8,
    *,
    relative: bool = False,
    higher_is_better: bool = True,
    max_expansions: int = 4,
    expansion: float = 2.0,
    confirm: bool = True,
) -> CalibrationResult:
  """Finds the severity whose metric drop from the severity-0 baseline matches ``target_drop``.

  Args:
    evaluate_fn: ``evaluate_fn(severities float32 [grid_size]) -> metrics [grid_size]``.
    target_drop: the wanted drop, ``> 0``: absolute metric units, or a fraction of
      ``|baseline|`` when ``relative`` (0.5 = lose half the baseline).
    baseline: the metric at severity 0; evaluated (as the first entry of the first grid) when
      ``None``.
    lo: start of the initial search interval (``>= 0``).
    hi: end of the initial search interval (``> lo``); doubled (by ``expansion``) while the
      target is not reached.
    num_rounds: refinement rounds inside the bracket.
    grid_size: severities per ``evaluate_fn`` call (``>= 3``).
    relative: measure drops as fractions of ``|baseline|``.
    higher_is_better: ``False`` for metrics where larger is worse (drop = metric - baseline).
    max_expansions: how many times the interval may be extended beyond ``hi``.
    expansion: the factor by which ``hi`` grows at each extension (``> 1``).
    confirm: evaluate the interpolated severity (one more call); otherwise return the
      evaluated severity whose drop is closest to the target.

  Returns:
    A :class:`CalibrationResult`.

  Raises:
    ValueError: for invalid settings, an ``evaluate_fn`` output of the wrong shape, a
      non-finite baseline, or ``relative`` with a zero baseline.
  """
  if not target_drop > 0:
    raise ValueError(f"target_drop must be > 0, got {target_drop}")
  if not 0 <= lo < hi:
    raise ValueError(f"need 0 <= lo < hi, got lo={lo}, hi={hi}")
  if grid_size < 3:
    raise ValueError(f"grid_size must be >= 3, got {grid_size}")
  if num_rounds < 0 or max_expansions < 0:
    raise ValueError(f"num_rounds and max_expansions must be >= 0, got {num_rounds}, "
                     f"{max_expansions}")
  if not expansion > 1:
    raise ValueError(f"expansion must be > 1, got {expansion}")

  evaluated_severities: list[np.ndarray] = []
  evaluated_metrics: list[np.ndarray] = []

  def evaluate(severities: np.ndarray) -> np.ndarray:
    metrics = np.asarray(evaluate_fn(jnp.asarray(severities, jnp.float32)), np.float64)
    if metrics.shape != (grid_size,):
      raise ValueError(f"evaluate_fn must return shape ({grid_size},) for {grid_size} "
                       f"severities, got {metrics.shape}")
    evaluated_severities.append(np.asarray(severities, np.float32).astype(np.float64))
    evaluated_metrics.append(metrics)
    return metrics

  # Initial grid (with the baseline at severity 0 when it is not given).
  if baseline is None:
    if lo == 0:
      grid = np.linspace(lo, hi, grid_size)
    else:
      grid = np.concatenate([[0.0], np.linspace(lo, hi, grid_size - 1)])
    baseline = float(evaluate(grid)[0])
  else:
    evaluate(np.linspace(lo, hi, grid_size))
  baseline = float(baseline)
  if not np.isfinite(baseline):
    raise ValueError(f"the baseline metric is not finite: {baseline}")
  scale = abs(baseline) if relative else 1.0
  if scale == 0:
    raise ValueError("relative drops need a non-zero baseline")
  sign = 1.0 if higher_is_better else -1.0

  def drops_of(metrics: np.ndarray) -> np.ndarray:
    drops = sign * (baseline - metrics) / scale
    return np.where(np.isfinite(drops), drops, np.inf)

  def fitted() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pooled (severity, metric, drop, fitted drop), sorted by severity, with (0, baseline)."""
    severities = np.concatenate([[0.0]] + evaluated_severities)
    metrics = np.concatenate([[baseline]] + evaluated_metrics)
    order = np.argsort(severities, kind="stable")
    drops = drops_of(metrics[order])
    return severities[order], metrics[order], drops, isotonic_fit(drops)

  # Extend the interval until the target is reached.
  upper = hi
  for _ in range(max_expansions):
    if fitted()[3].max() >= target_drop:
      break
    evaluate(np.linspace(upper, upper * expansion, grid_size + 1)[1:])
    upper *= expansion

  severities, metrics, drops, fit = fitted()
  if fit.max() < target_drop:
    index = len(fit) - 1 - int(np.argmax(fit[::-1]))  # largest severity with the maximal fit
    return _result(severities[index], metrics[index], drops[index], baseline, target_drop, False,
                   (severities[index], severities[index]), evaluated_severities,
                   evaluated_metrics, grid_size)

  def bracket() -> tuple[float, float, float, float]:
    severities, _, _, fit = fitted()
    above = int(np.argmax(fit >= target_drop))
    below = int(np.nonzero((fit < target_drop) & (severities < severities[above]))[0].max())
    return severities[below], severities[above], fit[below], fit[above]

  for _ in range(num_rounds):
    low, high, _, _ = bracket()
    if high - low <= 1e-7 * max(high, 1.0):
      break
    evaluate(np.linspace(low, high, grid_size + 2)[1:-1])

  low, high, fit_low, fit_high = bracket()
  if np.isfinite(fit_high) and fit_high > fit_low:
    severity = low + (target_drop - fit_low) / (fit_high - fit_low) * (high - low)
  else:
    severity = 0.5 * (low + high)
  if confirm:
    metrics = evaluate(np.full(grid_size, severity))
    metric = float(np.mean(metrics))
    drop = float(drops_of(np.asarray(metric)))
  else:
    severities, metrics, drops, _ = fitted()
    candidates = np.flatnonzero((severities >= low) & (severities <= high) & (severities > 0))
    index = int(candidates[np.argmin(np.abs(drops[candidates] - target_drop))])
    severity, metric, drop = severities[index], metrics[index], drops[index]
  return _result(severity, metric, drop, baseline, target_drop, True, (low, high),
                 evaluated_severities, evaluated_metrics, grid_size)


def _result(severity: float, metric: float, drop: float, baseline: float, target_drop: float,
            reached: bool, bracket: tuple[float, float], severities: list[np.ndarray],
            metrics: list[np.ndarray], grid_size: int) -> CalibrationResult:
  return CalibrationResult(
      severity=float(severity), metric=float(metric), drop=float(drop), baseline=float(baseline),
      target_drop=float(target_drop), reached=bool(reached),
      num_evaluations=len(severities) * grid_size, num_calls=len(severities),
      bracket=(float(bracket[0]), float(bracket[1])),
      severities=np.concatenate(severities), metrics=np.concatenate(metrics))
