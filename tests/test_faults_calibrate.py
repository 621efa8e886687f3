"""Matched-damage calibration against synthetic metrics whose answer is known."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import faults

CENTER, WIDTH = 0.6, 0.1


def sigmoid_metric(severity, center=CENTER, width=WIDTH):
  """A return that collapses from ~1 to 0 around ``center``."""
  return 1.0 / (1.0 + jnp.exp((severity - center) / width))


def exact_severity(drop, center=CENTER, width=WIDTH, baseline=None):
  """The severity where ``sigmoid_metric`` has dropped by ``drop`` from its value at 0."""
  baseline = float(sigmoid_metric(0.0, center, width)) if baseline is None else baseline
  return center + width * np.log(1.0 / (baseline - drop) - 1.0)


class CountingEvaluator:
  """Wraps a jitted, vmapped metric and records every call."""

  def __init__(self, metric, max_traces=None):
    if max_traces is not None:  # a further trace raises
      chex.clear_trace_counter()  # parametrised cases share the wrapped function's footprint
      metric = chex.assert_max_traces(metric, n=max_traces)
    self.fn = jax.jit(jax.vmap(metric))
    self.calls = []

  def __call__(self, severities):
    self.calls.append(np.asarray(severities))
    return self.fn(severities)


@pytest.mark.parametrize("target_drop", [0.2, 0.5, 0.9])
def test_finds_the_known_severity(target_drop):
  evaluate = CountingEvaluator(sigmoid_metric, max_traces=1)  # same shape: one compilation
  result = faults.calibrate_severity(evaluate, target_drop, num_rounds=3, grid_size=8)
  assert result.reached
  assert result.severity == pytest.approx(exact_severity(target_drop), abs=1e-4)
  assert result.drop == pytest.approx(target_drop, abs=1e-4)
  assert result.baseline == pytest.approx(float(sigmoid_metric(0.0)), abs=1e-7)
  assert result.metric == pytest.approx(result.baseline - result.drop, abs=1e-6)
  assert result.bracket[0] <= result.severity <= result.bracket[1]
  assert all(call.shape == (8,) for call in evaluate.calls)
  assert result.num_calls == len(evaluate.calls) == 1 + 3 + 1  # grid, rounds, confirmation
  assert result.num_evaluations == 8 * result.num_calls == result.severities.size


def test_expands_the_interval_when_needed():
  metric = lambda s: sigmoid_metric(s, center=3.0, width=0.3)
  result = faults.calibrate_severity(CountingEvaluator(metric), 0.5, hi=1.0, max_expansions=4)
  assert result.reached
  assert result.severity == pytest.approx(exact_severity(0.5, 3.0, 0.3), abs=1e-3)
  assert result.severities.max() >= 3.0


def test_unreachable_target_is_reported():
  metric = lambda s: 1.0 - 0.3 * jnp.minimum(s, 1.0)  # drops by at most 0.3
  result = faults.calibrate_severity(metric, 0.5, max_expansions=2)
  assert not result.reached
  assert result.drop == pytest.approx(0.3, abs=1e-6)
  assert result.severity >= 1.0


def test_noisy_metric():
  rng = np.random.default_rng(0)
  noisy = lambda s: np.asarray(sigmoid_metric(s)) + rng.normal(0.0, 0.02, size=np.shape(s))
  result = faults.calibrate_severity(noisy, 0.5, num_rounds=3, grid_size=16)
  # Slope ~2.5 per unit severity at the crossing and noise 0.02: errors of a few 1e-3 in severity.
  assert result.severity == pytest.approx(exact_severity(0.5), abs=0.03)
  assert result.drop == pytest.approx(0.5, abs=0.05)


def test_relative_drop_lower_is_better_and_given_baseline():
  cost = lambda s: 10.0 + 10.0 * jnp.clip(s, 0.0, 2.0)  # baseline 10, +100% at severity 1
  result = faults.calibrate_severity(cost, 0.5, relative=True, higher_is_better=False)
  assert result.severity == pytest.approx(0.5, abs=1e-5)
  assert result.metric == pytest.approx(15.0, abs=1e-4)
  given = faults.calibrate_severity(lambda s: 1.0 - s, 0.3, baseline=1.0, lo=0.2, hi=0.8)
  assert given.severity == pytest.approx(0.3, abs=1e-5)
  assert given.severities.min() >= 0.2  # severity 0 never evaluated: the baseline was given


def test_nonfinite_metrics_count_as_infinite_drop():
  metric = lambda s: jnp.where(s > 0.8, jnp.nan, 1.0 - s)
  result = faults.calibrate_severity(metric, 0.5)
  assert result.severity == pytest.approx(0.5, abs=1e-5)
  broken = faults.calibrate_severity(lambda s: jnp.where(s > 0.3, jnp.nan, 1.0), 0.5)
  # A cliff: the bracket closes in on it and the achieved drop is reported as it is (0 or inf).
  assert broken.reached
  assert broken.bracket[0] <= 0.3 < broken.bracket[1]
  assert broken.bracket[1] - broken.bracket[0] < 0.01
  assert broken.bracket[0] <= broken.severity <= broken.bracket[1]
  assert broken.drop in (0.0, float("inf"))


def test_confirm_false_returns_an_evaluated_point():
  result = faults.calibrate_severity(sigmoid_metric, 0.5, confirm=False)
  assert result.severity in set(result.severities.tolist())
  assert result.drop == pytest.approx(0.5, abs=0.01)


def test_errors():
  with pytest.raises(ValueError, match="target_drop must be > 0"):
    faults.calibrate_severity(sigmoid_metric, 0.0)
  with pytest.raises(ValueError, match="0 <= lo < hi"):
    faults.calibrate_severity(sigmoid_metric, 0.5, lo=1.0, hi=0.5)
  with pytest.raises(ValueError, match="grid_size must be >= 3"):
    faults.calibrate_severity(sigmoid_metric, 0.5, grid_size=2)
  with pytest.raises(ValueError, match=r"must return shape \(8,\)"):
    faults.calibrate_severity(lambda s: jnp.zeros((8, 2)), 0.5)
  with pytest.raises(ValueError, match="baseline metric is not finite"):
    faults.calibrate_severity(lambda s: jnp.full(s.shape, jnp.nan), 0.5)
  with pytest.raises(ValueError, match="non-zero baseline"):
    faults.calibrate_severity(lambda s: -s, 0.5, relative=True)


def test_isotonic_fit():
  np.testing.assert_allclose(faults.isotonic_fit(np.array([1.0, 3.0, 2.0, 4.0])),
                             [1.0, 2.5, 2.5, 4.0])
  np.testing.assert_allclose(faults.isotonic_fit(np.array([0.0, np.inf, 1.0, 2.0])),
                             [0.0, np.inf, np.inf, np.inf])
  fitted = faults.isotonic_fit(np.random.default_rng(1).normal(size=50))
  assert np.all(np.diff(fitted) >= 0)
