"""Behaviour metrics that tell coherent from incoherent failure, statistics and failure labels.

* :mod:`~mbrl_drift.metrics.outcomes`: goal-reach distribution, SPL, path efficiency, loops,
  attractors of timed-out episodes, endpoint dispersion.
* :mod:`~mbrl_drift.metrics.goal_directedness`: goal-profile and per-cell MEG (MacDermott et al.
  2024), inverse-planning goal posterior, heading analogue for continuous navigation.
* :mod:`~mbrl_drift.metrics.policy_compare`: Jensen-Shannon distances to reference policies,
  reversion coefficient, KL drift, linear CKA, relative weight distance.
* :mod:`~mbrl_drift.metrics.stats`: bootstrap confidence intervals, interquartile mean.
* :mod:`~mbrl_drift.metrics.labels`: intact / reverted / coherent / incoherent labels.
* :mod:`~mbrl_drift.metrics.controls`: control policies and a tabular rollout.
* :func:`behaviour_metrics`: all of it for one evaluation condition, as a flat dict.
"""

from mbrl_drift.metrics.behaviour import (
    TabularContext,
    behaviour_metrics,
    cell_meg,
    policy_metrics,
    reference_policies,
    tabular_context,
)
from mbrl_drift.metrics.controls import (
    deterministic_table,
    go_to_cell_table,
    random_deterministic_table,
    rollout_tabular_policy,
    uniform_table,
)
from mbrl_drift.metrics.goal_directedness import (
    GoalPosterior,
    PlanningModel,
    cell_target_rewards,
    default_betas,
    meg_from_terms,
    meg_terms,
    planning_model,
    posterior_from_log_likelihoods,
    step_log_likelihoods,
    time_to_identification,
    visit_counts,
)
from mbrl_drift.metrics.labels import LABELS, Classification, FailureThresholds, classify_failure
from mbrl_drift.metrics.outcomes import (
    cell_distances,
    continuous_episode_outcomes,
    endpoint_dispersion,
    episode_outcomes,
    outcome_metrics,
)
from mbrl_drift.metrics.policy_compare import (
    attractor_distances,
    geometric_mixture,
    js_distance,
    js_divergence,
    kl_divergence,
    linear_cka,
    mean_js_distance,
    nearest_attractor,
    policy_kl,
    relative_weight_distance,
    reversion_coefficient,
)
from mbrl_drift.metrics.stats import (
    ConfidenceInterval,
    bootstrap_ci,
    ci_dict,
    interquartile_mean,
    iqm_ci,
    mean_ci,
    nanmean_ci,
)

__all__ = [
    "LABELS",
    "Classification",
    "ConfidenceInterval",
    "FailureThresholds",
    "GoalPosterior",
    "PlanningModel",
    "TabularContext",
    "attractor_distances",
    "behaviour_metrics",
    "bootstrap_ci",
    "cell_distances",
    "cell_meg",
    "cell_target_rewards",
    "ci_dict",
    "classify_failure",
    "continuous_episode_outcomes",
    "default_betas",
    "deterministic_table",
    "endpoint_dispersion",
    "episode_outcomes",
    "geometric_mixture",
    "go_to_cell_table",
    "interquartile_mean",
    "iqm_ci",
    "js_distance",
    "js_divergence",
    "kl_divergence",
    "linear_cka",
    "mean_ci",
    "mean_js_distance",
    "meg_from_terms",
    "meg_terms",
    "nanmean_ci",
    "nearest_attractor",
    "outcome_metrics",
    "planning_model",
    "policy_kl",
    "policy_metrics",
    "posterior_from_log_likelihoods",
    "random_deterministic_table",
    "reference_policies",
    "relative_weight_distance",
    "reversion_coefficient",
    "rollout_tabular_policy",
    "step_log_likelihoods",
    "tabular_context",
    "time_to_identification",
    "uniform_table",
    "visit_counts",
]
