"""Regression tests of mbrl_drift findings: cached trained runs, fault evaluation, assertions
with confidence intervals, and numeric baselines.

Everything here is plain Python (no pytest needed); :mod:`mbrl_drift.pytest_plugin` wraps it
into fixtures (``mbrl_trained_run``, ``mbrl_evaluate``, ``mbrl_baseline``). A finding reads
like the claim it pins::

  run = runs("GoalGrid-OpenRoom", seeds=4)                       # RunCache: trained once
  conditions = evaluate_faults(run, ["value:signflip"], [1.0])
  flipped = lookup(conditions, fault="value:signflip", severity=1.0)
  assert_label(flipped, "coherent")
  assert_metric(flipped, "goal/coherence", ">=", 0.8)
  assert_greater(lookup(conditions, fault="intact"), flipped, "outcome/intended_success")

**Intervals.** :meth:`Condition.interval` gives a metric's value with a confidence interval,
from the first source that exists:

1. ``<key>/ci_low`` / ``<key>/ci_high`` stored with the metrics: the hierarchical bootstrap
   over seeds, then episodes, of :func:`mbrl_drift.metrics.seed_behaviour_metrics` (stored from
   10 seeds up), or the older ``<key>_ci_low`` / ``<key>_ci_high``;
2. ``<key>/per_seed``: from :data:`MIN_SEEDS_FOR_INTERVAL` seeds up, a percentile bootstrap of
   the mean over seeds (Efron & Tibshirani 1993) computed here with a fixed seed; with fewer
   seeds, the **range** of the seeds' values (a bootstrap over 2 or 4 seeds is just their
   range), so a bound must hold for every seed;
3. neither: the point value alone (assertion messages then say that no interval was used).

:func:`assert_metric` requires the **whole** interval to clear the bound.
:func:`assert_greater` compares seed ``i`` with seed ``i`` when both conditions have per-seed
values of the metric (conditions of one evaluation share their seeds and random numbers): a
paired bootstrap of the mean difference from 10 seeds up, every seed's difference below that;
otherwise it requires the two intervals not to overlap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import functools
import hashlib
import json
import logging
import math
import operator
import os
import platform
import shutil
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence, Union

import numpy as np

try:  # POSIX file locks; elsewhere runs and baselines are written without a lock
  import fcntl
except ImportError:  # pragma: no cover - Windows
  fcntl = None

logger = logging.getLogger("mbrl_drift.testing")

#: Two-sided coverage of the intervals computed here.
CONFIDENCE = 0.95
#: Bootstrap resamples of the intervals computed here.
NUM_RESAMPLES = 2000
#: Label keys shown by :func:`assert_label` (the metrics :func:`classify_failure` reads).
LABEL_KEYS = (
    "outcome/intended_success",
    "goal/coherence",
    "goal/inferred_goal",
    "task/intended_goal",
    "outcome/off_target_mass",
    "outcome/off_target_goal",
    "outcome/p_timeout",
    "endpoint/top_share",
    "cell/coherence",
    "outcome/loop_rate",
    "outcome/path_efficiency",
)
_DESCRIPTOR_KEYS = ("fault", "severity", "horizon", "policy", "label", "label_reasons")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


# ---------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------


class Interval(NamedTuple):
  """A metric's value with the interval an assertion compares.

  Attributes:
    value: the point value.
    low: lower end (``value`` when there is no interval).
    high: upper end (``value`` when there is no interval).
    source: ``"stored"`` (``_ci_low`` / ``_ci_high`` in the metrics), ``"seeds"`` (bootstrap
      over ``/per_seed``) or ``"point"`` (no interval).
    note: how the interval was obtained, for messages.
  """

  value: float
  low: float
  high: float
  source: str
  note: str

  def format(self) -> str:
    """``"0.62 [0.55, 0.70] (95% CI)"``, or ``"0.62 (point value, no interval)"``."""
    if self.source == "point":
      return f"{_fmt(self.value)} (point value, no interval)"
    return f"{_fmt(self.value)} [{_fmt(self.low)}, {_fmt(self.high)}] ({_ci_name(self)})"


def _ci_name(interval: Interval) -> str:
  return interval.note.split(",", 1)[0]


@dataclasses.dataclass(frozen=True)
class Condition:
  """One evaluated condition: a fault at one severity, horizon and action selection.

  Attributes:
    fault: the fault spec (``"intact"`` for no fault).
    severity: the severity (0 is the intact agent for every fault).
    horizon: the planning horizon (``None`` when unknown).
    policy: the action selection (``"greedy"``, ``"epsilon"``, ``"boltzmann"``; ``None`` when
      unknown).
    metrics: flat ``{"group/name": value}`` dict (read-only): the behaviour metrics of the
      episodes of all seeds pooled with their ``_ci_low`` / ``_ci_high`` intervals, the outcome
      means over seeds with their per-seed values under ``<key>/per_seed`` (tuples), and the
      ``nonfinite/...`` counts.
    label: the failure label (intact, reverted, coherent, incoherent, mixed), ``None`` for
      environments without goals.
    label_reasons: the sentences that justify the label, with their numbers.
  """

  fault: str
  severity: float
  horizon: int | None = None
  policy: str | None = None
  metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  label: str | None = None
  label_reasons: tuple[str, ...] = ()

  def __post_init__(self):
    frozen = {key: tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else value
              for key, value in dict(self.metrics).items()}
    object.__setattr__(self, "metrics", types.MappingProxyType(frozen))
    object.__setattr__(self, "severity", round(float(self.severity), 6))
    object.__setattr__(self, "label_reasons", tuple(self.label_reasons))

  @classmethod
  def from_row(cls, row: Mapping[str, Any]) -> "Condition":
    """Builds a condition from a row of :meth:`ConditionResults.rows` or a flat dict.

    Args:
      row: a row (``fault``, ``severity``, ``horizon``, ``policy``, metrics, optionally
        ``behaviour``, ``label`` and ``label_reasons``), or a flat metric dict that may carry
        those descriptor keys. ``behaviour`` metrics are merged into the flat metrics (their
        pooled value wins where a key is in both; the per-seed values stay).

    Returns:
      The :class:`Condition`.
    """
    metrics = {key: value for key, value in row.items()
               if key not in _DESCRIPTOR_KEYS and key != "behaviour"}
    metrics.update(row.get("behaviour") or {})
    horizon = row.get("horizon")
    return cls(fault=str(row.get("fault", "?")), severity=float(row.get("severity", math.nan)),
               horizon=None if horizon is None else int(horizon), policy=row.get("policy"),
               metrics=metrics, label=row.get("label"),
               label_reasons=tuple(row.get("label_reasons") or ()))

  def __getitem__(self, key: str) -> Any:
    if key not in self.metrics:
      raise KeyError(_missing_key_message(self, key))
    return self.metrics[key]

  def __contains__(self, key: str) -> bool:
    return key in self.metrics

  def describe(self) -> str:
    """``"value:signflip @ severity 1.0, horizon 1, greedy"``."""
    parts = [f"{self.fault} @ severity {self.severity!r}"]
    if self.horizon is not None:
      parts.append(f"horizon {self.horizon}")
    if self.policy is not None:
      parts.append(str(self.policy))
    return ", ".join(parts)

  def select(self, *keys: str) -> dict[str, float]:
    """The named scalar metrics as a plain dict (e.g. for :meth:`Baseline.check`)."""
    return {key: self[key] for key in keys}

  def interval(self, key: str, confidence: float = CONFIDENCE) -> Interval:
    """The value of ``key`` with its confidence interval (see the module docstring).

    Args:
      key: a metric key, e.g. ``"goal/coherence"``.
      confidence: coverage of an interval computed from per-seed values (stored intervals are
        used as they are).

    Returns:
      The :class:`Interval`.

    Raises:
      KeyError: ``key`` is not a metric of this condition (the message lists close keys).
    """
    value = _as_float(self[key])
    low_key, high_key = f"{key}_ci_low", f"{key}_ci_high"
    for stored_low, stored_high, note in (
        (f"{key}/ci_low", f"{key}/ci_high",
         "95% CI, hierarchical bootstrap over seeds and episodes, stored with the metrics"),
        (low_key, high_key, "95% CI, percentile bootstrap over episodes, stored with the "
                            "metrics")):
      if stored_low in self.metrics and stored_high in self.metrics:
        return Interval(value, _as_float(self.metrics[stored_low]),
                        _as_float(self.metrics[stored_high]), "stored", note)
    per_seed = self.per_seed(key)
    if per_seed is not None:
      return _seed_interval(value, per_seed, confidence, "of the mean over")
    return Interval(value, value, value, "point",
                    f"no {low_key} / {high_key} and no {key}/per_seed in the metrics: "
                    f"compared the point value alone")

  def per_seed(self, key: str) -> tuple[float, ...] | None:
    """The per-seed values of ``key`` (``<key>/per_seed``), or ``None``."""
    values = self.metrics.get(f"{key}/per_seed")
    return None if values is None else tuple(float(v) for v in values)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able dict: the descriptor keys and the flat metrics."""
    return {"fault": self.fault, "severity": self.severity, "horizon": self.horizon,
            "policy": self.policy, "label": self.label,
            "label_reasons": list(self.label_reasons),
            **{key: list(value) if isinstance(value, tuple) else value
               for key, value in self.metrics.items()}}


ConditionLike = Union[Condition, Mapping[str, Any]]


def as_condition(condition: ConditionLike) -> Condition:
  """A :class:`Condition` from itself, an evaluation row, or a flat metric dict."""
  if isinstance(condition, Condition):
    return condition
  if isinstance(condition, Mapping):
    return Condition.from_row(condition)
  raise TypeError(f"expected a Condition or a dict of metrics, got {type(condition).__name__}")


def lookup(conditions: Iterable[Condition], fault: str | None = None,
           severity: float | None = None, horizon: int | None = None,
           policy: str | None = None) -> Condition:
  """The one condition that matches every given field.

  ``fault="intact"`` also matches the severity-0 condition of any fault (the intact agent:
  severity 0 is the identity of every fault, and conditions share their random numbers), and
  the first such match is returned.

  Args:
    conditions: conditions, e.g. from :func:`evaluate_faults`.
    fault: a fault spec exactly as evaluated, or ``"intact"``.
    severity: a severity (compared to 1e-6).
    horizon: a planning horizon.
    policy: an action selection.

  Returns:
    The matching :class:`Condition`.

  Raises:
    LookupError: no condition matches, or several do (the message lists the conditions).
  """
  conditions = [as_condition(c) for c in conditions]
  wanted = ", ".join(f"{name}={value!r}" for name, value in (
      ("fault", fault), ("severity", severity), ("horizon", horizon), ("policy", policy))
                     if value is not None)
  found = [c for c in conditions
           if (horizon is None or c.horizon == horizon) and (policy is None or c.policy == policy)]
  if fault == "intact":
    if severity is not None and not math.isclose(severity, 0.0, abs_tol=1e-6):
      raise LookupError(f"the intact agent has no severity other than 0; got {wanted}")
    explicit = [c for c in found if c.fault == "intact"]
    found = explicit or [c for c in found if c.severity == 0.0]
    first_per_setting: dict[tuple[Any, Any], Condition] = {}
    for c in found:
      first_per_setting.setdefault((c.horizon, c.policy), c)
    found = list(first_per_setting.values())
  else:
    found = [c for c in found
             if (fault is None or c.fault == fault) and (
                 severity is None or math.isclose(c.severity, severity, rel_tol=1e-6,
                                                  abs_tol=1e-6))]
  if len(found) == 1:
    return found[0]
  if not found:
    listing = "\n".join(f"  {c.describe()}" for c in conditions)
    raise LookupError(f"no condition matches {wanted}; the conditions are:\n{listing}")
  raise LookupError(f"{len(found)} conditions match {wanted}; add horizon=, policy= or "
                    f"severity= to pick one:\n" + "\n".join(f"  {c.describe()}" for c in found))


# ---------------------------------------------------------------------------------------------
# Assertions
# ---------------------------------------------------------------------------------------------


#: Below this many seeds an "interval" over seeds is their range (a bootstrap over 2 or 4 seeds
#: is just their range); the same number as ``mbrl_drift.metrics.stats.MIN_SEEDS_FOR_INTERVAL``
#: (not imported: the plugin loads without JAX).
MIN_SEEDS_FOR_INTERVAL = 10


def _seed_interval(value: float, per_seed: Sequence[float], confidence: float,
                   what: str) -> Interval:
  """A bootstrap interval over seeds from :data:`MIN_SEEDS_FOR_INTERVAL` seeds up, else the
  seeds' range, named as such."""
  count = len(per_seed)
  plural = "s" if count != 1 else ""
  if count >= MIN_SEEDS_FOR_INTERVAL:
    low, high = bootstrap_mean_ci(per_seed, confidence)
    return Interval(value, low, high, "seeds",
                    f"{confidence:.0%} CI, percentile bootstrap {what} {count} seed{plural}")
  return Interval(value, float(np.min(per_seed)), float(np.max(per_seed)), "seeds",
                  f"range over {count} seed{plural}, too few seeds for a bootstrap interval: "
                  f"every seed must clear the bound")


def bootstrap_mean_ci(values: Sequence[float], confidence: float = CONFIDENCE,
                      num_resamples: int = NUM_RESAMPLES, seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean (Efron & Tibshirani 1993).

  Args:
    values: ``[N]`` sample (e.g. one value per seed).
    confidence: two-sided coverage in ``(0, 1)``.
    num_resamples: bootstrap resamples.
    seed: seed of the resampling (fixed, so equal inputs give equal intervals).

  Returns:
    ``(low, high)``; both equal the value for a single sample.

  Raises:
    ValueError: ``values`` is empty or ``confidence`` is outside ``(0, 1)``.
  """
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
  samples = np.asarray(values, np.float64)
  if samples.ndim != 1 or samples.size == 0:
    raise ValueError(f"need a non-empty 1-d sample, got shape {samples.shape}")
  indices = np.random.default_rng(seed).integers(0, samples.size, (num_resamples, samples.size))
  means = samples[indices].mean(axis=1)
  alpha = (1.0 - confidence) / 2.0
  low, high = np.quantile(means, [alpha, 1.0 - alpha])
  return float(low), float(high)


def assert_label(condition: ConditionLike, expected: str | Iterable[str]) -> None:
  """Asserts the failure label of a condition.

  Args:
    condition: a :class:`Condition` (or a row / flat dict with a ``label``).
    expected: a label, or several that are all acceptable (e.g. ``("coherent", "mixed")``).

  Raises:
    AssertionError: the label differs; the message gives the label, its reasons and the
      metrics the label was computed from, with their intervals.
    ValueError: ``expected`` names an unknown label.
  """
  __tracebackhide__ = True  # pytest shows the caller's line, not this one
  from mbrl_drift.metrics.labels import LABELS

  condition = as_condition(condition)
  wanted = (expected,) if isinstance(expected, str) else tuple(expected)
  unknown = [label for label in wanted if label not in LABELS]
  if unknown:
    raise ValueError(f"unknown label(s) {unknown}; labels are {list(LABELS)}")
  if condition.label in wanted:
    return
  wanted_text = " or ".join(repr(label) for label in wanted)
  if condition.label is None:
    head = (f"{condition.describe()} has no failure label (its environment has no goals, or "
            f"it was evaluated without behaviour metrics), expected {wanted_text}")
  else:
    head = f"{condition.describe()} is labelled {condition.label!r}, expected {wanted_text}"
  lines = [head]
  if condition.label_reasons:
    lines.append("  reasons: " + "; ".join(condition.label_reasons))
  shown = [key for key in LABEL_KEYS if key in condition.metrics]
  if shown:
    lines.append("  metrics:")
    lines.extend(f"    {key} = {_describe_value(condition, key)}" for key in shown)
  raise AssertionError("\n".join(lines))


def assert_metric(condition: ConditionLike, key: str, op: str, bound: float,
                  confidence: float = CONFIDENCE) -> Interval:
  """Asserts that a metric clears a bound with its whole confidence interval.

  ``>=`` and ``>`` compare the interval's lower end, ``<=`` and ``<`` its upper end. The
  interval is the one of :meth:`Condition.interval`: stored, else a bootstrap over seeds, else
  the point value (and a failure message says so).

  Args:
    condition: a :class:`Condition` or a row / flat metric dict.
    key: the metric, e.g. ``"goal/coherence"``.
    op: one of ``">="``, ``">"``, ``"<="``, ``"<"``.
    bound: the bound.
    confidence: coverage of an interval computed from per-seed values.

  Returns:
    The :class:`Interval` that was compared.

  Raises:
    AssertionError: the interval does not clear the bound (or the value is NaN); the message
      shows the value, the interval, the bound and the condition.
    KeyError: ``key`` is not a metric of the condition.
    ValueError: unknown ``op``.
  """
  __tracebackhide__ = True  # pytest shows the caller's line, not this one
  if op not in _OPERATORS:
    raise ValueError(f"unknown comparison {op!r}; use one of {list(_OPERATORS)}")
  condition = as_condition(condition)
  interval = condition.interval(key, confidence)
  compare = _OPERATORS[op]
  end_name, end = ("lower", interval.low) if op in (">=", ">") else ("upper", interval.high)
  if compare(end, bound) and not math.isnan(interval.value):
    return interval
  digits = _digits_to_tell_apart(end, bound)
  lines = [f"{key} = {_interval_text(interval, digits)} is not {op} {_fmt(bound, digits)} for "
           f"{condition.describe()}"]
  if interval.source == "point":
    lines.append(f"  {interval.note}")
  else:
    lines.append(f"  the whole interval must be {op} {_fmt(bound, digits)}; its {end_name} end "
                 f"is {_fmt(end, digits)}")
    lines.append(f"  interval: {interval.note}")
  per_seed = condition.per_seed(key)
  if per_seed is not None:
    lines.append(f"  per seed: {_fmt_list(per_seed)}")
  raise AssertionError("\n".join(lines))


def assert_greater(first: ConditionLike, second: ConditionLike, key: str, margin: float = 0.0,
                   method: str = "auto", confidence: float = CONFIDENCE) -> Interval:
  """Asserts that a metric is larger in ``first`` than in ``second``, beyond chance.

  Methods:

  * ``"paired"``: a paired percentile bootstrap over seeds of the mean difference
    ``first - second`` (seed ``i`` with seed ``i``; both need ``<key>/per_seed`` of the same
    length); its whole interval must lie above ``margin``.
  * ``"intervals"``: each condition's own interval (:meth:`Condition.interval`); the lower end
    of ``first`` must exceed the upper end of ``second`` by more than ``margin`` (the intervals
    do not overlap).
  * ``"auto"`` (default): ``"paired"`` when both conditions have per-seed values of ``key``
    (two seeds or more), ``"intervals"`` otherwise.

  Args:
    first: the condition expected to be larger.
    second: the condition expected to be smaller.
    key: the metric.
    margin: the difference must exceed this.
    method: ``"auto"``, ``"paired"`` or ``"intervals"``.
    confidence: coverage of the intervals computed here.

  Returns:
    The interval of the difference (``"paired"``), or of ``first`` (``"intervals"``).

  Raises:
    AssertionError: the difference is not established; the message shows both conditions'
      values with their intervals (and the paired difference).
    ValueError: unknown ``method``, or ``"paired"`` without matching per-seed values.
  """
  __tracebackhide__ = True  # pytest shows the caller's line, not this one
  if method not in ("auto", "paired", "intervals"):
    raise ValueError(f"unknown method {method!r}; use 'auto', 'paired' or 'intervals'")
  first, second = as_condition(first), as_condition(second)
  first_interval = first.interval(key, confidence)
  second_interval = second.interval(key, confidence)
  seeds_first, seeds_second = first.per_seed(key), second.per_seed(key)
  paired_ok = (seeds_first is not None and seeds_second is not None
               and len(seeds_first) == len(seeds_second) and len(seeds_first) >= 2)
  if method == "paired" and not paired_ok:
    raise ValueError(f"method='paired' needs {key}/per_seed of equal length (2 seeds or more) in "
                     f"both conditions; got {seeds_first} and {seeds_second}")
  header = (f"{key} is not greater for {first.describe()} than for {second.describe()}"
            + (f" by more than {_fmt(margin)}" if margin else ""))
  sides = [f"  first:  {first_interval.format()}", f"  second: {second_interval.format()}"]
  if method == "paired" or (method == "auto" and paired_ok):
    differences = np.subtract(seeds_first, seeds_second)
    difference = _seed_interval(float(differences.mean()), tuple(differences), confidence,
                                "paired, of the mean difference over")
    if difference.low > margin:
      return difference
    digits = _digits_to_tell_apart(difference.low, margin)
    raise AssertionError("\n".join([
        header,
        f"  difference (first - second) = {_interval_text(difference, digits)} does not lie "
        f"entirely above {_fmt(margin, digits)}",
        f"  interval: {difference.note}",
        f"  per-seed differences: {_fmt_list(differences)}",
        *sides]))
  gap = first_interval.low - second_interval.high
  if gap > margin and not math.isnan(first_interval.value + second_interval.value):
    return first_interval
  digits = _digits_to_tell_apart(first_interval.low, second_interval.high + margin)
  reason = (f"  the intervals overlap: lower end of first {_fmt(first_interval.low, digits)} "
            f"<= upper end of second {_fmt(second_interval.high, digits)}"
            + (f" + margin {_fmt(margin, digits)}" if margin else ""))
  notes = {f"  first interval: {first_interval.note}", f"  second interval: {second_interval.note}"}
  raise AssertionError("\n".join([header, reason, *sides, *sorted(notes)]))


def assert_less(first: ConditionLike, second: ConditionLike, key: str, margin: float = 0.0,
                method: str = "auto", confidence: float = CONFIDENCE) -> Interval:
  """Asserts that a metric is smaller in ``first`` than in ``second``: ``assert_greater`` with
  the conditions swapped (see there)."""
  __tracebackhide__ = True  # pytest shows the caller's line, not this one
  return assert_greater(second, first, key, margin, method, confidence)


def _describe_value(condition: Condition, key: str) -> str:
  value = condition.metrics[key]
  if f"{key}_ci_low" in condition.metrics or f"{key}/per_seed" in condition.metrics:
    return condition.interval(key).format()
  number = _as_float(value)
  return str(int(number)) if number.is_integer() else _fmt(number)


def _missing_key_message(condition: Condition, key: str) -> str:
  keys = sorted(k for k in condition.metrics if not k.endswith(("_ci_low", "_ci_high",
                                                                "/per_seed")))
  close = difflib.get_close_matches(key, keys, n=5, cutoff=0.5)
  group = key.split("/", 1)[0] + "/"
  same_group = [k for k in keys if k.startswith(group)]
  hint = close or same_group[:12] or keys[:12]
  return f"{key!r} is not a metric of {condition.describe()}; close keys: {hint}"


def _as_float(value: Any) -> float:
  if isinstance(value, (list, tuple)):
    raise TypeError(f"expected a scalar metric, got a sequence {value!r}")
  return float(value.item() if hasattr(value, "item") else value)


def _fmt(value: float, digits: int = 2) -> str:
  value = float(value)
  if math.isnan(value) or math.isinf(value):
    return str(value)
  if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -digits):
    return f"{value:.{digits + 1}g}"
  return f"{value:.{digits}f}"


def _fmt_list(values: Iterable[float]) -> str:
  return "[" + ", ".join(_fmt(v) for v in values) + "]"


def _digits_to_tell_apart(a: float, b: float) -> int:
  """Decimals needed so that two different numbers do not print alike (2 to 6)."""
  for digits in range(2, 7):
    if _fmt(a, digits) != _fmt(b, digits) or a == b:
      return digits
  return 6


def _interval_text(interval: Interval, digits: int = 2) -> str:
  if interval.source == "point":
    return f"{_fmt(interval.value, digits)} (point value, no interval)"
  return (f"{_fmt(interval.value, digits)} [{_fmt(interval.low, digits)}, "
          f"{_fmt(interval.high, digits)}] ({_ci_name(interval)})")


# ---------------------------------------------------------------------------------------------
# Numeric baselines
# ---------------------------------------------------------------------------------------------

#: Format version of baseline files.
BASELINE_FORMAT = 1


class BaselineMismatch(AssertionError):
  """Metrics differ from their recorded baseline beyond the tolerances."""


def environment_versions() -> dict[str, str]:
  """Versions that can change numbers: mbrl_drift, jax, flax, numpy, python, machine."""
  from mbrl_drift import __version__
  versions = {"mbrl_drift": __version__}
  for name in ("jax", "flax", "numpy"):
    try:
      versions[name] = __import__(name).__version__
    except ImportError:  # pragma: no cover - all three are dependencies
      versions[name] = "missing"
  versions["python"] = platform.python_version()
  versions["machine"] = platform.machine()
  return versions


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
  """An exclusive inter-process lock on ``path`` (``fcntl.flock``; no lock where unsupported).

  Two processes (e.g. pytest-xdist workers) that take the same lock run their blocks one
  after the other.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if fcntl is None:  # pragma: no cover - Windows
    yield
    return
  with open(path, "a") as handle:
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class Baseline:
  """Numeric baselines of one test, stored in a JSON file shared by the tests of a module.

  File format (keys sorted, diff-friendly)::

    {"format": 1,
     "entries": {"<test>::<name>": {"metrics": {"goal/coherence": 0.71, ...},
                                    "versions": {"mbrl_drift": "0.1.0", "jax": "0.10.2", ...},
                                    "recorded": "2025-01-01T12:00:00+00:00"}}}

  Writes take a file lock (``<file>.lock``) and replace the file atomically, so parallel test
  processes can record entries of the same file.

  Args:
    path: the JSON file.
    test_key: the test's name inside its module (e.g. ``"test_signflip[OpenRoom]"``).
    update: rewrite entries with the new values instead of comparing (never fails).
    require: fail when an entry is missing instead of creating it (for CI).
    on_record: called with ``(action, path, entry_key)`` when an entry is created or updated.
    update_hint: a sentence that says how to accept new values, appended to failures.
  """

  def __init__(self, path: str | os.PathLike, test_key: str, update: bool = False,
               require: bool = False,
               on_record: Callable[[str, Path, str], None] | None = None,
               update_hint: str = "record the new values by rewriting the baseline"):
    self.path = Path(path)
    self.test_key = test_key
    self.update = update
    self.require = require
    self.on_record = on_record
    self.update_hint = update_hint

  def entry_key(self, name: str) -> str:
    return f"{self.test_key}::{name}"

  def load(self) -> dict[str, Any]:
    """The file's content (an empty file structure when it does not exist)."""
    if not self.path.exists():
      return {"format": BASELINE_FORMAT, "entries": {}}
    data = json.loads(self.path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
      raise ValueError(f"{self.path} is not a baseline file (no 'entries' object)")
    return data

  def check(self, name: str, metrics: Mapping[str, Any], rtol: float = 0.05,
            atol: float = 0.02) -> None:
    """Compares metrics with their recorded baseline (recording it when there is none).

    A value passes when ``|got - expected| <= atol + rtol * |expected|`` (NaN equals NaN);
    sequences (e.g. per-seed values) are compared element by element.

    Args:
      name: the baseline's name within the test.
      metrics: ``{"group/name": number or sequence of numbers}``.
      rtol: relative tolerance.
      atol: absolute tolerance.

    Raises:
      BaselineMismatch: (an ``AssertionError``) a metric is out of tolerance, missing, or new;
        the message lists each with expected, got and tolerance, and the versions that differ
        from those the baseline was recorded with.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    values = {key: _baseline_value(key, value) for key, value in metrics.items()}
    key = self.entry_key(name)
    stored = self.load()["entries"].get(key)
    if stored is None or self.update:
      if stored is None and self.require and not self.update:
        raise BaselineMismatch(f"no baseline {key!r} in {self.path}; {self.update_hint}")
      self._record(key, values, "updated" if stored is not None else "created")
      return
    problems = _compare(stored["metrics"], values, rtol, atol)
    if not problems:
      return
    lines = [f"baseline {name!r} of {self.test_key} differs ({self.path}):", *problems]
    recorded = stored.get("versions", {})
    running = environment_versions()
    changed = [f"recorded with {pkg} {recorded[pkg]}, running {running[pkg]}"
               for pkg in running if pkg in recorded and recorded[pkg] != running[pkg]]
    if changed:
      lines.append("; ".join(changed) + ": a version change may explain this difference")
    lines.append(self.update_hint)
    raise BaselineMismatch("\n".join(lines))

  def _record(self, key: str, values: dict[str, Any], action: str) -> None:
    from mbrl_drift.checkpoint import atomic_write_bytes

    with file_lock(self.path.with_name(self.path.name + ".lock")):
      data = self.load()
      data["format"] = BASELINE_FORMAT
      data["entries"][key] = {
          "metrics": values, "versions": environment_versions(),
          "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
      text = json.dumps(data, indent=2, sort_keys=True) + "\n"
      atomic_write_bytes(self.path, text.encode())
    logger.info("baseline %s: %s in %s", action, key, self.path)
    if self.on_record is not None:
      self.on_record(action, self.path, key)


def _baseline_value(key: str, value: Any) -> float | list[float]:
  if isinstance(value, (list, tuple)) or (hasattr(value, "ndim") and value.ndim > 0):
    return [float(v) for v in np.asarray(value, np.float64).reshape(-1)]
  try:
    return float(value.item() if hasattr(value, "item") else value)
  except (TypeError, ValueError) as error:
    raise TypeError(f"baseline metric {key!r} must be a number or a sequence of numbers, got "
                    f"{value!r}") from error


def _compare(expected: Mapping[str, Any], got: Mapping[str, Any], rtol: float,
             atol: float) -> list[str]:
  problems = []
  for key in sorted(set(expected) | set(got)):
    if key not in got:
      problems.append(f"  {key}: missing from the metrics (expected {_fmt_value(expected[key])})")
      continue
    if key not in expected:
      problems.append(f"  {key}: not in the baseline (got {_fmt_value(got[key])})")
      continue
    want, have = np.asarray(expected[key], np.float64), np.asarray(got[key], np.float64)
    if want.shape != have.shape:
      problems.append(f"  {key}: expected {_fmt_value(expected[key])}, got "
                      f"{_fmt_value(got[key])} (different lengths)")
      continue
    tolerance = atol + rtol * np.abs(want)
    close = (np.abs(have - want) <= tolerance) | (np.isnan(want) & np.isnan(have))
    if not np.all(close):
      tol_text = _fmt_value(tolerance.tolist(), 4)
      problems.append(f"  {key}: expected {_fmt_value(expected[key], 4)}, got "
                      f"{_fmt_value(got[key], 4)}, tolerance ±{tol_text} "
                      f"(atol {atol:g} + rtol {rtol:g} x |expected|)")
  return problems


def _fmt_value(value: Any, digits: int = 4) -> str:
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(f"{float(v):.{digits}g}" for v in value) + "]"
  return f"{float(value):.{digits}g}"


# ---------------------------------------------------------------------------------------------
# Trained runs, cached
# ---------------------------------------------------------------------------------------------


class RunCache:
  """Trains runs once and keeps them, in memory for this process and on disk across processes.

  A run lives in ``<cache_dir>/<config_hash>-s<seeds>-b<seed>-v<version>-c<code>/`` (a run
  directory of :func:`mbrl_drift.runs.train_run`), where ``<code>`` is :func:`code_fingerprint`:
  after any change to the package's sources, agents are trained anew, so a green suite is
  evidence about the code it ran. A finished run there (``summary.json`` with
  ``finished: true``) is loaded, never retrained; an unfinished one (interrupted) resumes; a
  corrupted one is trained again. A file lock (``<run dir>.lock``) makes concurrent processes
  (pytest-xdist workers) train each run once: the others wait, then load it.

  Attributes:
    cache_dir: the cache directory.
    trained: run directories trained (or resumed) by this object.
    loaded_from_cache: run directories loaded from disk, finished, by this object.

  Args:
    cache_dir: the cache directory (created).
    log: called with one line per run trained or loaded (default: the module's logger).
  """

  def __init__(self, cache_dir: str | os.PathLike, log: Callable[[str], None] | None = None):
    self.cache_dir = Path(cache_dir)
    self.trained: list[Path] = []
    self.loaded_from_cache: list[Path] = []
    self._runs: dict[Path, Any] = {}
    self._log = log or logger.info

  def run_dir(self, config: Any, seeds: int = 2, seed: int = 0, init_from: Any = None,
              freeze: Sequence[str] = ()) -> Path:
    """Where the run of ``config`` with ``seeds`` seeds and base seed ``seed`` is kept."""
    from mbrl_drift import __version__
    config = _resolve_config(config)
    name = f"{config.config_hash()}-s{seeds}-b{seed}"
    if init_from is not None:
      start = Path(getattr(init_from, "run_dir", init_from)).name
      frozen = hashlib.sha256(",".join(sorted(freeze)).encode()).hexdigest()[:8]
      name += f"-from-{start}-f{frozen}"
    return self.cache_dir / f"{name}-v{__version__}-c{code_fingerprint()}"

  def __call__(self, config: Any, seeds: int = 2, seed: int = 0, init_from: Any = None,
               freeze: Sequence[str] = ()) -> Any:
    """The trained run of a configuration (trained now only if no process trained it before).

    Args:
      config: a :class:`~mbrl_drift.config.TrainConfig`, or an environment name whose preset
        (:func:`mbrl_drift.presets.preset`) to train.
      seeds: seeds trained together.
      seed: base seed.
      init_from: a trained run (or its directory) to fine-tune, e.g. a run of this cache.
      freeze: component paths kept fixed while fine-tuning (``mbrl_drift.runs.train_run``),
        e.g. the world model, to train another goal's value function in the same latent space.

    Returns:
      The :class:`~mbrl_drift.runs.TrainedRun`.
    """
    from mbrl_drift import checkpoint as ckpt
    from mbrl_drift.runs import is_finished, load_run, train_run

    config = _resolve_config(config)
    if seeds < 1:
      raise ValueError(f"seeds must be at least 1, got {seeds}")
    run_dir = self.run_dir(config, seeds, seed, init_from, freeze)
    init_dir = None if init_from is None else Path(getattr(init_from, "run_dir", init_from))
    if run_dir in self._runs:
      return self._runs[run_dir]
    with file_lock(run_dir.with_name(run_dir.name + ".lock")):
      run = None
      if is_finished(run_dir):
        try:
          run = load_run(run_dir)
          self.loaded_from_cache.append(run_dir)
          self._log(f"mbrl_drift: loaded run {run_dir} from the cache (not retrained)")
        except ckpt.CheckpointError as error:
          self._log(f"mbrl_drift: cached run {run_dir} is unreadable ({error}); training it "
                    f"again")
          shutil.rmtree(run_dir)
      if run is None:
        resume = (run_dir / ckpt.CONFIG_NAME).exists()
        start = time.time()
        train_run(config, seeds, run_dir, seed=seed, resume=resume, progress=False,
                  log=self._log, init_from=init_dir, freeze=tuple(freeze))
        run = load_run(run_dir)
        self.trained.append(run_dir)
        self._log(f"mbrl_drift: {'resumed and finished' if resume else 'trained'} run "
                  f"{run_dir} ({config.env}, {seeds} seeds) in {time.time() - start:.1f}s")
    self._runs[run_dir] = run
    return run


def _resolve_config(config: Any) -> Any:
  if isinstance(config, str):
    from mbrl_drift.presets import preset
    return preset(config)
  return config


# ---------------------------------------------------------------------------------------------
# Fault evaluation
# ---------------------------------------------------------------------------------------------


@functools.cache
def code_fingerprint() -> str:
  """A short hash of the source of the installed ``mbrl_drift`` and ``envs`` packages (every
  ``.py`` file's path and bytes): the code that trains and evaluates an agent."""
  import importlib.util

  digest = hashlib.sha256()
  for package in ("mbrl_drift", "envs"):
    spec = importlib.util.find_spec(package)
    root = Path(spec.origin).parent
    for path in sorted(root.rglob("*.py")):
      digest.update(str(path.relative_to(root.parent)).encode())
      digest.update(path.read_bytes())
  return digest.hexdigest()[:10]


def evaluate_faults(run: Any, faults: Sequence[str], severities: Sequence[float],
                    horizons: Sequence[int] | None = None,
                    policies: Sequence[str] | None = None, episodes: int = 64,
                    key_seed: int = 0, thresholds: Any = None) -> list[Condition]:
  """Evaluates a trained run under faults: one :class:`Condition` per (fault, severity,
  horizon, policy).

  Severity 0 is always evaluated (added when missing): it is the intact agent, the reference
  of each fault's failure labels, and what ``lookup(conditions, fault="intact")`` returns.
  The evaluation is :func:`mbrl_drift.fault_evaluation.evaluate_faults`, the pipeline the CLI
  and the sweep runner use too: every condition of a seed shares its episode starts and random
  numbers, so differences between conditions come from the faults alone, and per-seed values of
  two conditions pair up.

  Args:
    run: a :class:`~mbrl_drift.runs.TrainedRun`.
    faults: fault specs (``"value:signflip"``, ``"world_model/dynamics:gaussian(scale=1.0)"``;
      ``"intact"`` for none).
    severities: severities to evaluate.
    horizons: planning horizons (default: the run's training horizon).
    policies: action selections of the run's agent (default: its first, greedy).
    episodes: episodes per condition and seed.
    key_seed: seed of the evaluation's PRNG key (episodes, fault noise, bootstrap).
    thresholds: :class:`~mbrl_drift.metrics.FailureThresholds` of the labels (defaults when
      ``None``).

  Returns:
    The conditions, ordered by fault, severity, horizon and policy.

  Raises:
    ValueError: a malformed or unknown fault spec, horizon or policy.
  """
  import jax

  from mbrl_drift import fault_evaluation

  specs = list(faults)
  if not specs:
    raise ValueError("faults is empty; give at least one fault spec (or 'intact')")
  requests = [fault_evaluation.FaultRequest(spec, severities=tuple(float(s) for s in severities))
              for spec in specs]
  evaluation = fault_evaluation.evaluate_faults(run, requests, horizons, policies, episodes,
                                                jax.random.key(key_seed), thresholds=thresholds)
  return [Condition(fault=r.fault, severity=r.severity, horizon=r.horizon, policy=r.policy,
                    metrics=r.metrics, label=r.label, label_reasons=r.label_reasons)
          for r in sorted(evaluation.records,
                          key=lambda r: (specs.index(r.fault), r.severity, r.horizon or 0,
                                         r.policy))]


__all__ = [
    "Baseline",
    "BaselineMismatch",
    "CONFIDENCE",
    "Condition",
    "Interval",
    "RunCache",
    "as_condition",
    "assert_greater",
    "assert_label",
    "assert_less",
    "assert_metric",
    "bootstrap_mean_ci",
    "code_fingerprint",
    "environment_versions",
    "evaluate_faults",
    "file_lock",
    "lookup",
]
