"""All behaviour metrics of one evaluation condition: per batch of episodes, and over seeds.

:func:`behaviour_metrics` turns a batch of episodes (one seed) into one flat
``{"group/name": value}`` dict: outcomes (:mod:`~mbrl_drift.metrics.outcomes`),
goal-directedness (:mod:`~mbrl_drift.metrics.goal_directedness`), pursuit of goals, of the set
of non-intended goals and of places, and, when a policy table is given, comparisons with
reference policies (:mod:`~mbrl_drift.metrics.policy_compare`). Its statistics carry a
percentile bootstrap interval over the batch's episodes (``<key>_ci_low`` / ``<key>_ci_high``).

:func:`seed_behaviour_metrics` is the entry point for several training seeds (``[seeds, N,
...]`` episodes): every seed is analysed on its own (its own rationality ``beta``, its own
place), and each metric is reported as the aggregate over seeds with every seed's value
(``<key>/per_seed``), their range (``<key>/min``, ``<key>/max``), each seed's episode interval
(``<key>/per_seed_ci_low``, ``<key>/per_seed_ci_high``) and, from
:data:`~mbrl_drift.metrics.stats.MIN_SEEDS_FOR_INTERVAL` seeds up, a hierarchical bootstrap
interval over seeds and episodes (``<key>/ci_low``, ``<key>/ci_high``). Pooling all seeds'
episodes into one batch would hide the between-seed variance (see
:mod:`~mbrl_drift.metrics.stats`). :func:`seed_policy_metrics` does the same for the
reversion and reference-distance keys computed from action probabilities on probe states.

**Pursuit keys** (``pursuit/...``, read by :func:`~mbrl_drift.metrics.labels.classify_failure`):
for the non-intended goal most episodes end at (``goal``: ``goal_share``, ``goal_efficiency`` =
SPL of the episodes that reach it, ``goal_meg``), for the set of all non-intended goals
(``others_share``, ``others_efficiency`` = SPL towards the goal each episode reached,
``others_nearest_share`` = share of those arrivals at the nearest non-intended goal), for the
place most timed-out episodes settle in (``place_share`` = share of episodes that start outside
it and end in it, ``place_efficiency``, ``place_distance`` = mean start distance of those
episodes, ``place_cells``, ``place_cell`` / ``place_row`` / ``place_col`` = its first cell,
``place_support`` = share of episodes whose final cycle is exactly that place, ``place_meg`` =
the best per-cell MEG among its cells) and for the intended goal (``intended_efficiency``).

Grid worlds with a tabular export (``env.tabular``) get exact MEG over goals and cells;
continuous goal environments with ``env.distance_to_goals`` (PointGoals) get the heading
analogue. The goal-structured summary ``goal/coherence``, ``goal/inferred_goal``,
``goal/margin`` comes from whichever applies, so
:func:`~mbrl_drift.metrics.labels.classify_failure` reads both alike.

The planning tables behind MEG cost a few seconds to build: build a :class:`TabularContext` once
per environment and parameters (:func:`tabular_context`) and pass it to every call.
"""

from __future__ import annotations

import dataclasses
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
#: Longest final cycle of a timed-out episode that counts as a place.
DEFAULT_MAX_PLACE_PERIOD = 4


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

  The oracle of goal ``k`` is optimal for the "reach goal ``k``" utility
  (:func:`~mbrl_drift.metrics.goal_directedness.goal_reach_rewards`): uniform over the moves
  of a shortest path to ``k`` that enters no other goal, at any distance.

  Args:
    context: the tabular context.
    gamma: discount of the oracles.

  Returns:
    ``{"uniform": ..., "oracle_<goal>": ...}``; add ``"base"`` and ``"healthy"`` yourself.
  """
  mdp = context.mdp
  references = {"uniform": policy_compare.uniform_policy(mdp.num_states, mdp.num_actions)}
  reach = mdp.replace(rewards=gd.goal_reach_rewards(mdp))
  oracle = oracles.policy_for_all_goals(reach, gamma, None, gd.DEFAULT_NUM_ITERS)
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


def _goal_sets(goal_names: Sequence[str], intended_goal: int | None) -> list[int]:
  """Indices of the non-intended goals (every goal when there is no intended goal)."""
  return [k for k in range(len(goal_names)) if k != intended_goal]


@dataclasses.dataclass(frozen=True)
class _EpisodeStatistic:
  """The statistics that get intervals, as one hashable function of per-episode samples.

  ``samples`` is ``{"mean": {name: [N]}, "ratio": {name: ([N], [N])}, "scores": ...}``:
  means of per-episode values (NaN entries left out), ratios of sums (NaN when the denominator
  is 0), and goal-directedness per goal (MEG terms, or heading sums) with the coherence.
  """

  mean_names: tuple[str, ...]
  ratio_names: tuple[str, ...]
  group: str  # "meg" or "heading"
  goal_names: tuple[str, ...]
  normalisation: str = "optimal"
  weighting: str = "episode"

  @property
  def names(self) -> tuple[str, ...]:
    scores = tuple(f"{self.group}/{name}" for name in self.goal_names)
    return self.mean_names + self.ratio_names + scores + (f"{self.group}/coherence",)

  def scores(self, samples: Mapping[str, Any]) -> tuple[Array, Array]:
    """``(scores [K], best_beta_index [K])`` of one batch of episodes."""
    if self.group == "meg":
      return gd.meg_scores(samples["scores"], self.normalisation, self.weighting)
    total_cosine, num_valid = samples["scores"]
    scores = jnp.clip(jnp.sum(total_cosine, axis=0) / jnp.maximum(jnp.sum(num_valid), 1.0),
                      0.0, 1.0)
    return scores, jnp.zeros(scores.shape, jnp.int32)

  def __call__(self, samples: Mapping[str, Any]) -> Array:
    values = [jnp.nanmean(samples["mean"][name]) for name in self.mean_names]
    for name in self.ratio_names:
      numerator, denominator = samples["ratio"][name]
      total = jnp.sum(denominator)
      values.append(jnp.where(total > 0, jnp.sum(numerator) / jnp.where(total > 0, total, 1.0),
                              jnp.nan))
    scores, _ = self.scores(samples)
    return jnp.concatenate([jnp.stack(values).astype(jnp.float32), scores,
                            jnp.max(scores)[None]])


def _outcome_samples(per_episode: Mapping[str, Array], goal_names: Sequence[str],
                     intended_goal: int | None, goal_distances: Array | None
                     ) -> tuple[dict[str, Array], dict[str, tuple[Array, Array]]]:
  """Per-episode columns (means) and ratio pairs of the outcome and goal-pursuit metrics."""
  success = per_episode["success"].astype(jnp.float32)
  spl = per_episode["spl"]
  means = {f"outcome/p_{name}": success[:, k] for k, name in enumerate(goal_names)}
  means["outcome/p_timeout"] = per_episode["timeout"].astype(jnp.float32)
  means.update({f"outcome/spl_{name}": spl[:, k] for k, name in enumerate(goal_names)})
  for key in ("return", "length", "path_efficiency", "revisit_rate", "stall_rate"):
    means[f"outcome/{key}"] = per_episode[key].astype(jnp.float32)
  means["outcome/loop_rate"] = per_episode["looped"].astype(jnp.float32)
  if intended_goal is not None:
    means["outcome/intended_success"] = success[:, intended_goal]
  ratios = {f"outcome/efficiency_{name}": (spl[:, k], success[:, k])
            for k, name in enumerate(goal_names)}

  others = jnp.asarray(_goal_sets(goal_names, intended_goal), jnp.int32)
  off_target = jnp.sum(success[:, others], axis=1)
  means["pursuit/others_share"] = off_target
  ratios["pursuit/others_efficiency"] = (jnp.sum(spl[:, others], axis=1), off_target)
  if goal_distances is not None:
    start_distance = jnp.asarray(goal_distances, jnp.float32).T[per_episode["start"]]  # [N, K]
    nearest = jnp.min(start_distance[:, others], axis=1)
    at_nearest = jnp.sum(success[:, others] * (start_distance[:, others] <= nearest[:, None]),
                         axis=1)
    ratios["pursuit/others_nearest_share"] = (at_nearest, off_target)
  return means, ratios


def _with_statistics(metrics: dict[str, Array], statistic: _EpisodeStatistic, samples: Any,
                     key: Array | None, num_resamples: int, confidence: float) -> None:
  """Sets the statistics' values (and, with a key, their episode bootstrap intervals)."""
  values = statistic(samples)
  if key is not None:
    interval = stats.bootstrap_ci(key, samples, statistic, num_resamples, confidence)
  for i, name in enumerate(statistic.names):
    metrics[name] = values[i]
    if key is not None:
      metrics[f"{name}_ci_low"] = interval.low[i]
      metrics[f"{name}_ci_high"] = interval.high[i]


def _goal_summary(metrics: dict[str, Array], group: str, goal_names: Sequence[str],
                  best_beta: Array | None = None, rationalities: Array | None = None) -> None:
  """Coherence, inferred goal and margin of ``<group>/<goal>`` scores, also under ``goal/``."""
  scores = jnp.stack([jnp.asarray(metrics[f"{group}/{name}"]) for name in goal_names])
  coherence, inferred, margin = gd.coherence_summary(scores)
  for prefix in (group, "goal"):
    metrics[f"{prefix}/coherence"] = coherence
    metrics[f"{prefix}/inferred_goal"] = inferred
    metrics[f"{prefix}/margin"] = margin
  for suffix in ("_ci_low", "_ci_high"):
    if f"{group}/coherence{suffix}" in metrics:
      metrics[f"goal/coherence{suffix}"] = metrics[f"{group}/coherence{suffix}"]
  if best_beta is not None:
    for k, name in enumerate(goal_names):
      metrics[f"{group}/beta_{name}"] = rationalities[best_beta[k]]


def _pursuit_summary(metrics: dict[str, Array], goal_names: Sequence[str],
                     intended_goal: int | None, group: str) -> None:
  """The goal-pursuit summary keys, derived from per-goal keys (works on aggregates too)."""
  if intended_goal is None:
    return
  reach = jnp.stack([jnp.asarray(metrics[f"outcome/p_{name}"], jnp.float32)
                     for name in goal_names])
  efficiency = jnp.stack([jnp.asarray(metrics[f"outcome/efficiency_{name}"], jnp.float32)
                          for name in goal_names])
  scores = jnp.stack([jnp.asarray(metrics[f"{group}/{name}"], jnp.float32)
                      for name in goal_names])
  others = jnp.where(jnp.arange(len(goal_names)) == intended_goal, -1.0, reach)
  goal = jnp.argmax(others).astype(jnp.int32)
  metrics["task/intended_goal"] = jnp.int32(intended_goal)
  metrics["outcome/off_target_mass"] = jnp.max(others)
  metrics["outcome/off_target_goal"] = goal
  metrics["pursuit/intended_efficiency"] = efficiency[intended_goal]
  metrics["pursuit/goal"] = goal
  metrics["pursuit/goal_share"] = jnp.max(others)
  metrics["pursuit/goal_efficiency"] = efficiency[goal]
  metrics["pursuit/goal_meg"] = scores[goal]


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


def cell_meg(trajectories: Trajectories, context: TabularContext,
             normalisation: str = "optimal", weighting: str = "episode") -> Array:
  """Per-cell MEG map: how well each cell's reach-and-stay utility explains the episodes.

  Args:
    trajectories: ``N`` episodes of the context's environment.
    context: a :class:`TabularContext` with a cell model.
    normalisation: see :func:`~mbrl_drift.metrics.goal_directedness.meg_scores`.
    weighting: see :func:`~mbrl_drift.metrics.goal_directedness.meg_scores`.

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
  scores, _ = gd.meg_scores(gd.meg_terms(model, counts), normalisation, weighting)
  return scores


def _tabular_core(trajectories, context, intended_goal, threshold, normalisation, weighting,
                  max_place_period):
  """Metrics of one batch (no intervals) and the per-episode samples of its statistics."""
  goal_names = context.goal_names
  mdp = context.mdp
  num_states = context.num_states

  per_episode = outcomes_lib.episode_outcomes(
      trajectories, context.goal_distances, context.distances, mdp.goal_states)
  per_episode["start"] = jnp.clip(trajectories.state_index[:, 0], 0, num_states - 1)
  metrics = outcomes_lib.outcome_metrics(per_episode, goal_names, num_states)
  means, ratios = _outcome_samples(per_episode, goal_names, intended_goal,
                                   context.goal_distances)
  goal_of_state = jnp.full(num_states, -1, jnp.int32).at[mdp.goal_states].set(
      jnp.arange(len(goal_names), dtype=jnp.int32))
  top_cell = metrics["endpoint/top_cell"]
  metrics["endpoint/top_goal"] = jnp.where(top_cell >= 0, goal_of_state[top_cell], -1)

  # -- the place most timed-out episodes settle in, and its pursuit
  places = outcomes_lib.episode_places(trajectories, num_states, max_place_period)
  place, support = outcomes_lib.dominant_place(places)
  pursuit = outcomes_lib.target_pursuit(trajectories, place, context.distances)
  arrived = pursuit["arrived"].astype(jnp.float32)
  means["pursuit/place_share"] = arrived
  ratios["pursuit/place_efficiency"] = (pursuit["efficiency"], arrived)
  ratios["pursuit/place_distance"] = (
      jnp.where(pursuit["arrived"], pursuit["start_distance"], 0.0), arrived)
  first_cell = jnp.where(jnp.any(place), jnp.argmax(place), -1).astype(jnp.int32)
  metrics["pursuit/place_cells"] = jnp.sum(place).astype(jnp.int32)
  metrics["pursuit/place_cell"] = first_cell
  cells = jnp.asarray(mdp.cells)
  metrics["pursuit/place_row"] = jnp.where(first_cell >= 0, cells[first_cell, 0], -1)
  metrics["pursuit/place_col"] = jnp.where(first_cell >= 0, cells[first_cell, 1], -1)
  metrics["pursuit/place_support"] = support

  # -- goal-profile MEG (its per-episode terms are the "scores" samples)
  model = context.goal_model
  counts = gd.visit_counts(trajectories, num_states, model.num_actions)
  terms = gd.meg_terms(model, counts)
  statistic = _EpisodeStatistic(tuple(sorted(means)), tuple(sorted(ratios)), "meg", goal_names,
                                normalisation, weighting)
  samples = {"mean": means, "ratio": ratios, "scores": terms}
  _, best_beta = statistic.scores(samples)
  other = "uniform" if normalisation == "optimal" else "optimal"
  other_scores, _ = gd.meg_scores(terms, other, weighting)
  for k, name in enumerate(goal_names):
    metrics[f"meg_{other}_norm/{name}"] = other_scores[k]
  metrics[f"meg_{other}_norm/coherence"] = jnp.max(other_scores)

  # -- per-cell MEG
  if context.cell_model is not None:
    cell_scores = cell_meg(trajectories, context, normalisation, weighting)
    coherence, best_cell, margin = gd.coherence_summary(cell_scores)
    metrics["cell/coherence"] = coherence
    metrics["cell/best_cell"] = best_cell
    metrics["cell/best_row"] = cells[best_cell, 0]
    metrics["cell/best_col"] = cells[best_cell, 1]
    metrics["cell/best_goal"] = goal_of_state[best_cell]
    metrics["cell/margin"] = margin
    metrics["pursuit/place_meg"] = jnp.max(jnp.where(place, cell_scores, 0.0))

  # -- goal posterior
  posterior = gd.posterior_from_log_likelihoods(gd.step_log_likelihoods(model, trajectories))
  _posterior_summary(metrics, posterior, trajectories.length, goal_names, threshold,
                     model.betas, "beta")
  extras = {"best_beta": best_beta, "rationalities": model.betas}
  return metrics, samples, statistic, extras


def _continuous_core(trajectories, env, env_params, intended_goal, threshold, bins, kappas):
  """As :func:`_tabular_core` for continuous goal environments (heading analogue)."""
  num_goals = int(env.num_goals)
  goal_names = tuple(_goal_names(env, num_goals))
  distance = env.distance_to_goals(trajectories.position, env_params)  # [N, T + 1, K]
  end = jnp.take_along_axis(distance, trajectories.length[:, None, None], axis=1)[:, 0]
  per_episode = outcomes_lib.continuous_episode_outcomes(
      trajectories, distance[:, 0], end, bins)
  metrics = outcomes_lib.outcome_metrics(per_episode, goal_names, bins * bins)
  means, ratios = _outcome_samples(per_episode, goal_names, intended_goal, None)
  metrics["endpoint/top_goal"] = jnp.int32(-1)

  cosine, moving = gd.heading_alignment(trajectories.position, trajectories.valid, distance)
  scores = (jnp.sum(cosine, axis=1), jnp.sum(trajectories.valid, axis=1).astype(jnp.float32))
  statistic = _EpisodeStatistic(tuple(sorted(means)), tuple(sorted(ratios)), "heading",
                                goal_names)
  samples = {"mean": means, "ratio": ratios, "scores": scores}
  posterior = gd.posterior_from_log_likelihoods(
      gd.heading_log_likelihoods(cosine, moving, kappas))
  _posterior_summary(metrics, posterior, trajectories.length, goal_names, threshold, kappas,
                     "kappa")
  return metrics, samples, statistic, {}


def _finish(metrics, statistic, extras, intended_goal):
  """Summary keys derived from the statistics (after their values are set)."""
  goal_names = statistic.goal_names
  _goal_summary(metrics, statistic.group, goal_names, extras.get("best_beta"),
                extras.get("rationalities"))
  _pursuit_summary(metrics, goal_names, intended_goal, statistic.group)


@functools.partial(jax.jit, static_argnames=(
    "intended_goal", "num_resamples", "confidence", "threshold", "normalisation", "weighting",
    "max_place_period"))
def _tabular_metrics(key, trajectories, context, intended_goal, num_resamples, confidence,
                     threshold, normalisation, weighting, max_place_period):
  metrics, samples, statistic, extras = _tabular_core(
      trajectories, context, intended_goal, threshold, normalisation, weighting,
      max_place_period)
  _with_statistics(metrics, statistic, samples, key, num_resamples, confidence)
  _finish(metrics, statistic, extras, intended_goal)
  return metrics


@functools.partial(jax.jit, static_argnames=(
    "env", "intended_goal", "num_resamples", "confidence", "threshold", "bins"))
def _continuous_metrics(key, trajectories, env, env_params, intended_goal, num_resamples,
                        confidence, threshold, bins, kappas):
  metrics, samples, statistic, extras = _continuous_core(
      trajectories, env, env_params, intended_goal, threshold, bins, kappas)
  _with_statistics(metrics, statistic, samples, key, num_resamples, confidence)
  _finish(metrics, statistic, extras, intended_goal)
  return metrics


def _resolve(env, env_params, intended_goal, context, normalisation, weighting, kappas):
  """Checks the settings and fills in the defaults of the behaviour metrics."""
  if normalisation not in gd.NORMALISATIONS:
    raise ValueError(
        f"normalisation must be one of {gd.NORMALISATIONS}, got {normalisation!r}")
  if weighting not in gd.WEIGHTINGS:
    raise ValueError(f"weighting must be one of {gd.WEIGHTINGS}, got {weighting!r}")
  if env_params is None:
    env_params = env.default_params
  if intended_goal is None and hasattr(env_params, "intended_goal"):
    intended_goal = int(np.asarray(env_params.intended_goal))
  if hasattr(env, "tabular"):
    if context is None:
      context = tabular_context(env, env_params)
  elif hasattr(env, "distance_to_goals"):
    if kappas is None:
      kappas = gd.default_kappas()
  else:
    raise ValueError(
        f"behaviour_metrics needs a goal environment: {env!r} has neither 'tabular' (grid "
        "worlds) nor 'distance_to_goals' (continuous goals)")
  return env_params, intended_goal, context, kappas


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
    weighting: str = "episode",
    max_place_period: int = DEFAULT_MAX_PLACE_PERIOD,
) -> dict[str, Array]:
  """Outcome, goal-directedness and pursuit metrics of one batch of episodes (one seed).

  For several training seeds use :func:`seed_behaviour_metrics`: pooling the episodes of
  several seeds into one batch here would share one rationality ``beta`` between them and
  leave the between-seed variance out of every interval.

  Args:
    key: PRNG key for the bootstrap.
    trajectories: ``N`` episodes of one condition (one agent, fault, severity and seed).
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
    weighting: MEG over episodes, ``"episode"`` (each episode weighs the same) or ``"step"``
      (all steps pooled); see :mod:`~mbrl_drift.metrics.goal_directedness`.
    max_place_period: longest final cycle that counts as a place (tabular only).

  Returns:
    Flat ``{"group/name": scalar array}`` dict. Groups: ``outcome`` (reach distribution, SPL
    and ``efficiency_<goal>`` = SPL of the episodes that reach the goal, return, length,
    efficiency, loops), ``attractor`` (timed-out episodes), ``endpoint``, ``meg`` or
    ``heading`` (per goal, ``coherence``, ``inferred_goal``, ``margin``), ``goal`` (the same
    summary under one name), ``cell`` (per-cell MEG, tabular only), ``pursuit`` (module
    docstring; place keys tabular only), ``posterior``, ``task`` and, with a policy,
    ``reference``, ``policy``, ``drift`` and ``reversion``. The statistics (episode means,
    efficiencies, shares and per-goal scores) carry ``_ci_low`` / ``_ci_high`` episode
    bootstrap intervals. ``behaviour/num_episodes`` is ``N``.

  Raises:
    ValueError: if the environment has neither a tabular export nor goal distances, or
      ``normalisation`` or ``weighting`` is unknown.
  """
  env_params, intended_goal, context, kappas = _resolve(
      env, env_params, intended_goal, context, normalisation, weighting, kappas)
  if hasattr(env, "tabular"):
    metrics = _tabular_metrics(
        key, trajectories, context, intended_goal, num_resamples, confidence,
        identification_threshold, normalisation, weighting, max_place_period)
  else:
    metrics = _continuous_metrics(
        key, trajectories, env, env_params, intended_goal, num_resamples, confidence,
        identification_threshold, position_bins, kappas)
  if policy is not None:
    metrics.update(policy_metrics(policy, references, base_policy, finetuned_policy,
                                  probe_weights))
  metrics["behaviour/num_episodes"] = jnp.int32(trajectories.num_episodes)
  return metrics


# ---------------------------------------------------------------------------------------------
# Over seeds
# ---------------------------------------------------------------------------------------------


def _seed_core(trajectories, env, env_params, context, intended_goal, threshold,
               normalisation, weighting, max_place_period, bins, kappas):
  if context is not None:
    return _tabular_core(trajectories, context, intended_goal, threshold, normalisation,
                         weighting, max_place_period)
  return _continuous_core(trajectories, env, env_params, intended_goal, threshold, bins, kappas)


@functools.partial(jax.jit, static_argnames=(
    "env", "intended_goal", "num_resamples", "confidence", "threshold", "normalisation",
    "weighting", "max_place_period", "bins", "aggregate", "with_interval"))
def _seed_metrics(key, trajectories, env, env_params, context, intended_goal, num_resamples,
                  confidence, threshold, normalisation, weighting, max_place_period, bins,
                  kappas, aggregate, with_interval):
  key_seeds, key_hierarchical = jax.random.split(key)

  def per_seed(key_seed, trajectories_seed):
    metrics, samples, statistic, extras = _seed_core(
        trajectories_seed, env, env_params, context, intended_goal, threshold, normalisation,
        weighting, max_place_period, bins, kappas)
    _with_statistics(metrics, statistic, samples, key_seed, num_resamples, confidence)
    _finish(metrics, statistic, extras, intended_goal)
    return metrics, samples

  num_seeds = trajectories.length.shape[0]
  seed_metrics, samples = jax.vmap(per_seed)(jax.random.split(key_seeds, num_seeds),
                                             trajectories)
  goal_names = (context.goal_names if context is not None
                else tuple(_goal_names(env, int(env.num_goals))))
  statistic = _EpisodeStatistic(
      tuple(sorted(samples["mean"])), tuple(sorted(samples["ratio"])),
      "meg" if context is not None else "heading", goal_names, normalisation, weighting)
  intervals = {}
  if with_interval:
    interval = stats.hierarchical_bootstrap_ci(
        key_hierarchical, samples, statistic, aggregate, num_resamples, confidence)
    intervals = {name: stats.ConfidenceInterval(interval.estimate[i], interval.low[i],
                                                interval.high[i])
                 for i, name in enumerate(statistic.names)}
  return seed_metrics, intervals


def _mode(values: np.ndarray) -> int:
  """Most common value (the smallest among ties)."""
  unique, counts = np.unique(values, return_counts=True)
  return int(unique[np.argmax(counts)])


def seed_behaviour_metrics(
    key: Array,
    trajectories: Trajectories,
    env: Any,
    env_params: Any = None,
    intended_goal: int | None = None,
    context: TabularContext | None = None,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    confidence: float = 0.95,
    aggregate: str = "mean",
    min_seeds_for_interval: int = stats.MIN_SEEDS_FOR_INTERVAL,
    identification_threshold: float = gd.DEFAULT_IDENTIFICATION_THRESHOLD,
    normalisation: str = "optimal",
    weighting: str = "episode",
    max_place_period: int = DEFAULT_MAX_PLACE_PERIOD,
    position_bins: int = DEFAULT_POSITION_BINS,
    kappas: Array | None = None,
) -> dict[str, Any]:
  """Behaviour metrics of one condition over several training seeds (one compiled call).

  Each seed's episodes are analysed on their own, exactly as :func:`behaviour_metrics` would
  (each seed its own rationality ``beta``, its own place, its own episode bootstrap); the
  per-seed values are then aggregated (:func:`~mbrl_drift.metrics.stats.aggregate_over_seeds`).
  An interval over seeds, from a hierarchical bootstrap (seeds, then episodes within seeds;
  :func:`~mbrl_drift.metrics.stats.hierarchical_bootstrap_ci`) of the statistics, is given only
  from ``min_seeds_for_interval`` seeds up; below that, every seed's value and the range.

  Args:
    key: PRNG key for the bootstraps.
    trajectories: :class:`Trajectories` with leading axes ``[G, N, ...]``: ``N`` episodes of
      each of ``G`` seeds.
    env: the environment (as in :func:`behaviour_metrics`).
    env_params: its parameters (``env.default_params`` when ``None``).
    intended_goal: the rewarded goal (``env_params.intended_goal`` by default).
    context: prebuilt :class:`TabularContext` (built here when ``None``).
    num_resamples: resamples of each bootstrap.
    confidence: two-sided coverage of the intervals.
    aggregate: across-seed aggregate of continuous metrics, ``"mean"`` or ``"iqm"``.
    min_seeds_for_interval: fewest seeds that get ``/ci_low`` and ``/ci_high``.
    identification_threshold: posterior level of the time to identification.
    normalisation: MEG normalisation.
    weighting: MEG weighting over episodes.
    max_place_period: longest final cycle that counts as a place.
    position_bins: cells per axis (continuous environments).
    kappas: von Mises grid (continuous environments).

  Returns:
    A flat dict. For every continuous metric key ``k`` of :func:`behaviour_metrics` (without
    its ``_ci_low`` / ``_ci_high``): ``k`` (the aggregate over seeds), ``k/per_seed`` (``[G]``
    numpy array), ``k/min`` and ``k/max`` (the range of the per-seed values, not an
    interval); for the statistics also ``k/per_seed_ci_low`` and ``k/per_seed_ci_high``
    (``[G]``, each seed's episode interval) and, with ``G >= min_seeds_for_interval``,
    ``k/ci_low`` and ``k/ci_high``. For integer keys (goal and cell indices): ``k`` is the most
    common value over seeds and ``k/per_seed`` every seed's. The summary keys are recomputed
    from the aggregates: ``goal/inferred_goal`` (and ``meg/`` or ``heading/``) is the goal
    with the highest aggregate score, ``outcome/off_target_goal`` and ``pursuit/goal`` the
    non-intended goal with the highest aggregate reach (``pursuit/goal_share``,
    ``pursuit/goal_efficiency``, ``pursuit/goal_meg`` are that goal's aggregates), while
    ``goal/coherence`` stays the aggregate of the per-seed coherences. ``seeds/num_seeds`` is
    ``G`` and ``behaviour/num_episodes`` is ``N``. Values are scalars (numpy or jax) except
    the ``/per_seed*`` arrays.

  Raises:
    ValueError: as :func:`behaviour_metrics`, for an unknown ``aggregate``, or trajectories
      without a seed axis.
  """
  if aggregate not in stats.AGGREGATES:
    raise ValueError(f"aggregate must be one of {stats.AGGREGATES}, got {aggregate!r}")
  if trajectories.length.ndim != 2:
    raise ValueError("seed_behaviour_metrics needs trajectories with leading axes [seeds, N], "
                     f"got length of shape {trajectories.length.shape}")
  env_params, intended_goal, context, kappas = _resolve(
      env, env_params, intended_goal, context, normalisation, weighting, kappas)
  if context is None and kappas is None:
    kappas = gd.default_kappas()
  num_seeds, num_episodes = trajectories.length.shape
  with_interval = num_seeds >= min_seeds_for_interval
  seed_metrics, intervals = _seed_metrics(
      key, trajectories, env if context is None else None, env_params, context, intended_goal,
      num_resamples, confidence, identification_threshold, normalisation, weighting,
      max_place_period, position_bins, kappas, aggregate, with_interval)
  seed_metrics = {name: np.asarray(value) for name, value in seed_metrics.items()}
  goal_names = (context.goal_names if context is not None
                else tuple(_goal_names(env, int(env.num_goals))))
  group = "meg" if context is not None else "heading"

  result: dict[str, Any] = {}
  for name, values in seed_metrics.items():
    if name.endswith(("_ci_low", "_ci_high")):
      continue
    if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
      result[name] = _mode(values)
      result[f"{name}/per_seed"] = values
      continue
    alias = f"{group}/coherence" if name == "goal/coherence" else name
    summary = stats.seed_summary(name, values, aggregate, intervals.get(alias),
                                 min_seeds_for_interval)
    result.update({k: np.asarray(v) for k, v in summary.items()})
    if f"{name}_ci_low" in seed_metrics:
      result[f"{name}/per_seed_ci_low"] = seed_metrics[f"{name}_ci_low"]
      result[f"{name}/per_seed_ci_high"] = seed_metrics[f"{name}_ci_high"]

  # Summary keys from the aggregates (the coherence stays the aggregate of per-seed values).
  coherence = {key: result[key] for key in result
               if key.startswith(("goal/coherence", f"{group}/coherence"))}
  _goal_summary(result, group, goal_names)
  result.update(coherence)
  result = {k: (np.asarray(v) if isinstance(v, jax.Array) else v) for k, v in result.items()}
  for prefix in (group, "goal"):
    result[f"{prefix}/inferred_goal"] = int(result[f"{prefix}/inferred_goal"])
  _pursuit_summary(result, goal_names, intended_goal, group)
  for name in ("task/intended_goal", "outcome/off_target_goal", "pursuit/goal"):
    if name in result:
      result[name] = int(result[name])
  if intended_goal is not None:
    # The goal summaries are one goal's aggregates: give them that goal's per-seed values,
    # range and intervals too (not each seed's own most reached goal).
    goal, intended = goal_names[result["pursuit/goal"]], goal_names[intended_goal]
    sources = {"outcome/off_target_mass": f"outcome/p_{goal}",
               "pursuit/goal_share": f"outcome/p_{goal}",
               "pursuit/goal_efficiency": f"outcome/efficiency_{goal}",
               "pursuit/goal_meg": f"{group}/{goal}",
               "pursuit/intended_efficiency": f"outcome/efficiency_{intended}"}
    for name, source in sources.items():
      for suffix in ("", "/per_seed", "/min", "/max", "/per_seed_ci_low", "/per_seed_ci_high",
                     "/ci_low", "/ci_high"):
        result.pop(name + suffix, None)
        if source + suffix in result:
          result[name + suffix] = result[source + suffix]
  result = {k: (np.asarray(v) if isinstance(v, jax.Array) else v) for k, v in result.items()}
  result["seeds/num_seeds"] = int(num_seeds)
  result["behaviour/num_episodes"] = int(num_episodes)
  return result


# ---------------------------------------------------------------------------------------------
# Reversion and reference distances from action probabilities on probe states
# ---------------------------------------------------------------------------------------------


@jax.jit
def _seed_policy_values(policy, base_policy, finetuned_policy, weights, references,
                        reversion_grid):
  def one(policy_s, base_s, finetuned_s, weights_s):
    return policy_metrics(policy_s, references, base_s, finetuned_s, weights_s, reversion_grid)
  return jax.vmap(one)(policy, base_policy, finetuned_policy, weights)


def seed_policy_metrics(
    key: Array,
    policy: Array,
    base_policy: Array,
    finetuned_policy: Array,
    weights: Array | None = None,
    references: Mapping[str, Array] | None = None,
    reversion_grid: Array | None = None,
    aggregate: str = "mean",
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    confidence: float = 0.95,
    min_seeds_for_interval: int = stats.MIN_SEEDS_FOR_INTERVAL,
) -> dict[str, Any]:
  """Reversion and reference-distance keys of a faulted agent over seeds.

  What :func:`~mbrl_drift.metrics.labels.classify_failure` needs for the *reverted* label,
  computed from action probabilities on a fixed set of ``P`` probe states (for a grid world,
  the observations of its non-terminal states, ``env.obs_for_state_index``; otherwise
  observations visited by the healthy agent): each seed's faulted policy against the same
  seed's base (pre-fine-tuning) policy and healthy fine-tuned policy, and the uniform policy
  (always added, so that an agent that became random is nearest to "uniform", not to the
  base). Per seed as :func:`policy_metrics`; over seeds as :func:`seed_behaviour_metrics`
  (an interval from a bootstrap over seeds only from ``min_seeds_for_interval`` seeds up).

  Args:
    key: PRNG key (bootstrap over seeds).
    policy: ``[G, P, A]`` the faulted agent's action probabilities (``act(...).action_probs``
      on each probe state), one row of probes per seed.
    base_policy: ``[G, P, A]`` the base policy's action probabilities on the same probes.
    finetuned_policy: ``[G, P, A]`` the healthy (unfaulted) fine-tuned agent's.
    weights: optional ``[P]`` or ``[G, P]`` non-negative probe weights.
    references: optional extra ``[P, A]`` reference policies by name (e.g. goal oracles).
    reversion_grid: ``[L]`` candidate reversion coefficients
      (``policy_compare.default_reversion_grid()`` by default).
    aggregate: ``"mean"`` or ``"iqm"`` over seeds.
    num_resamples: bootstrap resamples.
    confidence: two-sided coverage.
    min_seeds_for_interval: fewest seeds that get ``/ci_low`` and ``/ci_high``.

  Returns:
    For each key ``k`` of ``reference/uniform``, ``reference/base``, ``reference/healthy``
    (mean Jensen-Shannon distances), ``reference/<name>`` of ``references``,
    ``reversion/coefficient``, ``reversion/residual``, ``drift/kl_to_base``,
    ``drift/kl_distance_to_base`` and ``policy/entropy``: ``k`` (aggregate), ``k/per_seed``
    (``[G]``), ``k/min``, ``k/max`` and, from ``min_seeds_for_interval`` seeds up,
    ``k/ci_low``, ``k/ci_high``; plus ``seeds/num_seeds``.

  Raises:
    ValueError: if the three policies do not share the shape ``[G, P, A]``.
  """
  policy = jnp.asarray(policy, jnp.float32)
  base_policy = jnp.asarray(base_policy, jnp.float32)
  finetuned_policy = jnp.asarray(finetuned_policy, jnp.float32)
  if policy.ndim != 3 or base_policy.shape != policy.shape or (
      finetuned_policy.shape != policy.shape):
    raise ValueError("seed_policy_metrics needs policy, base_policy and finetuned_policy of one "
                     f"shape [seeds, probes, actions], got {policy.shape}, {base_policy.shape} "
                     f"and {finetuned_policy.shape}")
  if aggregate not in stats.AGGREGATES:
    raise ValueError(f"aggregate must be one of {stats.AGGREGATES}, got {aggregate!r}")
  num_seeds, num_probes, num_actions = policy.shape
  if weights is None:
    weights = jnp.ones((num_seeds, num_probes), jnp.float32)
  weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), (num_seeds, num_probes))
  references = {"uniform": policy_compare.uniform_policy(num_probes, num_actions),
                **(references or {})}
  if reversion_grid is None:
    reversion_grid = policy_compare.default_reversion_grid()
  per_seed = _seed_policy_values(policy, base_policy, finetuned_policy, weights, references,
                                 jnp.asarray(reversion_grid, jnp.float32))
  result: dict[str, Any] = {}
  names = sorted(per_seed)
  interval = None
  if num_seeds >= min_seeds_for_interval:
    matrix = jnp.stack([per_seed[name] for name in names], axis=1)  # [G, V]
    interval = stats.bootstrap_ci(
        key, matrix, _AGGREGATE_ROWS[aggregate], num_resamples, confidence)
  for i, name in enumerate(names):
    seed_interval = None if interval is None else stats.ConfidenceInterval(
        interval.estimate[i], interval.low[i], interval.high[i])
    summary = stats.seed_summary(name, per_seed[name], aggregate, seed_interval,
                                 min_seeds_for_interval)
    result.update({k: np.asarray(v) for k, v in summary.items()})
  result["seeds/num_seeds"] = int(num_seeds)
  return result


def _mean_rows(x: Array) -> Array:
  return stats.aggregate_over_seeds(x, "mean")


def _iqm_rows(x: Array) -> Array:
  return stats.aggregate_over_seeds(x, "iqm")


_AGGREGATE_ROWS = {"mean": _mean_rows, "iqm": _iqm_rows}


__all__ = [
    "DEFAULT_MAX_PLACE_PERIOD",
    "TabularContext",
    "behaviour_metrics",
    "cell_meg",
    "policy_metrics",
    "reference_policies",
    "seed_behaviour_metrics",
    "seed_policy_metrics",
    "tabular_context",
]
