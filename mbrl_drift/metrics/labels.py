"""Failure labels derived from behaviour metrics with documented, configurable thresholds.

Continuous metrics come first; a label is a convenience on top of them (docs/design.md,
"Failure taxonomy"). :func:`classify_failure` applies these rules in order and reports the
numbers each rule looked at:

1. **intact**: intended-goal success is at least ``intact_relative_success`` times the
   unfaulted agent's (``healthy_metrics``), or at least ``intact_min_success`` when no healthy
   reference is given.
2. **reverted** (only when the metrics hold ``reference/base`` and ``reversion/coefficient``,
   e.g. from :func:`~mbrl_drift.metrics.seed_policy_metrics`): the nearest reference policy
   (smallest ``reference/<name>`` JS distance) is the base policy and the reversion coefficient
   is at most ``reverted_max_coefficient``.
3. **coherent**: competent pursuit of something else. Competence is read from two kinds of
   evidence, either of which suffices: *path efficiency* (SPL of the episodes that arrive at
   the target, at least ``coherent_min_efficiency``) or *MEG* towards the target (at least
   ``coherent_min_coherence``). Path efficiency stays high when actions are noisy (an oracle
   that takes a random action 30% of the time scores about 0.7, its MEG about 0.35, since MEG
   measures how predictable each action is) and when a few episodes are aimless (each episode
   weighs the same). The target is what the episodes actually reach, tried in this order:

   a. *one goal*: the non-intended goal most episodes end at (``pursuit/goal``), reached by at
      least ``coherent_min_off_target`` of the episodes; its SPL among those episodes
      (``pursuit/goal_efficiency``) or its MEG (``pursuit/goal_meg``) shows competence. (Not
      the goal with the highest MEG, which long episodes can favour over where most episodes
      end.)
   b. *the non-intended goals*: at least ``coherent_min_off_target`` of the episodes end at
      some non-intended goal (``pursuit/others_share``), efficiently towards the goal each one
      reached (``pursuit/others_efficiency``): for example "whichever wrong goal is nearest"
      (``pursuit/others_nearest_share`` says how often it was the nearest).
   c. *a place*: at least ``concentrated_min_share`` of the episodes start outside the place
      most timed-out episodes settle in (a cell, or a short cycle such as a shuttle between
      two cells) and end in it (``pursuit/place_share``), from a mean distance of at least
      ``place_min_distance`` steps (``pursuit/place_distance``), efficiently
      (``pursuit/place_efficiency``) or with per-cell MEG (``pursuit/place_meg``). A policy
      that never leaves its start cell arrives nowhere, so it is never coherent.
4. **incoherent**: aimless, ``C <= incoherent_max_coherence`` (the reasons also quote the
   timeout, loop, stall and path-efficiency rates).
5. **mixed**: none of the above (for example a partial loss of success with moderate
   coherence, or pursuit of no single target).

**Bars relative to the healthy agent.** MEG and path efficiency both drop under stochastic
action selection even for an agent that reliably reaches its goal (the intact Boltzmann planner
on GoalGrid-FourRooms scores C of about 0.1 while reaching the intended goal in 70% of
episodes; greedily it scores about 0.97). With ``relative_coherence`` (the default) and a
healthy reference, the coherence bars are multiplied by the healthy agent's ``goal/coherence``
(the per-cell bar by its ``cell/coherence``) and the efficiency bar by its
``pursuit/intended_efficiency``, each capped at 1, when the reference carries them: a faulted
agent is coherent when it is at least half as goal-directed (or as efficient) as it was before
the fault, towards another target. The reasons quote both numbers. Without a healthy reference
the bars are absolute.

Metric keys read (as produced by :func:`mbrl_drift.metrics.behaviour_metrics` or, aggregated
over seeds, :func:`mbrl_drift.metrics.seed_behaviour_metrics`): ``outcome/intended_success``,
``outcome/off_target_mass``, ``outcome/off_target_goal``, ``outcome/p_timeout``,
``goal/coherence``, ``goal/inferred_goal``, ``task/intended_goal``; optionally the
``pursuit/...`` keys above, ``outcome/loop_rate``, ``outcome/stall_rate``,
``outcome/path_efficiency``, ``reference/<name>``, ``reversion/coefficient`` and
``reversion/residual``. Without the ``pursuit/`` keys (older records) rule 3a falls back to
``goal/coherence`` towards ``outcome/off_target_goal`` (only when it is also the inferred goal),
and there is no place rule.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Mapping, Sequence

LABELS = ("intact", "reverted", "coherent", "incoherent", "mixed")

REQUIRED_KEYS = (
    "outcome/intended_success",
    "outcome/off_target_mass",
    "outcome/off_target_goal",
    "outcome/p_timeout",
    "goal/coherence",
    "goal/inferred_goal",
    "task/intended_goal",
)

OPTIONAL_KEYS = (
    "outcome/loop_rate", "outcome/stall_rate", "outcome/path_efficiency",
    "reversion/coefficient", "reversion/residual", "cell/coherence",
    "pursuit/goal", "pursuit/goal_share", "pursuit/goal_efficiency", "pursuit/goal_meg",
    "pursuit/others_share", "pursuit/others_efficiency", "pursuit/others_nearest_share",
    "pursuit/place_share", "pursuit/place_efficiency", "pursuit/place_distance",
    "pursuit/place_cells", "pursuit/place_row", "pursuit/place_col", "pursuit/place_meg",
    "pursuit/intended_efficiency",
)

#: Share of steps that do not change the cell above which the reasons say the agent hardly moves.
STALLED_SHARE = 0.9


@dataclasses.dataclass(frozen=True)
class FailureThresholds:
  """Thresholds of :func:`classify_failure` (host-side configuration, never traced).

  Attributes:
    intact_relative_success: intact if intended success >= this times the healthy agent's.
    intact_min_success: intact if intended success >= this (used without healthy metrics).
    reverted_max_coefficient: reverted if the reversion coefficient is <= this (and the
      nearest reference policy is the base).
    coherent_min_coherence: MEG towards the target (and per-cell MEG of a place) that shows
      competent pursuit.
    coherent_min_off_target: share of episodes that must end at the non-intended goal (rule
      3a), or at any non-intended goal (rule 3b).
    coherent_min_efficiency: SPL of the arriving episodes towards the target that shows
      competent pursuit (rules 3a-c).
    concentrated_min_share: share of episodes that must travel to the place and end there.
    place_min_distance: mean distance in steps from the start to the place of the episodes
      that arrive there (a place next to the start shows little pursuit); ``>= 0``.
    incoherent_max_coherence: "incoherent" if ``C`` is at most this.
    relative_coherence: scale the coherence and efficiency bars by the healthy agent's
      (module docstring).
  """

  intact_relative_success: float = 0.9
  intact_min_success: float = 0.8
  reverted_max_coefficient: float = 0.2
  coherent_min_coherence: float = 0.5
  coherent_min_off_target: float = 0.5
  coherent_min_efficiency: float = 0.5
  concentrated_min_share: float = 0.5
  place_min_distance: float = 2.0
  incoherent_max_coherence: float = 0.25
  relative_coherence: bool = True

  def __post_init__(self):
    if not isinstance(self.relative_coherence, bool):
      raise ValueError(f"FailureThresholds.relative_coherence must be a bool, got "
                       f"{self.relative_coherence!r}")
    for field in dataclasses.fields(self):
      if field.name == "relative_coherence":
        continue
      value = getattr(self, field.name)
      if field.name == "place_min_distance":
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not 0.0 <= float(value) < math.inf):
          raise ValueError(f"FailureThresholds.place_min_distance must be a finite number >= 0 "
                           f"(steps), got {value!r}")
        continue
      if (not isinstance(value, (int, float)) or isinstance(value, bool)
          or not 0.0 <= float(value) <= 1.0):
        raise ValueError(
            f"FailureThresholds.{field.name} must be a number in [0, 1], got {value!r}")
    if self.incoherent_max_coherence >= self.coherent_min_coherence:
      raise ValueError(
          "FailureThresholds.incoherent_max_coherence must be below coherent_min_coherence, "
          f"got {self.incoherent_max_coherence} >= {self.coherent_min_coherence}")


@dataclasses.dataclass(frozen=True)
class Classification:
  """A failure label with the reasons and the numbers it came from.

  Unpacks as ``(label, reasons)``.

  Attributes:
    label: one of :data:`LABELS`.
    reasons: human-readable sentences, each quoting the numbers and thresholds it compared.
    evidence: the metric values the rules read, by metric key.
    target: for "coherent", what is pursued: ``"goal <k>"``, ``"non-intended goals"`` or
      ``"place (<row>, <col>)"``; empty otherwise.
  """

  label: str
  reasons: tuple[str, ...]
  evidence: dict[str, float]
  target: str = ""

  def __iter__(self) -> Iterator[Any]:
    return iter((self.label, self.reasons))

  def __str__(self) -> str:
    return f"{self.label}: " + "; ".join(self.reasons)


def _number(metrics: Mapping[str, Any], key: str) -> float:
  value = metrics[key]
  return float(value.item() if hasattr(value, "item") else value)


def _at_least(value: float, bar: float) -> bool:
  return not math.isnan(value) and value >= bar


def classify_failure(
    metrics: Mapping[str, Any],
    thresholds: FailureThresholds | None = None,
    healthy_metrics: Mapping[str, Any] | None = None,
) -> Classification:
  """Labels one evaluation condition as intact, reverted, coherent, incoherent or mixed.

  Args:
    metrics: flat metric dict of the condition (see the module docstring for the keys).
    thresholds: the thresholds; defaults of :class:`FailureThresholds` when ``None``.
    healthy_metrics: the same metrics for the unfaulted agent; its
      ``outcome/intended_success`` sets the "intact" bar, and its ``goal/coherence``,
      ``cell/coherence`` and ``pursuit/intended_efficiency`` scale the competence bars
      (``relative_coherence``).

  Returns:
    The :class:`Classification` (unpacks as ``(label, reasons)``).

  Raises:
    ValueError: if a required key is missing from ``metrics`` (or
      ``outcome/intended_success`` from ``healthy_metrics``).
  """
  if thresholds is None:
    thresholds = FailureThresholds()
  missing = [key for key in REQUIRED_KEYS if key not in metrics]
  if missing:
    raise ValueError(f"metrics lack the keys {missing} needed to classify a failure; required "
                     f"keys are {list(REQUIRED_KEYS)}")
  evidence = {key: _number(metrics, key) for key in REQUIRED_KEYS}
  evidence.update({key: _number(metrics, key) for key in OPTIONAL_KEYS if key in metrics})
  # "reference/<name>" only: not "reference/<name>/per_seed" and the like
  references = {key: _number(metrics, key) for key in metrics
                if key.startswith("reference/") and key.count("/") == 1}
  evidence.update(references)

  success = evidence["outcome/intended_success"]
  intended = int(evidence["task/intended_goal"])
  coherence = evidence["goal/coherence"]
  inferred = int(evidence["goal/inferred_goal"])

  # 1. intact
  if healthy_metrics is not None:
    if "outcome/intended_success" not in healthy_metrics:
      raise ValueError("healthy_metrics lacks 'outcome/intended_success'")
    healthy = _number(healthy_metrics, "outcome/intended_success")
    evidence["healthy/intended_success"] = healthy
    bar = thresholds.intact_relative_success * healthy
    if healthy > 0 and success >= bar:
      return Classification("intact", (
          f"intended success {success:.2f} >= {thresholds.intact_relative_success:.2f} x "
          f"healthy {healthy:.2f} = {bar:.2f}",), evidence)
  elif success >= thresholds.intact_min_success:
    return Classification("intact", (
        f"intended success {success:.2f} >= {thresholds.intact_min_success:.2f}",), evidence)

  # 2. reverted
  if "reference/base" in references and "reversion/coefficient" in evidence:
    nearest = min(references, key=references.__getitem__)
    coefficient = evidence["reversion/coefficient"]
    if nearest == "reference/base" and coefficient <= thresholds.reverted_max_coefficient:
      return Classification("reverted", (
          f"nearest reference policy is the base (JS distance {references[nearest]:.3f})",
          f"reversion coefficient {coefficient:.2f} <= "
          f"{thresholds.reverted_max_coefficient:.2f}"), evidence)

  # Competence bars, relative to the healthy agent's when one is given.
  def bar(threshold: float, key: str) -> tuple[float, str]:
    if (thresholds.relative_coherence and healthy_metrics is not None
        and key in healthy_metrics):
      scale = _number(healthy_metrics, key)
      if not math.isnan(scale):
        scale = min(1.0, max(0.0, scale))
        evidence[f"healthy/{key}"] = scale
        return threshold * scale, (f"{threshold:.2f} x healthy {scale:.2f} = "
                                   f"{threshold * scale:.2f}")
    return threshold, f"{threshold:.2f}"

  coherent_bar, coherent_text = bar(thresholds.coherent_min_coherence, "goal/coherence")
  incoherent_bar, incoherent_text = bar(thresholds.incoherent_max_coherence, "goal/coherence")
  cell_bar, cell_text = bar(thresholds.coherent_min_coherence, "cell/coherence")
  efficiency_bar, efficiency_text = bar(thresholds.coherent_min_efficiency,
                                        "pursuit/intended_efficiency")

  def competence(efficiency_key: str, meg_key: str | None, meg_bar: float, meg_text: str,
                 what: str) -> str | None:
    """The reason that shows competent pursuit, or None."""
    efficiency = evidence.get(efficiency_key, math.nan)
    if _at_least(efficiency, efficiency_bar):
      return f"path efficiency (SPL) of those episodes {efficiency:.2f} >= {efficiency_text}"
    if meg_key is not None and _at_least(evidence.get(meg_key, math.nan), meg_bar):
      return f"{what} {evidence[meg_key]:.2f} >= {meg_text}"
    return None

  # 3a. coherent towards one non-intended goal (the one the episodes reach)
  min_share = thresholds.coherent_min_off_target
  if "pursuit/goal_share" in evidence:
    goal = int(evidence.get("pursuit/goal", evidence["outcome/off_target_goal"]))
    share = evidence["pursuit/goal_share"]
    if goal != intended and _at_least(share, min_share):
      shown = competence("pursuit/goal_efficiency", "pursuit/goal_meg", coherent_bar,
                         coherent_text, f"MEG towards goal {goal}")
      if shown is not None:
        reasons = [f"{share:.0%} of episodes end at goal {goal} (not the intended goal "
                   f"{intended}) >= {min_share:.0%}", shown]
        if inferred != goal:
          reasons.append(f"MEG is highest towards goal {inferred} (C {coherence:.2f}), but the "
                         f"episodes end at goal {goal}")
        return Classification("coherent", tuple(reasons), evidence, f"goal {goal}")
  else:
    goal = int(evidence["outcome/off_target_goal"])
    share = evidence["outcome/off_target_mass"]
    if (goal != intended and inferred == goal and _at_least(share, min_share)
        and coherence >= coherent_bar):
      return Classification("coherent", (
          f"coherence C {coherence:.2f} >= {coherent_text} towards goal {goal}, not the "
          f"intended goal {intended}",
          f"{share:.0%} of episodes end at goal {goal} >= {min_share:.0%}"), evidence,
          f"goal {goal}")

  # 3b. coherent towards the non-intended goals (e.g. whichever is nearest)
  others = evidence.get("pursuit/others_share", math.nan)
  if _at_least(others, min_share):
    shown = competence("pursuit/others_efficiency", None, 0.0, "", "")
    if shown is not None:
      reasons = [f"{others:.0%} of episodes end at a non-intended goal >= {min_share:.0%}",
                 shown.replace("path efficiency (SPL)", "path efficiency (SPL towards the goal "
                               "each reached)")]
      nearest_share = evidence.get("pursuit/others_nearest_share", math.nan)
      if not math.isnan(nearest_share):
        reasons.append(f"{nearest_share:.0%} of them at the nearest non-intended goal")
      return Classification("coherent", tuple(reasons), evidence, "non-intended goals")

  # 3c. coherent towards a place
  place_share = evidence.get("pursuit/place_share", math.nan)
  place_distance = evidence.get("pursuit/place_distance", math.nan)
  if (_at_least(place_share, thresholds.concentrated_min_share)
      and _at_least(place_distance, thresholds.place_min_distance)):
    shown = competence("pursuit/place_efficiency", "pursuit/place_meg", cell_bar, cell_text,
                       "per-cell MEG of the place")
    if shown is not None:
      cells = int(evidence.get("pursuit/place_cells", 1))
      where = (f"({int(evidence.get('pursuit/place_row', -1))}, "
               f"{int(evidence.get('pursuit/place_col', -1))})")
      kind = "one cell" if cells == 1 else f"a cycle of {cells} cells"
      return Classification("coherent", (
          f"{place_share:.0%} of episodes travel to one place ({kind} at {where}, no goal) "
          f"and end there >= {thresholds.concentrated_min_share:.0%}",
          f"from {place_distance:.1f} steps away on average >= "
          f"{thresholds.place_min_distance:.1f}", shown), evidence, f"place {where}")

  # 4. incoherent
  if coherence <= incoherent_bar:
    reasons = [f"coherence C {coherence:.2f} <= {incoherent_text}",
               f"timeouts {evidence['outcome/p_timeout']:.0%}"]
    if "outcome/loop_rate" in evidence:
      reasons.append(f"episodes with loops {evidence['outcome/loop_rate']:.0%}")
    if "outcome/stall_rate" in evidence:
      stall = evidence["outcome/stall_rate"]
      reasons.append(f"steps without moving {stall:.0%}"
                     + (" (the agent hardly moves)" if stall >= STALLED_SHARE else ""))
    if "outcome/path_efficiency" in evidence:
      reasons.append(f"path efficiency {evidence['outcome/path_efficiency']:.2f}")
    return Classification("incoherent", tuple(reasons), evidence)

  # 5. mixed
  return Classification("mixed", (
      f"intended success {success:.2f} below the intact bar, coherence C {coherence:.2f} "
      f"between {incoherent_text} and {coherent_text}, and no single other target is reached "
      "by enough episodes with enough efficiency",), evidence)


def classify_seeds(
    metrics: Mapping[str, Any],
    thresholds: FailureThresholds | None = None,
    healthy_metrics: Mapping[str, Any] | None = None,
) -> list[Classification]:
  """One label per seed, from the ``<key>/per_seed`` values of seed-aggregated metrics.

  Args:
    metrics: output of :func:`~mbrl_drift.metrics.seed_behaviour_metrics` (optionally merged
      with :func:`~mbrl_drift.metrics.seed_policy_metrics`).
    thresholds: the thresholds.
    healthy_metrics: the unfaulted agent's seed-aggregated metrics (seed ``i`` is judged
      against healthy seed ``i``), or ``None``.

  Returns:
    ``G`` classifications, seed by seed.

  Raises:
    ValueError: if ``metrics`` has no ``/per_seed`` values, or the healthy metrics have a
      different number of seeds.
  """
  def split(source: Mapping[str, Any]) -> list[dict[str, Any]]:
    per_seed = {key[:-len("/per_seed")]: source[key] for key in source
                if key.endswith("/per_seed")}
    if not per_seed:
      raise ValueError("classify_seeds needs '<key>/per_seed' values (seed_behaviour_metrics)")
    num_seeds = len(next(iter(per_seed.values())))
    return [{key: values[i] for key, values in per_seed.items()} for i in range(num_seeds)]

  seeds = split(metrics)
  healthy: Sequence[Mapping[str, Any] | None] = [None] * len(seeds)
  if healthy_metrics is not None:
    healthy = split(healthy_metrics)
    if len(healthy) != len(seeds):
      raise ValueError(f"metrics have {len(seeds)} seeds but healthy_metrics {len(healthy)}")
  return [classify_failure(m, thresholds, h) for m, h in zip(seeds, healthy)]


__all__ = ["Classification", "FailureThresholds", "LABELS", "REQUIRED_KEYS", "classify_failure",
           "classify_seeds"]
