"""Failure labels on constructed metric dicts."""

import dataclasses

import numpy as np
import pytest

from mbrl_drift.metrics import labels


def metrics(**changes):
  """An intact-looking condition (intended goal 0 reached 95% of the time), with changes."""
  base = {
      "task/intended_goal": 0,
      "outcome/intended_success": 0.95,
      "outcome/off_target_mass": 0.02,
      "outcome/off_target_goal": 1,
      "outcome/p_timeout": 0.03,
      "outcome/loop_rate": 0.05,
      "outcome/path_efficiency": 0.9,
      "goal/coherence": 0.95,
      "goal/inferred_goal": 0,
      "endpoint/top_share": 0.95,
      "endpoint/top_goal": 0,
      "cell/coherence": 0.95,
  }
  base.update(changes)
  return base


HEALTHY = {"outcome/intended_success": 1.0}


def test_intact_relative_to_the_healthy_agent():
  result = labels.classify_failure(metrics(), healthy_metrics=HEALTHY)
  assert result.label == "intact"
  assert result.evidence["healthy/intended_success"] == 1.0
  assert "0.95" in str(result) and "0.90" in str(result)
  label, reasons = result
  assert label == "intact" and reasons == result.reasons


def test_intact_without_healthy_metrics_uses_the_absolute_bar():
  assert labels.classify_failure(metrics()).label == "intact"
  assert labels.classify_failure(metrics(**{"outcome/intended_success": 0.7})).label != "intact"


def test_small_loss_relative_to_a_weak_healthy_agent_is_still_intact():
  weak = {"outcome/intended_success": 0.5}
  result = labels.classify_failure(metrics(**{"outcome/intended_success": 0.46}),
                                   healthy_metrics=weak)
  assert result.label == "intact"


def test_coherent_pursuit_of_another_goal():
  condition = metrics(**{
      "outcome/intended_success": 0.0, "outcome/off_target_mass": 0.9,
      "goal/coherence": 0.93, "goal/inferred_goal": 1, "endpoint/top_goal": 1})
  result = labels.classify_failure(condition, healthy_metrics=HEALTHY)
  assert result.label == "coherent"
  assert "goal 1" in str(result) and "0.93" in str(result)
  assert result.evidence["goal/coherence"] == pytest.approx(0.93)


def place(**changes):
  """Every episode times out in one cell that is no goal, 4 steps from its start on average."""
  return metrics(**{
      "outcome/intended_success": 0.0, "outcome/off_target_mass": 0.0,
      "outcome/p_timeout": 1.0, "goal/coherence": 0.05, "goal/inferred_goal": 2,
      "endpoint/top_share": 0.97, "endpoint/top_goal": -1, "cell/coherence": 0.96,
      "pursuit/place_share": 0.97, "pursuit/place_distance": 4.0,
      "pursuit/place_efficiency": 0.95, "pursuit/place_meg": 0.96, "pursuit/place_cells": 1,
      "pursuit/place_row": 3, "pursuit/place_col": 4, **changes})


def test_coherent_gathering_at_a_place_that_is_no_goal():
  result = labels.classify_failure(place(), healthy_metrics=HEALTHY)
  assert result.label == "coherent"
  assert "no goal" in str(result) and result.target == "place (3, 4)"
  # A short cycle is a place too.
  cycle = labels.classify_failure(place(**{"pursuit/place_cells": 2}), healthy_metrics=HEALTHY)
  assert cycle.label == "coherent" and "cycle of 2 cells" in str(cycle)
  # Competence from per-cell MEG alone, or from efficiency alone, suffices; neither does not.
  assert labels.classify_failure(place(**{"pursuit/place_efficiency": 0.2}),
                                 healthy_metrics=HEALTHY).label == "coherent"
  assert labels.classify_failure(place(**{"pursuit/place_meg": 0.1}),
                                 healthy_metrics=HEALTHY).label == "coherent"
  weak = place(**{"pursuit/place_efficiency": 0.2, "pursuit/place_meg": 0.1})
  assert labels.classify_failure(weak, healthy_metrics=HEALTHY).label == "incoherent"


def test_ending_where_it_started_is_not_pursuit_of_a_place():
  # Old expectation (the bug): all episodes end in one cell with per-cell MEG 1, so
  # "coherent". A policy that never moves has exactly that; it arrives nowhere.
  frozen = place(**{"endpoint/top_share": 1.0, "cell/coherence": 1.0,
                    "pursuit/place_share": 0.0, "pursuit/place_distance": float("nan"),
                    "pursuit/place_efficiency": float("nan"), "pursuit/place_meg": 1.0,
                    "outcome/stall_rate": 1.0})
  result = labels.classify_failure(frozen, healthy_metrics=HEALTHY)
  assert result.label == "incoherent" and "hardly moves" in str(result)
  # Without pursuit keys, concentration alone never makes a place coherent.
  bare = {k: v for k, v in frozen.items() if not k.startswith("pursuit/")}
  assert labels.classify_failure(bare, healthy_metrics=HEALTHY).label == "incoherent"
  # A place one step from the start shows little pursuit (place_min_distance).
  near = place(**{"pursuit/place_distance": 1.0})
  assert labels.classify_failure(near, healthy_metrics=HEALTHY).label == "incoherent"
  lenient = labels.FailureThresholds(place_min_distance=1.0)
  assert labels.classify_failure(near, lenient, HEALTHY).label == "coherent"


def test_incoherent_wandering():
  condition = metrics(**{
      "outcome/intended_success": 0.1, "outcome/off_target_mass": 0.1,
      "outcome/p_timeout": 0.8, "outcome/loop_rate": 0.9, "outcome/path_efficiency": 0.1,
      "goal/coherence": 0.02, "endpoint/top_share": 0.1, "endpoint/top_goal": -1,
      "cell/coherence": 0.05})
  result = labels.classify_failure(condition, healthy_metrics=HEALTHY)
  assert result.label == "incoherent"
  text = str(result)
  assert "0.02" in text and "80%" in text and "90%" in text


def test_reverted_to_the_base_policy():
  condition = metrics(**{
      "outcome/intended_success": 0.2, "outcome/off_target_mass": 0.7,
      "goal/coherence": 0.8, "goal/inferred_goal": 1, "endpoint/top_goal": 1,
      "reference/base": 0.05, "reference/healthy": 0.6, "reference/uniform": 0.5,
      "reversion/coefficient": 0.05, "reversion/residual": 0.01})
  result = labels.classify_failure(condition, healthy_metrics=HEALTHY)
  assert result.label == "reverted"
  assert result.evidence["reference/base"] == pytest.approx(0.05)
  # Far along the path to the fine-tuned policy: not a reversion (here: coherent).
  moved = dict(condition, **{"reversion/coefficient": 0.6})
  assert labels.classify_failure(moved, healthy_metrics=HEALTHY).label == "coherent"
  # Nearest to the uniform policy: not a reversion either.
  uniform = dict(condition, **{"reference/uniform": 0.01})
  assert labels.classify_failure(uniform, healthy_metrics=HEALTHY).label == "coherent"


def test_mixed_when_no_signature_fits():
  condition = metrics(**{
      "outcome/intended_success": 0.5, "outcome/off_target_mass": 0.2,
      "goal/coherence": 0.4, "endpoint/top_share": 0.4})
  assert labels.classify_failure(condition, healthy_metrics=HEALTHY).label == "mixed"


def test_thresholds_are_configurable():
  condition = metrics(**{
      "outcome/intended_success": 0.5, "outcome/off_target_mass": 0.2,
      "goal/coherence": 0.4, "endpoint/top_share": 0.4})
  lenient = labels.FailureThresholds(intact_relative_success=0.5)
  assert labels.classify_failure(condition, lenient, HEALTHY).label == "intact"
  strict_incoherence = labels.FailureThresholds(incoherent_max_coherence=0.45,
                                                coherent_min_coherence=0.6)
  assert labels.classify_failure(condition, strict_incoherence, HEALTHY).label == "incoherent"


def test_array_valued_metrics_are_accepted():
  condition = {key: np.asarray(value) for key, value in metrics().items()}
  assert labels.classify_failure(condition).label == "intact"


@pytest.mark.parametrize("field, value", [
    ("intact_relative_success", 1.5), ("coherent_min_coherence", -0.1),
    ("incoherent_max_coherence", "low")])
def test_invalid_thresholds_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    labels.FailureThresholds(**{field: value})


def test_incoherence_bar_must_be_below_coherence_bar():
  with pytest.raises(ValueError, match="incoherent_max_coherence"):
    labels.FailureThresholds(incoherent_max_coherence=0.6, coherent_min_coherence=0.5)


def test_thresholds_are_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    labels.FailureThresholds().coherent_min_coherence = 0.1  # type: ignore[misc]


def test_missing_keys_are_named():
  condition = metrics()
  del condition["goal/coherence"]
  with pytest.raises(ValueError, match="goal/coherence"):
    labels.classify_failure(condition)
  with pytest.raises(ValueError, match="healthy_metrics"):
    labels.classify_failure(metrics(), healthy_metrics={})


def _swapped_boltzmann(**changes):
  """A stochastic agent that goes to goal 1 in 88% of episodes, with the low MEG that
  Boltzmann action selection gives even to a goal-directed agent."""
  return metrics(**{
      "outcome/intended_success": 0.05, "outcome/off_target_mass": 0.88,
      "outcome/off_target_goal": 1, "goal/coherence": 0.23, "goal/inferred_goal": 1,
      "endpoint/top_share": 0.88, "endpoint/top_goal": 1, "cell/coherence": 0.2, **changes})


def test_coherence_bars_are_relative_to_the_healthy_agent_under_the_same_selection():
  healthy_boltzmann = {"outcome/intended_success": 0.70, "goal/coherence": 0.094}
  result = labels.classify_failure(_swapped_boltzmann(), healthy_metrics=healthy_boltzmann)
  assert result.label == "coherent"
  assert result.evidence["healthy/goal/coherence"] == pytest.approx(0.094)
  assert "0.50 x healthy 0.09 = 0.05" in str(result)
  # the same numbers against absolute bars: C = 0.23 <= 0.25 reads as aimless
  absolute = labels.FailureThresholds(relative_coherence=False)
  assert labels.classify_failure(_swapped_boltzmann(), absolute,
                                 healthy_boltzmann).label == "incoherent"
  # a goal-directed healthy agent (C near 1) keeps the bars where they were
  healthy_greedy = {"outcome/intended_success": 1.0, "goal/coherence": 0.97}
  assert labels.classify_failure(_swapped_boltzmann(),
                                 healthy_metrics=healthy_greedy).label == "incoherent"


def test_relative_coherence_must_be_a_bool():
  with pytest.raises(ValueError, match="relative_coherence"):
    labels.FailureThresholds(relative_coherence=0.5)


def pursuit(**changes):
  """Episodes end at goal 1 (80%), with path efficiency 0.7 and low MEG (noisy actions)."""
  return metrics(**{
      "outcome/intended_success": 0.0, "outcome/off_target_mass": 0.8,
      "outcome/off_target_goal": 1, "goal/coherence": 0.35, "goal/inferred_goal": 1,
      "endpoint/top_goal": 1, "pursuit/goal": 1, "pursuit/goal_share": 0.8,
      "pursuit/goal_efficiency": 0.7, "pursuit/goal_meg": 0.35, "pursuit/others_share": 0.85,
      "pursuit/others_efficiency": 0.7, **changes})


def test_noisy_pursuit_is_coherent_through_path_efficiency():
  result = labels.classify_failure(pursuit(), healthy_metrics=HEALTHY)
  assert (result.label, result.target) == ("coherent", "goal 1"), str(result)
  assert "path efficiency (SPL) of those episodes 0.70 >= 0.50" in str(result)
  # inefficient and unpredictable: not coherent (C 0.35 is between the bars: mixed)
  weak = pursuit(**{"pursuit/goal_efficiency": 0.3, "pursuit/others_efficiency": 0.3})
  assert labels.classify_failure(weak, healthy_metrics=HEALTHY).label == "mixed"
  # undefined efficiency (NaN) never counts as competence
  nan = pursuit(**{"pursuit/goal_efficiency": float("nan"),
                   "pursuit/others_efficiency": float("nan")})
  assert labels.classify_failure(nan, healthy_metrics=HEALTHY).label == "mixed"
  # the efficiency bar is relative to the healthy agent's efficiency
  slow_healthy = dict(HEALTHY, **{"pursuit/intended_efficiency": 0.5})
  result = labels.classify_failure(weak, healthy_metrics=slow_healthy)
  assert result.label == "coherent" and "0.50 x healthy 0.50 = 0.25" in str(result)


def test_target_is_where_the_episodes_end_not_the_meg_argmax():
  condition = pursuit(**{"goal/inferred_goal": 2, "goal/coherence": 0.8,
                         "pursuit/goal_share": 0.64, "pursuit/goal_meg": 0.3})
  result = labels.classify_failure(condition, healthy_metrics=HEALTHY)
  assert (result.label, result.target) == ("coherent", "goal 1")
  assert "MEG is highest towards goal 2" in str(result)
  # old records without pursuit keys: coherent only when the inferred goal is the reached one
  bare = {k: v for k, v in condition.items() if not k.startswith("pursuit/")}
  assert labels.classify_failure(bare, healthy_metrics=HEALTHY).label != "coherent"
  bare["goal/inferred_goal"] = 1
  assert labels.classify_failure(bare, healthy_metrics=HEALTHY).label == "coherent"


def test_pursuit_of_the_non_intended_goals_as_a_set():
  condition = pursuit(**{"pursuit/goal_share": 0.45, "pursuit/others_share": 0.9,
                         "pursuit/others_efficiency": 1.0, "pursuit/others_nearest_share": 1.0})
  result = labels.classify_failure(condition, healthy_metrics=HEALTHY)
  assert (result.label, result.target) == ("coherent", "non-intended goals"), str(result)
  assert "100% of them at the nearest non-intended goal" in str(result)


def test_seed_keys_of_references_are_not_references():
  condition = metrics(**{
      "outcome/intended_success": 0.2, "outcome/off_target_mass": 0.7,
      "goal/coherence": 0.8, "goal/inferred_goal": 1, "reference/base": 0.05,
      "reference/base/min": 0.0, "reference/healthy": 0.6, "reference/uniform": 0.5,
      "reference/uniform/min": 0.001, "reversion/coefficient": 0.05})
  assert labels.classify_failure(condition, healthy_metrics=HEALTHY).label == "reverted"


def test_place_min_distance_is_validated():
  with pytest.raises(ValueError, match="place_min_distance"):
    labels.FailureThresholds(place_min_distance=-1.0)
  assert labels.FailureThresholds(place_min_distance=5.0).place_min_distance == 5.0


def test_classify_seeds_labels_every_seed():
  per_seed = {f"{k}/per_seed": np.array([v, v]) for k, v in pursuit().items()}
  per_seed["pursuit/goal_efficiency/per_seed"] = np.array([0.9, 0.1])
  per_seed["pursuit/others_efficiency/per_seed"] = np.array([0.9, 0.1])
  assert [c.label for c in labels.classify_seeds(per_seed)] == ["coherent", "mixed"]
  with pytest.raises(ValueError, match="per_seed"):
    labels.classify_seeds(pursuit())
  healthy = {"outcome/intended_success/per_seed": np.array([1.0, 1.0, 1.0])}
  with pytest.raises(ValueError, match="seeds"):
    labels.classify_seeds(per_seed, healthy_metrics=healthy)
