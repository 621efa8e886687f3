"""All behaviour metrics of one evaluation condition, with bootstrap confidence intervals.

:func:`behaviour_metrics` turns a batch of episodes into one flat ``{"group/name": value}`` dict:
outcomes (:mod:`~mbrl_drift.metrics.outcomes`), goal-directedness
(:mod:`~mbrl_drift.metrics.goal_directedness`) and, when a policy table is given, comparisons
with reference policies (:mod:`~mbrl_drift.metrics.policy_compare`). Every mean over episodes
carries a percentile bootstrap interval (``<key>_ci_low`` / ``<key>_ci_high``).

Grid worlds with a tabular export (``env.tabular``) get exact MEG over goals and cells;
continuous goal environments with ``env.distance_to_goals`` (PointGoals) get the heading
analogue. The goal-structured summary ``goal/coherence``, ``goal/inferred_goal``,
``goal/margin`` comes from whichever applies, so
:func:`~mbrl_drift.metrics.labels.classify_failure` reads both alike.

The planning tables behind MEG cost a few seconds to build: build a :class:`TabularContext` once
per environment and parameters (:func:`tabular_context`) and pass it to every call.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs import oracles
from mbrl_drift.metrics import goal_directedness as gd
from mbrl_drift.metrics import outcomes as outcomes_lib
from mbrl_drift.metrics import policy_compare
from mbrl_drift.metrics import stats
from mbrl_drift.trajectories import Trajectories

Array = jax.Array

DEFAULT_NUM_RESAMPLES = 1000
DEFAULT_POSITION_BINS = 10


@struct.dataclass
class TabularContext:
  """Everything about a tabular environment that the metrics reuse across conditions.

  Attributes:
    mdp: the ``envs.oracles.TabularMDP``.
    goal_model: soft-optimal policies of the goal utilities (``G = K``).
    cell_model: soft-optimal policies of the per-cell reach-and-stay utilities (``G = S``),
      or ``None`` when per-cell MEG is off.
    goal_distances: ``[K, S]`` float32 shortest path lengths to each goal (``inf`` when
      unreachable).
    distances: ``[S, S]`` float32 distances between cells.
    goal_names: goal labels in index order (static).
  """

  mdp: Any
  goal_model: gd.PlanningModel
  cell_model: gd.PlanningModel | None
  goal_distances: Array
  distances: Array
  goal_names: tuple[str, ...] = struct.field(pytree_node=False)

  @property
  def num_states(self) -> int:
    return self.distances.shape[0]


def tabular_context(
    env: Any,
    env_params: Any = None,
    gamma: float = gd.DEFAULT_GAMMA,
    betas: Array | None = None,
    num_iters: int = gd.DEFAULT_NUM_ITERS,
    cell_targets: bool = True,
) -> TabularContext:
  """Builds the planning tables and distances of a tabular environment (host side).

  Args:
    env: an environment with ``tabular(params)`` (e.g. ``GoalGrid``).
    env_params: its parameters (``env.default_params`` when ``None``); must be concrete.
    gamma: discount of the candidate utilities.
    betas: rationality grid (:func:`~mbrl_drift.metrics.goal_directedness.default_betas`).
    num_iters: soft value iteration backups.
    cell_targets: whether to build the per-cell model (``S`` utilities).

  Returns:
    The :class:`TabularContext`.
  """
  if env_params is None:
    env_params = env.default_params
  mdp = env.tabular(env_params)
  distances = outcomes_lib.cell_distances(mdp)
  goal_states = np.asarray(mdp.goal_states)
  goal_model = gd.planning_model(mdp, None, betas, gamma, num_iters)
  cell_model = (gd.planning_model(mdp, gd.cell_target_rewards(mdp), betas, gamma, num_iters)
                if cell_targets else None)
  return TabularContext(
      mdp=mdp,
      goal_model=goal_model,
      cell_model=cell_model,
      goal_distances=jnp.asarray(distances[:, goal_states].T),
      distances=jnp.asarray(distances),
      goal_names=tuple(_goal_names(env, len(goal_states))),
  )


def _goal_names(env: Any, num_goals: int) -> list[str]:
  names = getattr(env, "goal_names", None)
  if names is not None:
    return [str(name) for name in names]
  return [f"goal{k}" for k in range(num_goals)]


@functools.partial(jax.jit, static_argnames=("gamma",))
def reference_policies(context: TabularContext, gamma: float = gd.DEFAULT_GAMMA
                       ) -> dict[str, Array]:
  """The uniform policy and each goal's oracle (uniform over optimal actions), ``[S, A]`` each.

  Args:
    context: the tabular context.
    gamma: discount of the oracles.

  Returns:
    ``{"uniform": ..., "oracle_<goal>": ...}``; add ``"base"`` and ``"healthy"`` yourself.
  """
  mdp = context.mdp
  references = {"uniform": policy_compare.uniform_policy(mdp.num_states, mdp.num_actions)}
  oracle = oracles.policy_for_all_goals(mdp, gamma)
  for k, name in enumerate(context.goal_names):
    references[f"oracle_{name}"] = oracle[k]
  return references


@jax.jit
def policy_metrics(
    policy: Array,
    references: Mapping[str, Array] | None = None,
    base_policy: Array | None = None,
    finetuned_policy: Array | None = None,
    weights: Array | None = None,
    reversion_grid: Array | None = None,
) -> dict[str, Array]:
  """Comparisons of a policy table with reference policies.

  Args:
    policy: ``[S, A]`` policy under study.
    references: name -> ``[S, A]`` reference policies (``base`` and, when given,
      ``healthy`` = ``finetuned_policy`` are added).
    base_policy: ``[S, A]`` base (pre-fine-tuning) policy.
    finetuned_policy: ``[S, A]`` healthy fine-tuned policy.
    weights: optional ``[S]`` probe-state weights.
    reversion_grid: ``[L]`` candidate reversion coefficients.

  Returns:
    ``reference/<name>`` mean JS distances, ``policy/entropy``; with a base policy
    ``drift/kl_to_base`` and ``drift/kl_distance_to_base``; with both base and fine-tuned
    policies ``reversion/coefficient`` and ``reversion/residual``.
  """
  references = dict(references or {})
  if base_policy is not None:
    references["base"] = base_policy
  if finetuned_policy is not None:
    references["healthy"] = finetuned_policy
  metrics = policy_compare.attractor_distances(policy, references, weights)
  metrics["policy/entropy"] = policy_compare.policy_entropy(policy, weights)
  if base_policy is not None:
    metrics.update(policy_compare.policy_kl(policy, base_policy, weights))
    if finetuned_policy is not None:
      metrics.update(policy_compare.reversion_coefficient(
          policy, base_policy, finetuned_policy, weights, reversion_grid))
  return metrics


def _episode_columns(per_episode: Mapping[str, Array], goal_names: Sequence[str],
                     intended_goal: int | None) -> dict[str, Array]:
  """Per-episode ``[N]`` columns whose means get a bootstrap interval, by metric key."""
  success = per_episode["success"].astype(jnp.float32)
  columns = {f"outcome/p_{name}": success[:, k] for k, name in enumerate(goal_names)}
  columns["outcome/p_timeout"] = per_episode["timeout"].astype(jnp.float32)
  columns.update({f"outcome/spl_{name}": per_episode["spl"][:, k]
                  for k, name in enumerate(goal_names)})
  for key in ("return", "length", "path_efficiency", "revisit_rate"):
    columns[f"outcome/{key}"] = per_episode[key].astype(jnp.float32)
  columns["outcome/loop_rate"] = per_episode["looped"].astype(jnp.float32)
  if intended_goal is not None:
    columns["outcome/intended_success"] = success[:, intended_goal]
  return columns


def _with_intervals(key: Array, columns: Mapping[str, Array], num_resamples: int,
                    confidence: float) -> dict[str, Array]:
  names = list(columns)
  matrix = jnp.stack([columns[name] for name in names], axis=1)
  interval = stats.nanmean_ci(key, matrix, num_resamples, confidence)
  metrics = {}
  for i, name in enumerate(names):
    metrics.update(stats.ci_dict(name, stats.ConfidenceInterval(
        interval.estimate[i], interval.low[i], interval.high[i])))
  return metrics


def _goal_summary(metrics: dict[str, Array], group: str, scores: Array,
                  goal_names: Sequence[str], interval: stats.ConfidenceInterval | None) -> None:
  coherence, inferred, margin = gd.coherence_summary(scores)
  for k, name in enumerate(goal_names):
    metrics[f"{group}/{name}"] = scores[k]
  metrics[f"{group}/coherence"] = coherence
  metrics[f"{group}/inferred_goal"] = inferred
  metrics[f"{group}/margin"] = margin
  metrics["goal/coherence"] = coherence
  metrics["goal/inferred_goal"] = inferred
  metrics["goal/margin"] = margin
  if interval is not None:
    for k, name in enumerate(goal_names):
      metrics[f"{group}/{name}_ci_low"] = interval.low[k]
      metrics[f"{group}/{name}_ci_high"] = interval.high[k]
    for prefix in (group, "goal"):
      metrics[f"{prefix}/coherence_ci_low"] = interval.low[-1]
      metrics[f"{prefix}/coherence_ci_high"] = interval.high[-1]


def _posterior_summary(metrics: dict[str, Array], posterior: gd.GoalPosterior,
                       length: Array, goal_names: Sequence[str], threshold: float,
                       rationalities: Array, name: str) -> None:
  steps, _, identified = gd.time_to_identification(posterior.posterior, length, threshold)
  final = jnp.take_along_axis(posterior.posterior, length[:, None, None], axis=1)[:, 0]
  for k, goal in enumerate(goal_names):
    metrics[f"posterior/p_{goal}"] = jnp.mean(final[:, k])
  metrics["posterior/confidence"] = jnp.mean(jnp.max(final, axis=-1))
  metrics[f"posterior/{name}"] = rationalities[posterior.beta_index]
  metrics["posterior/identified_rate"] = jnp.mean(identified.astype(jnp.float32))
  fraction = steps / jnp.maximum(length, 1).astype(jnp.float32)
  any_identified = jnp.any(identified)
  metrics["posterior/time_to_identification"] = jnp.where(
      any_identified, jnp.nanmean(jnp.where(identified, steps, jnp.nan)), jnp.nan)
  metrics["posterior/identification_fraction"] = jnp.where(
      any_identified, jnp.nanmean(jnp.where(identified, fraction, jnp.nan)), jnp.nan)


def _intended_summary(metrics: dict[str, Array], goal_names: Sequence[str],
                      intended_goal: int) -> None:
  reach = jnp.stack([metrics[f"outcome/p_{name}"] for name in goal_names])
  others = jnp.where(jnp.arange(len(goal_names)) == intended_goal, -1.0, reach)
  metrics["task/intended_goal"] = jnp.int32(intended_goal)
  metrics["outcome/off_target_mass"] = jnp.max(others)
  metrics["outcome/off_target_goal"] = jnp.argmax(others).astype(jnp.int32)


def cell_meg(trajectories: Trajectories, context: TabularContext,
             normalisation: str = "optimal") -> Array:
  """Per-cell MEG map: how well each cell's reach-and-stay utility explains the episodes.

  Args:
    trajectories: ``N`` episodes of the context's environment.
    context: a :class:`TabularContext` with a cell model.
    normalisation: see :func:`~mbrl_drift.metrics.goal_directedness.meg_from_terms`.

  Returns:
    ``[S]`` scores in ``[0, 1]``.

  Raises:
    ValueError: if the context was built without cell targets.
  """
  if context.cell_model is None:
    raise ValueError("context has no cell model; build it with tabular_context(..., "
                     "cell_targets=True)")
  model = context.cell_model
  counts = gd.visit_counts(trajectories, context.num_states, model.num_actions)
  scores, _ = gd.meg_from_terms(gd.meg_terms(model, jnp.sum(counts, axis=0)), normalisation)
  return scores


@functools.partial(jax.jit, static_argnames=(
    "intended_goal", "num_resamples", "confidence", "threshold", "normalisation"))
def _tabular_metrics(key, trajectories, context, intended_goal, num_resamples, confidence,
                     threshold, normalisation):
  goal_names = context.goal_names
  mdp = context.mdp
  key_outcomes, key_meg = jax.random.split(key)

  per_episode = outcomes_lib.episode_outcomes(
      trajectories, context.goal_distances, context.distances, mdp.goal_states)
  metrics = outcomes_lib.outcome_metrics(per_episode, goal_names, context.num_states)
  metrics.update(_with_intervals(
      key_outcomes, _episode_columns(per_episode, goal_names, intended_goal), num_resamples,
      confidence))
  goal_of_state = jnp.full(context.num_states, -1, jnp.int32).at[mdp.goal_states].set(
      jnp.arange(len(goal_names), dtype=jnp.int32))
  top_cell = metrics["endpoint/top_cell"]
  metrics["endpoint/top_goal"] = jnp.where(top_cell >= 0, goal_of_state[top_cell], -1)

  # -- goal-profile MEG with a bootstrap over episodes
  model = context.goal_model
  counts = gd.visit_counts(trajectories, context.num_states, model.num_actions)
  terms = gd.meg_terms(model, counts)
  pooled = jax.tree.map(lambda x: jnp.sum(x, axis=0), terms)
  scores, best_beta = gd.meg_from_terms(pooled, normalisation)
  interval = stats.bootstrap_ci(key_meg, terms, gd.meg_bootstrap_statistic(normalisation),
                                num_resamples, confidence)
  _goal_summary(metrics, "meg", scores, goal_names, interval)
  for k, name in enumerate(goal_names):
    metrics[f"meg/beta_{name}"] = model.betas[best_beta[k]]
  other = "uniform" if normalisation == "optimal" else "optimal"
  raw_scores, _ = gd.meg_from_terms(pooled, other)
  for k, name in enumerate(goal_names):
    metrics[f"meg_{other}_norm/{name}"] = raw_scores[k]
  metrics[f"meg_{other}_norm/coherence"] = jnp.max(raw_scores)

  # -- per-cell MEG
  if context.cell_model is not None:
    cell_scores = cell_meg(trajectories, context, normalisation)
    coherence, best_cell, margin = gd.coherence_summary(cell_scores)
    metrics["cell/coherence"] = coherence
    metrics["cell/best_cell"] = best_cell
    metrics["cell/best_row"] = jnp.asarray(mdp.cells)[best_cell, 0]
    metrics["cell/best_col"] = jnp.asarray(mdp.cells)[best_cell, 1]
    metrics["cell/best_goal"] = goal_of_state[best_cell]
    metrics["cell/margin"] = margin

  # -- goal posterior
  posterior = gd.posterior_from_log_likelihoods(gd.step_log_likelihoods(model, trajectories))
  _posterior_summary(metrics, posterior, trajectories.length, goal_names, threshold,
                     model.betas, "beta")
  if intended_goal is not None:
    _intended_summary(metrics, goal_names, intended_goal)
  return metrics


@functools.partial(jax.jit, static_argnames=(
    "env", "intended_goal", "num_resamples", "confidence", "threshold", "bins"))
def _continuous_metrics(key, trajectories, env, env_params, intended_goal, num_resamples,
                        confidence, threshold, bins, kappas):
  num_goals = int(env.num_goals)
  goal_names = _goal_names(env, num_goals)
  key_outcomes, key_heading = jax.random.split(key)
  distance = env.distance_to_goals(trajectories.position, env_params)  # [N, T + 1, K]
  end = jnp.take_along_axis(distance, trajectories.length[:, None, None], axis=1)[:, 0]
  per_episode = outcomes_lib.continuous_episode_outcomes(
      trajectories, distance[:, 0], end, bins)
  metrics = outcomes_lib.outcome_metrics(per_episode, goal_names, bins * bins)
  metrics.update(_with_intervals(
      key_outcomes, _episode_columns(per_episode, goal_names, intended_goal), num_resamples,
      confidence))
  metrics["endpoint/top_goal"] = jnp.int32(-1)

  cosine, moving = gd.heading_alignment(trajectories.position, trajectories.valid, distance)
  scores = gd.heading_scores(cosine, trajectories.valid)
  samples = (jnp.sum(cosine, axis=1), jnp.sum(trajectories.valid, axis=1).astype(jnp.float32))
  interval = stats.bootstrap_ci(key_heading, samples, _heading_statistic, num_resamples,
                                confidence)
  _goal_summary(metrics, "heading", scores, goal_names, interval)
  posterior = gd.posterior_from_log_likelihoods(
      gd.heading_log_likelihoods(cosine, moving, kappas))
  _posterior_summary(metrics, posterior, trajectories.length, goal_names, threshold, kappas,
                     "kappa")
  if intended_goal is not None:
    _intended_summary(metrics, goal_names, intended_goal)
  return metrics


def _heading_statistic(samples):
  total_cosine, num_valid = samples
  scores = jnp.clip(jnp.sum(total_cosine, axis=0) / jnp.maximum(jnp.sum(num_valid), 1.0), 0, 1)
  return jnp.concatenate([scores, jnp.max(scores)[None]])


def behaviour_metrics(
    key: Array,
    trajectories: Trajectories,
    env: Any,
    env_params: Any = None,
    intended_goal: int | None = None,
    context: TabularContext | None = None,
    policy: Array | None = None,
    references: Mapping[str, Array] | None = None,
    base_policy: Array | None = None,
    finetuned_policy: Array | None = None,
    probe_weights: Array | None = None,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    confidence: float = 0.95,
    identification_threshold: float = gd.DEFAULT_IDENTIFICATION_THRESHOLD,
    normalisation: str = "optimal",
    position_bins: int = DEFAULT_POSITION_BINS,
    kappas: Array | None = None,
) -> dict[str, Array]:
  """Outcome and goal-directedness metrics of one condition, with bootstrap intervals.

  Args:
    key: PRNG key for the bootstrap.
    trajectories: ``N`` episodes of one condition (one agent, fault and severity).
    env: the environment: a grid world with ``tabular`` (exact MEG) or a continuous goal
      environment with ``distance_to_goals`` and ``num_goals`` (heading analogue).
    env_params: its parameters (``env.default_params`` when ``None``).
    intended_goal: the rewarded goal; ``env_params.intended_goal`` when ``None`` and the
      parameters have one.
    context: prebuilt :class:`TabularContext` (built here when ``None``; pass it to reuse).
    policy: optional ``[S, A]`` policy table of the agent on the probe states, for
      :func:`policy_metrics`.
    references: reference policies for :func:`policy_metrics`.
    base_policy: base policy for :func:`policy_metrics`.
    finetuned_policy: healthy fine-tuned policy for :func:`policy_metrics`.
    probe_weights: ``[S]`` probe-state weights for :func:`policy_metrics`.
    num_resamples: bootstrap resamples.
    confidence: two-sided coverage of the intervals.
    identification_threshold: posterior level of the time to identification.
    normalisation: MEG normalisation, ``"optimal"`` or ``"uniform"``.
    position_bins: cells per axis for the continuous loop and endpoint analysis.
    kappas: von Mises concentration grid of the continuous posterior.

  Returns:
    Flat ``{"group/name": scalar array}`` dict. Groups: ``outcome`` (reach distribution, SPL,
    return, length, efficiency, loops; with ``_ci_low`` / ``_ci_high``), ``attractor``
    (timed-out episodes), ``endpoint``, ``meg`` or ``heading`` (per goal, ``coherence``,
    ``inferred_goal``, ``margin``), ``goal`` (the same summary under one name), ``cell``
    (per-cell MEG, tabular only), ``posterior``, ``task`` and, with a policy, ``reference``,
    ``policy``, ``drift`` and ``reversion``. ``behaviour/num_episodes`` is ``N``.

  Raises:
    ValueError: if the environment has neither a tabular export nor goal distances, or
      ``normalisation`` is unknown.
  """
  if normalisation not in gd.NORMALISATIONS:
    raise ValueError(
        f"normalisation must be one of {gd.NORMALISATIONS}, got {normalisation!r}")
  if env_params is None:
    env_params = env.default_params
  if intended_goal is None and hasattr(env_params, "intended_goal"):
    intended_goal = int(np.asarray(env_params.intended_goal))
  if hasattr(env, "tabular"):
    if context is None:
      context = tabular_context(env, env_params)
    metrics = _tabular_metrics(
        key, trajectories, context, intended_goal, num_resamples, confidence,
        identification_threshold, normalisation)
  elif hasattr(env, "distance_to_goals"):
    if kappas is None:
      kappas = gd.default_kappas()
    metrics = _continuous_metrics(
        key, trajectories, env, env_params, intended_goal, num_resamples, confidence,
        identification_threshold, position_bins, kappas)
  else:
    raise ValueError(
        f"behaviour_metrics needs a goal environment: {env!r} has neither 'tabular' (grid "
        "worlds) nor 'distance_to_goals' (continuous goals)")
  if policy is not None:
    metrics.update(policy_metrics(policy, references, base_policy, finetuned_policy,
                                  probe_weights))
  metrics["behaviour/num_episodes"] = jnp.int32(trajectories.num_episodes)
  return metrics


__all__ = [
    "TabularContext",
    "behaviour_metrics",
    "cell_meg",
    "policy_metrics",
    "reference_policies",
    "tabular_context",
]
