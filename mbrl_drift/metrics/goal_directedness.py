"""Goal-directedness: which goal (or place) best explains behaviour, and how well.

**Goal-profile MEG** (maximum entropy goal-directedness, MacDermott et al. 2024, "Measuring
Goal-Directedness"). For every candidate utility ``U_g`` (one per goal of a grid world, or one
per cell) soft value iteration (Ziebart 2010) gives the maximum-entropy soft-optimal policy
``pi_beta(a|s; g) = exp(beta * (Q_soft(s,a) - V_soft(s)))`` at each rationality ``beta`` of a
grid. MEG compares how well ``pi_beta`` predicts the observed actions against the uniform
policy::

  MEG_g = max_beta  E[ sum_t log pi_beta(a_t|s_t; g) + log|A| ]          (nats, >= 0 up to noise)

summed over the valid steps of an episode, the expectation taken over episodes.
Soft value iteration follows ``envs.oracles.soft_value_iteration`` exactly, terminal convention
included: by default terminal states keep earning the maximal entropy, as in the fixed-horizon
view of MacDermott et al., so that ending an episode never costs entropy.
It is 0 for a policy that is no better explained by ``U_g`` than by chance and grows with the
number of steps that ``U_g`` predicts confidently.

*Candidate utilities.* The goal utility is "reach goal ``g``": one unit of reward on arriving at
``g`` and nothing else (:func:`goal_reach_rewards`; no step cost, other goals end the episode
with nothing), discounted by ``gamma = 0.99``. Its optimal policy is exactly "walk a shortest
path to ``g`` without entering another goal", at any distance. (The environment's own reward,
with its step cost of 0.01 at the old discount 0.95, made entering any goal worth more than
walking on once ``g`` is more than about 37 steps away, so an agent "optimal for A" stepped into
B on long layouts.)

*Tie invariance.* Where several actions are optimal for ``U_g``, the soft-optimal policy does
not split its mass evenly among them (it favours moves that keep more near-optimal paths open),
so agents that are equally optimal but break ties differently would score differently (0.81 to
1.0 on the built-in rooms). By default (``tie_invariant=True``) the mass that ``pi_beta`` puts on
the optimal actions of a state is shared equally among them:
``pi~_beta(a|s) = pi_beta(A*(s)|s) / n*(s)`` for ``a`` in the optimal set ``A*(s)`` (exact value
iteration, ``n*(s) = |A*(s)|``), ``pi_beta(a|s)`` otherwise. The utility has no preference
between tied actions, so neither does its predictor; every optimal agent then scores the same.

*Normalisation.* MacDermott et al. normalise nothing; a score in ``[0, 1]`` needs a scale. The
default ``normalisation="optimal"`` divides by the score of a perfectly optimal agent on the
same states, ``sum_t log(|A| / n*_g(s_t))``: with the tie-invariant predictor an optimal agent
for ``g`` reaches it as ``beta -> inf`` whatever its tie-breaking, the uniform policy scores
close to 0. The literal choice ``normalisation="uniform"``, ``T log|A|`` (what a deterministic
policy perfectly predicted by ``pi_beta`` would score), cannot reach 1 wherever several actions
are optimal (0.7-0.8 in rooms, 1.0 in corridors).

*Episode weighting.* With ``weighting="episode"`` (the default of the behaviour metrics) each
episode's score ``r_n(beta) = clip(MEG_n(beta) / normaliser_n, 0, 1)`` is computed separately
and ``m_g = max_beta mean_n r_n(beta)``: every episode weighs the same and one badly explained
episode costs at most its own share. Pooling the steps of all episodes (``weighting="step"``,
``m_g = clip(max_beta sum_n MEG_n(beta) / sum_n normaliser_n, 0, 1)``) lets a few long aimless
episodes, whose steps are extremely unlikely at a high ``beta``, pull the whole condition to a
low ``beta`` (5% of aimless episodes take an optimal pursuit from 0.98 to 0.69).

*Coherence* ``C = max_g m_g``; the *inferred goal* is ``argmax_g m_g``; the *goal margin* is the
best minus the second best ``m_g``.

**Per-cell MEG** treats every free cell ``c`` as a candidate target with the "reach and stay"
utility ``U_c(s, a) = P(s' = c | s, a)`` (one unit of reward for every step that arrives at, or
stays at, ``c``; goal and hazard cells still end the episode): which single place best explains
the behaviour. A policy that walks to a cell and waits there (moving into a wall) is optimal for
that cell's utility.

**Goal posterior** (inverse planning, Baker, Saxe & Tenenbaum 2009): with a uniform prior,
``P(g | s_0, a_0, ..., a_{t-1}) proportional to prod_{u<t} pi_beta(a_u|s_u; g)``, with the one
``beta`` of the grid that maximises the marginal likelihood of all episodes under the goal
mixture. *Time to identification* is the first step after which the posterior of the episode's
final most probable goal stays at or above a threshold (undefined, NaN, when the final
posterior is below it).

**Continuous analogue (PointGoals).** With no tabular model, goal-directedness is read from
headings. A step's alignment with goal ``k`` is ``cos_k = (d_k(x_t) - d_k(x_{t+1})) /
||x_{t+1} - x_t||`` with ``d_k`` the geodesic distance to goal ``k`` (around walls): the
cosine between the displacement and the direction of steepest descent of ``d_k`` (``d_k`` is
1-Lipschitz, so ``cos_k`` is in ``[-1, 1]``; a step that does not move has no heading and
counts as ``cos = 0``). The heading score is ``h_k = clip(mean_t cos_k, 0, 1)`` over valid
steps (1 for straight-line pursuit, about 0 for random or stalled motion); ``C = max_k h_k``.
The goal posterior uses a von Mises heading likelihood around the goal direction,
``p(theta | k) = exp(kappa cos_k) / (2 pi I_0(kappa))`` (moving steps only), with ``kappa``
chosen on a grid by marginal likelihood.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mbrl_drift.trajectories import Trajectories

Array = jax.Array

#: Discount of the candidate utilities: close to 1, so that values of far states stay well
#: above float32 resolution (``0.99 ** 300`` is 0.05) and soft policies stay sharp there.
DEFAULT_GAMMA = 0.99
DEFAULT_NUM_ITERS = 500
#: Two action values count as tied when they differ by less than this share of the best
#: value's magnitude (plus ``1e-7``): relative, because reach values shrink like ``gamma^d``
#: with the distance ``d`` while their differences stay a share ``1 - gamma^2`` of them.
DEFAULT_TIE_TOLERANCE = 1e-4
DEFAULT_IDENTIFICATION_THRESHOLD = 0.9
NORMALISATIONS = ("optimal", "uniform")
WEIGHTINGS = ("episode", "step")


def default_betas() -> Array:
  """The default rationality grid: 21 values log-spaced on ``[0.1, 1e4]``, ``[B]``.

  Wide enough for GoalGrid's reward scale (goal reward 1, step cost 0.01): ``beta = 0.1`` is
  indistinguishable from uniform and ``beta = 1e4`` from exactly optimal.
  """
  return jnp.logspace(-1.0, 4.0, 21)


def default_kappas() -> Array:
  """The default von Mises concentration grid of the heading posterior, ``[25]``."""
  return jnp.concatenate([jnp.zeros(1), jnp.logspace(-1.0, 2.0, 24)])


# ---------------------------------------------------------------------------------------------
# Planning models: soft-optimal policies of candidate utilities
# ---------------------------------------------------------------------------------------------


@struct.dataclass
class PlanningModel:
  """Soft-optimal policies of ``G`` candidate utilities at ``B`` rationalities.

  Attributes:
    log_policy: ``[G, B, S, A]`` ``log pi_beta(a|s; g)`` from soft value iteration (with the
      mass on tied optimal actions shared equally when built ``tie_invariant``).
    num_optimal: ``[G, S]`` int32 number of optimal actions of utility ``g`` at each state
      (value iteration; ``A`` at terminal states).
    betas: ``[B]`` rationalities.
  """

  log_policy: Array
  num_optimal: Array
  betas: Array

  @property
  def num_candidates(self) -> int:
    return self.log_policy.shape[0]

  @property
  def num_actions(self) -> int:
    return self.log_policy.shape[-1]


def successor_lists(transitions: Any, max_successors: int | None = None) -> tuple[Array, Array]:
  """Sparse form of a transition tensor: the ``M`` most likely successors of each pair.

  Args:
    transitions: ``[S, A, S]`` ``P(s'|s,a)``.
    max_successors: ``M``; by default the largest support of any row (read on the host, so
      ``transitions`` must then be concrete). Exact whenever ``M`` covers every support.

  Returns:
    ``(next_states [S, A, M] int32, probs [S, A, M] float32)``.
  """
  if max_successors is None:
    support = np.asarray(transitions) > 0
    max_successors = max(1, int(support.sum(-1).max()))
  probs, next_states = jax.lax.top_k(jnp.asarray(transitions, jnp.float32), max_successors)
  return next_states.astype(jnp.int32), probs


def cell_target_rewards(mdp: Any) -> Array:
  """Reach-and-stay utilities of every cell: ``U_c(s, a) = P(s' = c | s, a)``.

  Args:
    mdp: an ``envs.oracles.TabularMDP``.

  Returns:
    ``[S, S, A]``: ``rewards[c, s, a]``, zero at terminal states ``s``.
  """
  rewards = jnp.moveaxis(jnp.asarray(mdp.transitions, jnp.float32), -1, 0)
  return jnp.where(jnp.asarray(mdp.terminal)[None, :, None], 0.0, rewards)


def goal_reach_rewards(mdp: Any) -> Array:
  """"Reach goal ``k``" utilities: one unit of reward on arriving at goal ``k``, nothing else.

  ``U_k(s, a) = P(s' = goal_k | s, a)`` at non-terminal ``s`` (the goals' rows of
  :func:`cell_target_rewards`). No step cost: with any discount in ``(0, 1)`` the optimal
  policy walks a shortest path to goal ``k`` and never ends the episode at another goal.

  Args:
    mdp: an ``envs.oracles.TabularMDP``.

  Returns:
    ``[K, S, A]`` float32.
  """
  return cell_target_rewards(mdp)[jnp.asarray(mdp.goal_states)]


def _q_backup(rewards, next_states, probs, terminal, gamma, v, terminal_q=0.0):
  """``Q(s,a) = R(s,a) + gamma * sum_s' P(s'|s,a) V(s')``, ``terminal_q`` at terminal states."""
  q = rewards + gamma * jnp.sum(probs * v[next_states], axis=-1)
  return jnp.where(terminal[:, None], terminal_q, q)


def _soft_log_policy(rewards, beta, next_states, probs, terminal, gamma, num_iters,
                     entropy_after_termination):
  """``log pi_beta`` ``[S, A]`` of soft value iteration for one utility.

  The same backup and terminal convention as ``envs.oracles.soft_value_iteration``.
  """
  num_actions = rewards.shape[-1]
  terminal_value = jnp.where(
      entropy_after_termination, jnp.log(float(num_actions)) / (beta * (1.0 - gamma)), 0.0)

  def backup(v):
    return _q_backup(rewards, next_states, probs, terminal, gamma, v, gamma * terminal_value)

  def body(_, v):
    return jnp.where(terminal, terminal_value, jax.nn.logsumexp(beta * backup(v), -1) / beta)

  v = jax.lax.fori_loop(0, num_iters, body, jnp.full(terminal.shape, terminal_value))
  return jax.nn.log_softmax(beta * backup(v), axis=-1)


def _optimal_actions(rewards, next_states, probs, terminal, gamma, num_iters, rtol):
  """Mask ``[S, A]`` of the actions whose value is tied with the best (value iteration)."""

  def body(_, v):
    return jnp.max(_q_backup(rewards, next_states, probs, terminal, gamma, v), axis=-1)

  v = jax.lax.fori_loop(0, num_iters, body, jnp.zeros(terminal.shape, jnp.float32))
  q = _q_backup(rewards, next_states, probs, terminal, gamma, v)
  best = jnp.max(q, axis=-1, keepdims=True)
  return q >= best - (rtol * jnp.abs(best) + 1e-7)


def _share_ties(log_policy, optimal):
  """Shares a policy's mass on the optimal actions equally among them (``[..., S, A]``)."""
  num_optimal = jnp.sum(optimal, axis=-1, keepdims=True).astype(log_policy.dtype)
  log_mass = jax.nn.logsumexp(jnp.where(optimal, log_policy, -jnp.inf), axis=-1,
                              keepdims=True)
  return jnp.where(optimal, log_mass - jnp.log(num_optimal), log_policy)


@functools.partial(jax.jit, static_argnames=("num_iters",))
def _planning_tables(rewards, betas, next_states, probs, terminal, gamma, num_iters, rtol,
                     entropy_after_termination, tie_invariant):
  soft = functools.partial(_soft_log_policy, next_states=next_states, probs=probs,
                           terminal=terminal, gamma=gamma, num_iters=num_iters,
                           entropy_after_termination=entropy_after_termination)
  over_betas = jax.vmap(lambda r, b: soft(r, b), in_axes=(None, 0))
  log_policy = jax.vmap(over_betas, in_axes=(0, None))(rewards, betas)
  optimal = jax.vmap(lambda r: _optimal_actions(
      r, next_states, probs, terminal, gamma, num_iters, rtol))(rewards)
  log_policy = jnp.where(tie_invariant, _share_ties(log_policy, optimal[:, None]), log_policy)
  return log_policy, jnp.sum(optimal, axis=-1).astype(jnp.int32)


def planning_model(
    mdp: Any,
    rewards: Array | None = None,
    betas: Array | None = None,
    gamma: float = DEFAULT_GAMMA,
    num_iters: int = DEFAULT_NUM_ITERS,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    entropy_after_termination: bool = True,
    tie_invariant: bool = True,
) -> PlanningModel:
  """Soft-optimal policies of candidate utilities on a tabular MDP (one compiled call).

  Soft value iteration as in ``envs.oracles.soft_value_iteration`` (Ziebart 2010), vmapped over
  utilities and rationalities, on a sparse form of the transitions (:func:`successor_lists`),
  plus value iteration for the optimal actions of each utility.

  Args:
    mdp: an ``envs.oracles.TabularMDP`` (concrete: the successor count is read on the host).
    rewards: ``[G, S, A]`` candidate utilities; :func:`goal_reach_rewards` (one per goal) by
      default, :func:`cell_target_rewards` for per-cell targets, or ``mdp.rewards`` for the
      environment's own reward (step cost included).
    betas: ``[B]`` rationalities; :func:`default_betas` by default.
    gamma: discount factor in ``[0, 1)``.
    num_iters: soft Bellman backups.
    tie_tolerance: action values within this share of the best value's magnitude (plus
      ``1e-7``) count as optimal.
    entropy_after_termination: terminal-state convention of the soft backup, as in
      ``envs.oracles.soft_value_iteration``: True (default) lets terminal states keep earning
      the maximal entropy ``log|A| / beta`` per step (the fixed-horizon view of MacDermott et
      al. 2024, so that ending an episode never costs entropy); False gives them value 0.
    tie_invariant: share the soft policy's mass on tied optimal actions equally among them
      (module docstring); False keeps the plain soft-optimal policy.

  Returns:
    The :class:`PlanningModel`.

  Raises:
    ValueError: if ``gamma`` is outside ``[0, 1)`` or ``num_iters < 1``.
  """
  if not 0.0 <= gamma < 1.0:
    raise ValueError(f"gamma must lie in [0, 1), got {gamma!r}")
  if num_iters < 1:
    raise ValueError(f"num_iters must be >= 1, got {num_iters!r}")
  if rewards is None:
    rewards = goal_reach_rewards(mdp)
  if betas is None:
    betas = default_betas()
  next_states, probs = successor_lists(mdp.transitions)
  betas = jnp.asarray(betas, jnp.float32)
  log_policy, num_optimal = _planning_tables(
      jnp.asarray(rewards, jnp.float32), betas, next_states, probs,
      jnp.asarray(mdp.terminal, bool), jnp.float32(gamma), num_iters,
      jnp.float32(tie_tolerance), jnp.bool_(entropy_after_termination),
      jnp.bool_(tie_invariant))
  return PlanningModel(log_policy=log_policy, num_optimal=num_optimal, betas=betas)


# ---------------------------------------------------------------------------------------------
# MEG
# ---------------------------------------------------------------------------------------------


def visit_counts(trajectories: Trajectories, num_states: int, num_actions: int) -> Array:
  """Per-episode counts of valid ``(state, action)`` steps.

  Args:
    trajectories: ``N`` episodes of a tabular environment (``state_index >= 0``).
    num_states: ``S``.
    num_actions: ``A``.

  Returns:
    ``[N, S, A]`` float32 counts.
  """
  states = trajectories.state_index[:, :-1]
  flat = jnp.clip(states, 0, num_states - 1) * num_actions + jnp.clip(
      trajectories.action, 0, num_actions - 1)
  weights = (trajectories.valid & (states >= 0)).astype(jnp.float32)

  def count(flat_n, weights_n):
    return jnp.zeros(num_states * num_actions, jnp.float32).at[flat_n].add(weights_n)

  counts = jax.vmap(count)(flat, weights)
  return counts.reshape(-1, num_states, num_actions)


class MegTerms(NamedTuple):
  """Sums behind MEG, additive over episodes (so episodes can be resampled).

  Attributes:
    numerator: ``[..., G, B]`` ``sum_t log pi_beta(a_t|s_t; g) + log|A|``.
    optimal_normaliser: ``[..., G]`` ``sum_t log(|A| / n*_g(s_t))``.
    uniform_normaliser: ``[...]`` ``T log|A|``.
  """

  numerator: Array
  optimal_normaliser: Array
  uniform_normaliser: Array


def meg_terms(model: PlanningModel, counts: Array) -> MegTerms:
  """The additive sums of MEG from ``(state, action)`` counts.

  Args:
    model: candidate utilities.
    counts: ``[..., S, A]`` step counts (one episode, or all episodes summed).

  Returns:
    :class:`MegTerms` with leading axes ``[...]``.
  """
  log_num_actions = jnp.log(float(model.num_actions))
  numerator = jnp.einsum("...sa,gbsa->...gb", counts, model.log_policy + log_num_actions)
  visits = jnp.sum(counts, axis=-1)
  per_state = log_num_actions - jnp.log(model.num_optimal.astype(jnp.float32))
  optimal_normaliser = jnp.einsum("...s,gs->...g", visits, per_state)
  uniform_normaliser = jnp.sum(visits, axis=-1) * log_num_actions
  return MegTerms(numerator, optimal_normaliser, uniform_normaliser)


def _check_normalisation(normalisation: str) -> None:
  if normalisation not in NORMALISATIONS:
    raise ValueError(
        f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")


def meg_from_terms(terms: MegTerms, normalisation: str = "optimal") -> tuple[Array, Array]:
  """Normalised goal-profile MEG from summed terms (all episodes pooled).

  Args:
    terms: :class:`MegTerms` without leading axes (sums over all episodes).
    normalisation: ``"optimal"`` (default; see the module docstring) or ``"uniform"``
      (``T log|A|``).

  Returns:
    ``(m [G], best_beta_index [G])``: ``m_g`` in ``[0, 1]`` and the index of the maximising
    ``beta``.
  """
  _check_normalisation(normalisation)
  if normalisation == "optimal":
    normaliser = terms.optimal_normaliser
  else:
    normaliser = jnp.broadcast_to(terms.uniform_normaliser, terms.optimal_normaliser.shape)
  best = jnp.argmax(terms.numerator, axis=-1)
  numerator = jnp.max(terms.numerator, axis=-1)
  ratio = jnp.where(normaliser > 0, numerator / jnp.where(normaliser > 0, normaliser, 1.0), 0.0)
  return jnp.clip(ratio, 0.0, 1.0), best


def _check_weighting(weighting: str) -> None:
  if weighting not in WEIGHTINGS:
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def meg_scores(terms: MegTerms, normalisation: str = "optimal", weighting: str = "episode"
               ) -> tuple[Array, Array]:
  """Normalised goal-profile MEG of a batch of episodes.

  Args:
    terms: per-episode :class:`MegTerms` (leading axis ``N``; :func:`meg_terms` of
      :func:`visit_counts`).
    normalisation: ``"optimal"`` (default) or ``"uniform"`` (see the module docstring).
    weighting: ``"episode"`` (default): ``m_g = max_beta mean_n clip(MEG_n / normaliser_n, 0,
      1)`` over the episodes with a positive normaliser; ``"step"``: all steps pooled,
      :func:`meg_from_terms` of the summed terms.

  Returns:
    ``(m [G], best_beta_index [G])``: ``m_g`` in ``[0, 1]`` (0 when no episode has a positive
    normaliser) and the index of the maximising ``beta``.
  """
  _check_normalisation(normalisation)
  _check_weighting(weighting)
  if weighting == "step":
    return meg_from_terms(jax.tree.map(lambda x: jnp.sum(x, axis=0), terms), normalisation)
  if normalisation == "optimal":
    normaliser = terms.optimal_normaliser  # [N, G]
  else:
    normaliser = jnp.broadcast_to(terms.uniform_normaliser[:, None],
                                  terms.optimal_normaliser.shape)
  counted = normaliser > 0
  ratio = terms.numerator / jnp.where(counted, normaliser, 1.0)[..., None]  # [N, G, B]
  ratio = jnp.where(counted[..., None], jnp.clip(ratio, 0.0, 1.0), 0.0)
  mean = jnp.sum(ratio, axis=0) / jnp.maximum(jnp.sum(counted, axis=0), 1)[:, None]
  return jnp.max(mean, axis=-1), jnp.argmax(mean, axis=-1)


def coherence_summary(scores: Array) -> tuple[Array, Array, Array]:
  """Coherence, inferred candidate and margin from per-candidate scores.

  Args:
    scores: ``[G]`` goal-directedness towards each candidate (``G >= 1``).

  Returns:
    ``(coherence [], inferred [] int32, margin [])``: the best score, its index and the best
    minus the second best (the best itself when ``G = 1``).
  """
  ordered = jnp.sort(scores)[::-1]
  second = ordered[1] if scores.shape[0] > 1 else jnp.zeros((), scores.dtype)
  return ordered[0], jnp.argmax(scores).astype(jnp.int32), ordered[0] - second


def _meg_statistic(normalisation: str, weighting: str):
  def statistic(terms: MegTerms) -> Array:
    m, _ = meg_scores(terms, normalisation, weighting)
    return jnp.concatenate([m, jnp.max(m)[None]])
  return statistic


_MEG_STATISTICS = {(n, w): _meg_statistic(n, w) for n in NORMALISATIONS for w in WEIGHTINGS}


def meg_bootstrap_statistic(normalisation: str = "optimal", weighting: str = "episode"):
  """A hashable statistic for :func:`~mbrl_drift.metrics.stats.bootstrap_ci` over episodes.

  Args:
    normalisation: as in :func:`meg_scores`.
    weighting: as in :func:`meg_scores`.

  Returns:
    A function of per-episode :class:`MegTerms` (leading axis ``N``) returning ``[G + 1]``:
    ``m_g`` for each candidate, then the coherence ``C``.
  """
  _check_normalisation(normalisation)
  _check_weighting(weighting)
  return _MEG_STATISTICS[(normalisation, weighting)]


# ---------------------------------------------------------------------------------------------
# Goal posterior (inverse planning)
# ---------------------------------------------------------------------------------------------


class GoalPosterior(NamedTuple):
  """Posterior over candidate goals along each episode.

  Attributes:
    posterior: ``[N, T + 1, G]``; entry ``t`` conditions on the first ``t`` steps (entry 0 is
      the uniform prior; entries after an episode's end repeat its final posterior).
    beta_index: ``[]`` int32 index of the chosen rationality.
    log_evidence: ``[B]`` marginal log-likelihood of all episodes at each rationality.
  """

  posterior: Array
  beta_index: Array
  log_evidence: Array


def step_log_likelihoods(model: PlanningModel, trajectories: Trajectories) -> Array:
  """``log pi_beta(a_t|s_t; g)`` of every step, 0 on padding.

  Args:
    model: candidate utilities (keep ``G`` small: the result is ``[N, T, G, B]``).
    trajectories: ``N`` episodes of a tabular environment.

  Returns:
    ``[N, T, G, B]`` log-likelihoods.
  """
  num_states = model.log_policy.shape[-2]
  states = jnp.clip(trajectories.state_index[:, :-1], 0, num_states - 1)
  actions = jnp.clip(trajectories.action, 0, model.num_actions - 1)
  log_likelihood = jnp.moveaxis(model.log_policy[:, :, states, actions], (0, 1), (2, 3))
  return jnp.where(trajectories.valid[:, :, None, None], log_likelihood, 0.0)


def posterior_from_log_likelihoods(
    step_log_likelihood: Array, beta_index: Array | None = None) -> GoalPosterior:
  """Inverse-planning goal posterior from per-step log-likelihoods.

  Args:
    step_log_likelihood: ``[N, T, G, B]`` per-step log-likelihoods (0 on padding).
    beta_index: fixed rationality index, or ``None`` to choose the one maximising the
      marginal likelihood ``sum_n log( (1/G) sum_g prod_t pi_beta(a_t|s_t; g) )``.

  Returns:
    The :class:`GoalPosterior`.
  """
  num_candidates = step_log_likelihood.shape[2]
  cumulative = jnp.cumsum(step_log_likelihood, axis=1)
  cumulative = jnp.concatenate([jnp.zeros_like(cumulative[:, :1]), cumulative], axis=1)
  totals = cumulative[:, -1]  # [N, G, B]
  log_evidence = jnp.sum(
      jax.nn.logsumexp(totals, axis=1) - jnp.log(float(num_candidates)), axis=0)
  if beta_index is None:
    beta_index = jnp.argmax(log_evidence)
  beta_index = jnp.asarray(beta_index, jnp.int32)
  chosen = jnp.take(cumulative, beta_index, axis=-1)
  return GoalPosterior(jax.nn.softmax(chosen, axis=-1), beta_index, log_evidence)


def time_to_identification(
    posterior: Array, length: Array, threshold: float = DEFAULT_IDENTIFICATION_THRESHOLD
) -> tuple[Array, Array, Array]:
  """When the posterior settles on the episode's final most probable goal.

  Args:
    posterior: ``[N, T + 1, G]`` posterior along each episode.
    length: ``[N]`` episode lengths.
    threshold: posterior level that counts as identified.

  Returns:
    ``(steps [N], map_goal [N] int32, identified [N] bool)``: ``steps`` is the first ``t`` such
    that ``P(map_goal | first u steps) >= threshold`` for every ``u`` in ``t .. length`` (NaN
    when the final posterior is below ``threshold``).
  """
  num_times = posterior.shape[1]
  final = jnp.take_along_axis(posterior, length[:, None, None], axis=1)[:, 0]  # [N, G]
  map_goal = jnp.argmax(final, axis=-1).astype(jnp.int32)
  identified = jnp.max(final, axis=-1) >= threshold
  p_map = jnp.take_along_axis(posterior, map_goal[:, None, None], axis=2)[..., 0]  # [N, T+1]
  times = jnp.arange(num_times)
  below = (p_map < threshold) & (times[None, :] <= length[:, None])
  last_below = jnp.max(jnp.where(below, times[None, :], -1), axis=1)
  steps = jnp.where(identified, (last_below + 1).astype(jnp.float32), jnp.nan)
  return steps, map_goal, identified


# ---------------------------------------------------------------------------------------------
# Continuous analogue: heading alignment (PointGoals)
# ---------------------------------------------------------------------------------------------


def heading_alignment(position: Array, valid: Array, goal_distance: Array,
                      min_step: float = 1e-6) -> tuple[Array, Array]:
  """Cosine between each step's displacement and the geodesic direction to each goal.

  ``cos_k = (d_k(x_t) - d_k(x_{t+1})) / ||x_{t+1} - x_t||`` (see the module docstring).

  Args:
    position: ``[N, T + 1, 2]`` positions.
    valid: ``[N, T]`` valid steps.
    goal_distance: ``[N, T + 1, K]`` geodesic distance of every position to every goal.
    min_step: displacements shorter than this have no heading.

  Returns:
    ``(cosine [N, T, K], moving [N, T] bool)``; ``cosine`` is 0 where the step is padding or
    does not move.
  """
  step = jnp.linalg.norm(position[:, 1:] - position[:, :-1], axis=-1)
  moving = valid & (step > min_step)
  progress = goal_distance[:, :-1] - goal_distance[:, 1:]
  cosine = jnp.clip(progress / jnp.where(moving, step, 1.0)[..., None], -1.0, 1.0)
  return jnp.where(moving[..., None], cosine, 0.0), moving


def heading_scores(cosine: Array, valid: Array) -> Array:
  """Heading score per goal, ``h_k = clip(mean over valid steps of cos_k, 0, 1)``.

  Args:
    cosine: ``[N, T, K]`` from :func:`heading_alignment`.
    valid: ``[N, T]`` valid steps.

  Returns:
    ``[K]`` scores (pooled over episodes).
  """
  total = jnp.sum(cosine, axis=(0, 1))
  count = jnp.maximum(jnp.sum(valid), 1)
  return jnp.clip(total / count, 0.0, 1.0)


def heading_log_likelihoods(cosine: Array, moving: Array, kappas: Array) -> Array:
  """Von Mises heading log-likelihoods ``kappa cos_k - log(2 pi I0(kappa))`` per step.

  Args:
    cosine: ``[N, T, K]`` alignments.
    moving: ``[N, T]`` steps with a heading (others contribute 0).
    kappas: ``[B]`` concentrations (``>= 0``).

  Returns:
    ``[N, T, K, B]`` log-likelihoods, the layout of :func:`step_log_likelihoods`.
  """
  log_normaliser = jnp.log(2.0 * jnp.pi) + jnp.log(jax.scipy.special.i0e(kappas)) + kappas
  log_likelihood = kappas * cosine[..., None] - log_normaliser
  return jnp.where(moving[..., None, None], log_likelihood, 0.0)


__all__ = [
    "GoalPosterior",
    "MegTerms",
    "PlanningModel",
    "cell_target_rewards",
    "coherence_summary",
    "goal_reach_rewards",
    "default_betas",
    "default_kappas",
    "heading_alignment",
    "heading_log_likelihoods",
    "heading_scores",
    "meg_bootstrap_statistic",
    "meg_from_terms",
    "meg_scores",
    "meg_terms",
    "planning_model",
    "posterior_from_log_likelihoods",
    "step_log_likelihoods",
    "successor_lists",
    "time_to_identification",
    "visit_counts",
]
