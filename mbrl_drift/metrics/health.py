"""Component health: is each part of a (possibly faulted) planning agent still doing its job?

Behaviour metrics (:mod:`~mbrl_drift.metrics.behaviour`) say *what* an agent does; these say
*which component* makes it do so. They read the agent's own components on real data:

**World model** (:func:`world_model_errors`), on evaluation episodes recorded with
``record_obs=True``. From every valid step ``t`` the model unrolls the real actions from
``z_t = enc(o_t)`` for ``k = 1 .. H`` steps, ``(z^_{t+k}, r^_{t+k-1}, c^_{t+k-1}) =
model(z^_{t+k-1}, a_{t+k-1})``, and is compared with what really happened, exactly as the training
losses do (TD-MPC, Hansen et al. 2022), but on episodes it was not trained on:

* ``latent_error_k``: ``mean_d (z^_{t+k} - enc(o_{t+k}))_d^2``, the per-dimension squared error
  of the latent-consistency loss; ``latent_error_relative_k`` divides it by the mean
  per-dimension variance of ``enc(o)`` over the episodes' observations, so that an encoder that
  collapses every observation to one point cannot look healthy (it reports NaN there);
* ``reward_error_k``: ``(r^_{t+k-1} - r_{t+k-1})^2``;
* ``termination_accuracy_k`` (``sigmoid(c) > 1/2`` against the real episode end),
  ``termination_xent_k`` (binary cross-entropy in nats) and ``termination_recall_k`` (accuracy
  on the steps that really ended their episode by termination; NaN when there are none);
* ``decoder_error_k`` for ``k = 0 .. H`` when the agent has a decoder: ``mean_d (dec(z) - o)_d^2``
  with ``z = enc(o_t)`` for ``k = 0`` (reconstruction) and ``z = z^_{t+k}`` along the unroll.

A pair ``(t, k)`` counts only when the steps ``t .. t + k - 1`` all happened in the same episode
(``model_pairs_k`` counts them). Means are over pairs pooled across episodes.

**Value calibration** (:func:`value_calibration`): the predicted ``V(enc(o_t))`` against the
discounted Monte-Carlo return ``G_t = sum_{i >= t} gamma^(i - t) r_i`` of the same episode
(Sutton & Barto 2018, eq. 3.8; ``gamma = agent.gamma``). A time-limit truncation
censors ``G_t``: the rewards after the cut are unknown, and filling them in with the agent's own
value would grade the value function by itself. Steps of truncated episodes are therefore left
out (``value_censored_share`` reports how many), which conditions the comparison on episodes that
terminated: read it as "calibration along the episodes that ended", and expect NaN when none did.

**Value against the true optimal values** (:func:`value_goal_alignment`, grid worlds with a
tabular export). Over the probe states (every non-terminal tabular state), the Spearman rank
correlation (Spearman 1904) of the predicted values with ``V*_k``, the exact optimal values of
goal ``k`` from value iteration (rewards as in ``env.tabular``: goal ``k`` treated as the
intended one). Ranks discard the value scale, which a fault may change without changing what the
value function prefers. Terminal states are left out: the value of a goal observation is never
trained (no bootstrap after termination) and ``V*`` is 0 there by convention.

* The **value-implied goal** is the goal whose ``V*_k`` the learned values rank-correlate with
  best (``value_implied_margin``: best minus second-best correlation).
* The **value peak goal** is the goal with the highest mean predicted value over its *approach
  states*: the non-terminal states from which one move enters the goal. Under ``V*_k`` those
  states hold the largest values of all (one step from the reward), so this is the goal the value
  function "points at" locally, the "goal with the highest predicted value" of docs/design.md
  ("Metrics"). It reads raw values, so it can disagree with the rank-based implied goal when
  values are mis-scaled.

**Planner** (:func:`planner_health`, discrete actions): the planner's greedy action on every probe
state at every horizon ``h = 1 .. max_horizon`` (through the agent's ``act``, so
faults in any component and every planner type are seen as the agent sees them):

* ``planner_horizon_agreement_h``: share of probe states where the greedy action at horizon
  ``h`` equals the one at ``h + 1``; a world model and a value that agree with each other give
  actions that do not flip when the planner looks one step further;
* ``planner_agreement_with_max_horizon``: the same between the acting horizon and the longest
  horizon the planner supports (1 by construction when they are equal);
* ``planner_optimal_share`` (grid worlds): share of probe states where the greedy action at the
  acting horizon is among the exactly optimal actions of the intended goal (ties within
  ``atol``); ``planner_optimal_share_<goal>`` for every goal and ``planner_implied_goal``, the
  goal the planner's choices serve best;
* ``planner_nonfinite_share``: share of probe states where the plan met a non-finite score.

:func:`component_health` returns all of it in one flat ``"health/..."`` dict, with percentile
bootstrap intervals over episodes (:mod:`~mbrl_drift.metrics.stats`) for the episode means. The
probe-state metrics are exact functions of the parameters and carry no interval.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from envs import oracles
from mbrl_drift.agents.base import Agent, Params, eval_args
from mbrl_drift.metrics import stats

Array = jax.Array

DEFAULT_NUM_RESAMPLES = 1000
#: Two action values closer than this count as tied (as in ``envs.oracles.greedy_policy``).
DEFAULT_OPTIMAL_ATOL = 1e-5


class EpisodeBatch(NamedTuple):
  """Real episodes for the health metrics (a :class:`~mbrl_drift.trajectories.Trajectories`
  recorded with ``record_obs=True`` has these fields and can be passed instead).

  Step ``t`` goes from ``obs[:, t]`` with ``action[:, t]`` to ``obs[:, t + 1]``; valid steps form
  a prefix of each episode.

  Attributes:
    obs: ``[N, T + 1, obs_dim]`` float32 observations.
    action: ``[N, T]`` int (discrete) or ``[N, T, action_dim]`` float32 environment actions.
    reward: ``[N, T]`` float32 rewards.
    valid: ``[N, T]`` bool, True where step ``t`` happened.
    terminated: ``[N]`` bool, True when the episode ended by termination (its last valid step
      is then a terminal transition); False for a time-limit truncation.
  """

  obs: Array
  action: Array
  reward: Array
  valid: Array
  terminated: Array


def episode_batch(episodes: Any, agent: Agent | None = None) -> EpisodeBatch:
  """The five fields the health metrics read, checked (host side; shapes only).

  Args:
    episodes: an :class:`EpisodeBatch`, a :class:`~mbrl_drift.trajectories.Trajectories` or any
      object with ``obs``, ``action``, ``reward``, ``valid`` and ``terminated``.
    agent: when given, the observation size is checked against ``agent.spec.obs_dim``.

  Returns:
    An :class:`EpisodeBatch`.

  Raises:
    ValueError: if the observations were not recorded (``evaluate(..., record_obs=False)``) or
      a shape does not match.
  """
  batch = EpisodeBatch(*(getattr(episodes, name) for name in EpisodeBatch._fields))
  num_episodes, num_steps = jnp.shape(batch.valid)
  obs_shape = jnp.shape(batch.obs)
  if len(obs_shape) != 3 or obs_shape[:2] != (num_episodes, num_steps + 1) or obs_shape[2] == 0:
    raise ValueError(
        f"episodes.obs must have shape [N, T + 1, obs_dim] = [{num_episodes}, {num_steps + 1}, "
        f"obs_dim] with obs_dim >= 1, got {obs_shape}; evaluate with record_obs=True")
  if agent is not None and obs_shape[2] != agent.spec.obs_dim:
    raise ValueError(f"episodes.obs has obs_dim={obs_shape[2]}, the agent expects "
                     f"{agent.spec.obs_dim}")
  for name in ("action", "reward"):
    if jnp.shape(getattr(batch, name))[:2] != (num_episodes, num_steps):
      raise ValueError(f"episodes.{name} must start with [N, T] = [{num_episodes}, {num_steps}], "
                       f"got {jnp.shape(getattr(batch, name))}")
  if jnp.shape(batch.terminated) != (num_episodes,):
    raise ValueError(f"episodes.terminated must have shape [N] = [{num_episodes}], got "
                     f"{jnp.shape(batch.terminated)}")
  return batch


def _check_horizon(horizon: Any) -> int:
  if not isinstance(horizon, numbers.Integral) or isinstance(horizon, bool) or horizon < 1:
    raise ValueError(f"horizon must be an int >= 1 (a static unroll length), got {horizon!r}")
  return int(horizon)


# ---------------------------------------------------------------------------------------------
# Array helpers
# ---------------------------------------------------------------------------------------------


def step_terminations(valid: Array, terminated: Array) -> Array:
  """Per-step termination labels: True on the last valid step of a terminated episode.

  Args:
    valid: ``[..., T]`` bool prefix masks.
    terminated: ``[...]`` bool, the episode ended by termination.

  Returns:
    ``[..., T]`` bool.
  """
  valid = jnp.asarray(valid, bool)
  next_valid = jnp.concatenate([valid[..., 1:], jnp.zeros_like(valid[..., :1])], axis=-1)
  return valid & ~next_valid & jnp.asarray(terminated, bool)[..., None]


def monte_carlo_returns(reward: Array, valid: Array, gamma: float | Array) -> Array:
  """Discounted return to the end of the episode from every step.

  ``G_t = sum_{i >= t, valid_i} gamma^(i - t) r_i`` (Sutton & Barto 2018, eq. 3.8), computed
  backwards as ``G_t = valid_t (r_t + gamma G_{t+1})``; 0 on padding steps.

  Args:
    reward: ``[..., T]`` rewards.
    valid: ``[..., T]`` bool prefix masks (steps that happened).
    gamma: discount.

  Returns:
    ``[..., T]`` float32 returns.
  """
  reward = jnp.asarray(reward, jnp.float32)
  valid = jnp.asarray(valid, bool)
  gamma = jnp.asarray(gamma, jnp.float32)

  def backward(return_tp1, inputs):
    reward_t, valid_t = inputs
    return_t = jnp.where(valid_t, reward_t + gamma * return_tp1, 0.0)
    return return_t, return_t

  time_major = (jnp.moveaxis(reward, -1, 0), jnp.moveaxis(valid, -1, 0))
  _, returns = jax.lax.scan(backward, jnp.zeros(reward.shape[:-1], jnp.float32), time_major,
                            reverse=True)
  return jnp.moveaxis(returns, 0, -1)


def _flat_with_mask(x: Array, y: Array, mask: Array | None) -> tuple[Array, Array, Array]:
  x = jnp.ravel(jnp.asarray(x, jnp.float32))
  y = jnp.ravel(jnp.asarray(y, jnp.float32))
  mask = jnp.ones(x.shape, bool) if mask is None else jnp.ravel(jnp.asarray(mask, bool))
  return x, y, mask


def _all_finite(x: Array, mask: Array) -> Array:
  return jnp.all(jnp.isfinite(x) | ~mask)


def _is_constant(x: Array, mask: Array) -> Array:
  return jnp.max(jnp.where(mask, x, -jnp.inf)) <= jnp.min(jnp.where(mask, x, jnp.inf))


def _pearson(x: Array, y: Array, mask: Array) -> Array:
  count = jnp.sum(mask)
  safe_count = jnp.maximum(count, 1).astype(jnp.float32)
  x0, y0 = jnp.where(mask, x, 0.0), jnp.where(mask, y, 0.0)
  dx = jnp.where(mask, x0 - jnp.sum(x0) / safe_count, 0.0)
  dy = jnp.where(mask, y0 - jnp.sum(y0) / safe_count, 0.0)
  defined = ((count >= 2) & _all_finite(x, mask) & _all_finite(y, mask)
             & ~_is_constant(x0, mask) & ~_is_constant(y0, mask))
  denominator = jnp.sqrt(jnp.sum(dx * dx) * jnp.sum(dy * dy))
  correlation = jnp.sum(dx * dy) / jnp.where(defined, denominator, 1.0)
  return jnp.where(defined, jnp.clip(correlation, -1.0, 1.0), jnp.nan)


def pearson_correlation(x: Array, y: Array, mask: Array | None = None) -> Array:
  """Pearson correlation of paired values, pooled over all (masked) entries.

  Args:
    x: ``[...]`` values.
    y: ``[...]`` values of the same shape.
    mask: optional ``[...]`` bool selecting the pairs to use.

  Returns:
    ``[]`` correlation in ``[-1, 1]``; NaN when it is undefined (fewer than 2 pairs, a constant
    side, or a non-finite selected value).
  """
  return _pearson(*_flat_with_mask(x, y, mask))


def average_ranks(x: Array, mask: Array | None = None) -> Array:
  """Ranks ``0 .. n-1`` of the selected entries of ``x``, ties sharing their average rank.

  Args:
    x: ``[n]`` finite values.
    mask: optional ``[n]`` bool; unselected entries neither get nor take a rank (their output
      is meaningless).

  Returns:
    ``[n]`` float32 ranks (as ``scipy.stats.rankdata(x) - 1`` on the selected entries).
  """
  x = jnp.asarray(x, jnp.float32)
  mask = jnp.ones(x.shape, bool) if mask is None else jnp.asarray(mask, bool)
  keyed = jnp.where(mask, x, jnp.inf)
  ordered = jnp.sort(keyed)
  first = jnp.searchsorted(ordered, keyed, side="left")
  last = jnp.searchsorted(ordered, keyed, side="right") - 1
  return 0.5 * (first + last).astype(jnp.float32)


def spearman_correlation(x: Array, y: Array, mask: Array | None = None) -> Array:
  """Spearman rank correlation (Spearman 1904): Pearson correlation of average ranks.

  Args:
    x: ``[n]`` values.
    y: ``[n]`` values.
    mask: optional ``[n]`` bool selecting the pairs to use (ranks are taken among them).

  Returns:
    ``[]`` correlation in ``[-1, 1]`` (``scipy.stats.spearmanr``); NaN when undefined (fewer
    than 2 pairs, a constant side, or a non-finite selected value).
  """
  x, y, mask = _flat_with_mask(x, y, mask)
  finite = _all_finite(x, mask) & _all_finite(y, mask)
  x_safe = jnp.where(jnp.isfinite(x), x, 0.0)
  y_safe = jnp.where(jnp.isfinite(y), y, 0.0)
  correlation = _pearson(average_ranks(x_safe, mask), average_ranks(y_safe, mask), mask)
  return jnp.where(finite, correlation, jnp.nan)


def _best_with_margin(scores: Array) -> tuple[Array, Array]:
  """Index of the best finite score (-1 when none) and its lead over the second best."""
  finite = jnp.isfinite(scores)
  filled = jnp.where(finite, scores, -jnp.inf)
  best = jnp.where(jnp.any(finite), jnp.argmax(filled), -1).astype(jnp.int32)
  if scores.shape[0] < 2:
    return best, jnp.float32(jnp.nan)
  top, _ = jax.lax.top_k(filled, 2)
  margin = jnp.where(jnp.all(jnp.isfinite(top)), top[0] - top[1], jnp.nan)
  return best, margin


def _ratio(numerator: Array, denominator: Array) -> Array:
  return jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1.0),
                   jnp.nan)


def _ratio_of_sums(samples: tuple[Array, Array]) -> Array:
  """Bootstrap statistic: ``sum(numerators) / sum(denominators)`` per column, ``[M]``."""
  numerators, denominators = samples
  return _ratio(jnp.sum(numerators, axis=0), jnp.sum(denominators, axis=0))


def _pooled_pearson(samples: tuple[Array, Array, Array]) -> Array:
  """Bootstrap statistic: Pearson correlation over the masked steps of the resampled rows."""
  return pearson_correlation(*samples)


# ---------------------------------------------------------------------------------------------
# World model
# ---------------------------------------------------------------------------------------------


class _Terms(NamedTuple):
  """Per-episode sums ``[N, M]`` and counts ``[N, M]`` of ``M`` pooled means, by key."""

  names: tuple[str, ...]
  numerators: Array
  denominators: Array

  def estimates(self) -> dict[str, Array]:
    means = _ratio_of_sums((self.numerators, self.denominators))
    return {name: means[i] for i, name in enumerate(self.names)}


def _masked_sum(values: Array, mask: Array, axis: int | tuple[int, ...] = 0) -> Array:
  return jnp.sum(jnp.where(mask, values, 0.0), axis=axis)


def has_world_model(agent: Agent) -> bool:
  """Whether ``agent`` has a latent world model (``encode`` and ``transition``)."""
  return hasattr(agent, "encode") and hasattr(agent, "transition")


def has_value_function(agent: Agent) -> bool:
  """Whether ``agent`` predicts state values (``value``, over latents when it encodes)."""
  return hasattr(agent, "value")


def observation_value(agent: Agent, params: Params, obs: Array) -> Array:
  """``V(obs) []``: the agent's value of one observation (through its encoder, if any)."""
  if hasattr(agent, "encode"):
    return agent.value(params, agent.encode(params, obs))
  return agent.value(params, obs)


def _acting_depth(agent: Agent) -> int:
  """The depth an agent acts at: its training depth, or 1 (the single row of
  :func:`planner_greedy_actions`) for an agent without a depth axis."""
  axes = agent.eval_axes
  return axes.depth_default if axes.depth_name is not None else 1


def _world_model_episode(agent: Agent, params: Params, obs: Array, action: Array, reward: Array,
                         valid: Array, terminal: Array, horizon: int
                         ) -> tuple[dict[str, tuple[Array, Array]], Array]:
  """Sums and counts ``[H]`` (or ``[H + 1]``) of one episode, and its latents ``[T + 1, L]``."""
  num_steps = valid.shape[0]
  latents = jax.vmap(lambda o: agent.encode(params, o))(obs)  # [T + 1, L]
  inputs = jax.vmap(lambda a: agent.action_input(agent.from_env_action(a)))(action)  # [T, A_in]
  step_index = jnp.arange(num_steps)[:, None] + jnp.arange(horizon)[None, :]  # [T, H]: t + k - 1
  inside = step_index < num_steps
  clipped = jnp.minimum(step_index, num_steps - 1)
  pair = inside & valid[clipped]  # steps t .. t + k - 1 all happened (valid is a prefix)

  def unroll(z_t, inputs_t):
    def step(z, input_k):
      z_next, reward_k, termination_logit_k = agent.transition(params, z, input_k)
      return z_next, (z_next, reward_k, termination_logit_k)
    return jax.lax.scan(step, z_t, inputs_t)[1]

  z_predicted, reward_predicted, termination_logit = jax.vmap(unroll)(
      latents[:-1], inputs[clipped])  # [T, H, L], [T, H], [T, H]
  target_latents = latents[clipped + 1]
  latent_error = jnp.mean((z_predicted - target_latents) ** 2, axis=-1)
  reward_error = (reward_predicted - reward[clipped]) ** 2
  label = terminal[clipped]
  termination_xent = optax.sigmoid_binary_cross_entropy(termination_logit,
                                                        label.astype(jnp.float32))
  correct = ((termination_logit > 0) == label).astype(jnp.float32)
  count = jnp.sum(pair, axis=0).astype(jnp.float32)
  terms = {
      "latent_error": (_masked_sum(latent_error, pair), count),
      "reward_error": (_masked_sum(reward_error, pair), count),
      "termination_accuracy": (_masked_sum(correct, pair), count),
      "termination_xent": (_masked_sum(termination_xent, pair), count),
      "termination_recall": (_masked_sum(correct, pair & label),
                             jnp.sum(pair & label, axis=0).astype(jnp.float32)),
  }
  if "world_model/decoder" in agent.components:
    decode = jax.vmap(lambda z: agent.decode(params, z))
    reconstruction = jnp.mean((decode(latents[:-1]) - obs[:-1]) ** 2, axis=-1)  # [T]
    predicted_obs = jax.vmap(decode)(z_predicted)  # [T, H, obs_dim]
    unrolled = jnp.mean((predicted_obs - obs[clipped + 1]) ** 2, axis=-1)  # [T, H]
    terms["decoder_error"] = (
        jnp.concatenate([_masked_sum(reconstruction, valid)[None], _masked_sum(unrolled, pair)]),
        jnp.concatenate([jnp.sum(valid)[None].astype(jnp.float32), count]))
  return terms, latents


def _latent_spread(latents: Array, obs_mask: Array) -> Array:
  """Mean per-dimension variance of the latents ``[N, T + 1, L]`` of the observations seen."""
  count = jnp.maximum(jnp.sum(obs_mask), 1).astype(jnp.float32)
  mean = _masked_sum(latents, obs_mask[..., None], axis=(0, 1)) / count
  variance = _masked_sum((latents - mean) ** 2, obs_mask[..., None], axis=(0, 1)) / count
  return jnp.mean(variance)


def _world_model_terms(agent: Agent, params: Params, episodes: EpisodeBatch, horizon: int
                       ) -> tuple[_Terms, dict[str, Array]]:
  terminal = step_terminations(episodes.valid, episodes.terminated)
  per_episode, latents = jax.vmap(
      lambda o, a, r, v, c: _world_model_episode(agent, params, o, a, r, v, c, horizon))(
          jnp.asarray(episodes.obs, jnp.float32), episodes.action,
          jnp.asarray(episodes.reward, jnp.float32), jnp.asarray(episodes.valid, bool), terminal)
  names, numerators, denominators = [], [], []
  for term, (numerator, denominator) in per_episode.items():
    first = 0 if term == "decoder_error" else 1
    for column in range(numerator.shape[1]):
      names.append(f"health/{term}_{first + column}")
      numerators.append(numerator[:, column])
      denominators.append(denominator[:, column])
  terms = _Terms(tuple(names), jnp.stack(numerators, axis=1), jnp.stack(denominators, axis=1))

  # Pairs per step and the latent spread that normalises the relative latent error.
  obs_mask = jnp.concatenate([jnp.ones_like(episodes.valid[:, :1], bool),
                              jnp.asarray(episodes.valid, bool)], axis=1)
  spread = _latent_spread(latents, obs_mask)
  extra = {}
  for k in range(1, horizon + 1):
    column = names.index(f"health/latent_error_{k}")
    extra[f"health/model_pairs_{k}"] = jnp.sum(terms.denominators[:, column]).astype(jnp.int32)
  extra["health/latent_spread"] = spread
  return terms, extra


def _relative_latent_errors(metrics: dict[str, Array], horizon: int) -> None:
  spread = metrics["health/latent_spread"]
  for k in range(1, horizon + 1):
    metrics[f"health/latent_error_relative_{k}"] = _ratio(metrics[f"health/latent_error_{k}"],
                                                          spread)


@functools.partial(jax.jit, static_argnames=("agent", "horizon"))
def _world_model_errors(agent, params, episodes, horizon):
  terms, extra = _world_model_terms(agent, params, episodes, horizon)
  metrics = {**terms.estimates(), **extra}
  _relative_latent_errors(metrics, horizon)
  return metrics


def world_model_errors(agent: Agent, params: Params, episodes: Any, horizon: int
                       ) -> dict[str, Array]:
  """1- to ``H``-step prediction errors of the world model on real episodes.

  See the module docstring for the definitions. Jitted (``agent`` and ``horizon`` static).

  Args:
    agent: the agent.
    params: its parameters (may be faulted).
    episodes: an :class:`EpisodeBatch` or ``Trajectories`` with recorded observations
      (``obs [N, T + 1, obs_dim]``, ``action [N, T(, d)]``, ``reward [N, T]``,
      ``valid [N, T]``, ``terminated [N]``).
    horizon: ``H``, the static number of unrolled steps.

  Returns:
    Flat dict, for ``k = 1 .. H``: ``health/latent_error_k``, ``health/latent_error_relative_k``,
    ``health/reward_error_k``, ``health/termination_accuracy_k``, ``health/termination_xent_k``,
    ``health/termination_recall_k``, ``health/model_pairs_k``; ``health/decoder_error_k`` for
    ``k = 0 .. H`` when the agent has a decoder; ``health/latent_spread`` (the normaliser of the
    relative errors). Means with no pair to average are NaN.

  Raises:
    ValueError: for episodes without observations or a bad ``horizon``.
  """
  return _world_model_errors(agent, params, episode_batch(episodes, agent),
                             _check_horizon(horizon))


# ---------------------------------------------------------------------------------------------
# Value calibration
# ---------------------------------------------------------------------------------------------


def _value_terms(agent: Agent, params: Params, episodes: EpisodeBatch
                 ) -> tuple[_Terms, tuple[Array, Array, Array], dict[str, Array]]:
  valid = jnp.asarray(episodes.valid, bool)
  terminated = jnp.asarray(episodes.terminated, bool)
  observations = jnp.asarray(episodes.obs[:, :-1], jnp.float32)
  predicted = jax.vmap(jax.vmap(lambda o: observation_value(agent, params, o)))(
      observations)  # [N, T]
  returns = monte_carlo_returns(episodes.reward, valid, agent.gamma)
  uncensored = valid & terminated[:, None]
  count = jnp.sum(uncensored, axis=1).astype(jnp.float32)
  columns = {
      "health/value_error": (_masked_sum(predicted - returns, uncensored, axis=1), count),
      "health/value_abs_error": (_masked_sum(jnp.abs(predicted - returns), uncensored, axis=1),
                                 count),
      "health/value_mean_predicted": (_masked_sum(predicted, uncensored, axis=1), count),
      "health/value_mean_return": (_masked_sum(returns, uncensored, axis=1), count),
      "health/value_censored_share": (jnp.sum(valid & ~terminated[:, None], axis=1)
                                      .astype(jnp.float32),
                                      jnp.sum(valid, axis=1).astype(jnp.float32)),
  }
  terms = _Terms(tuple(columns), jnp.stack([n for n, _ in columns.values()], axis=1),
                 jnp.stack([d for _, d in columns.values()], axis=1))
  extra = {"health/value_calibration_steps": jnp.sum(count).astype(jnp.int32)}
  return terms, (predicted, returns, uncensored), extra


@functools.partial(jax.jit, static_argnames=("agent",))
def _value_calibration(agent, params, episodes):
  terms, pairs, extra = _value_terms(agent, params, episodes)
  return {**terms.estimates(), "health/value_mc_correlation": _pooled_pearson(pairs), **extra}


def value_calibration(agent: Agent, params: Params, episodes: Any) -> dict[str, Array]:
  """Predicted values against discounted Monte-Carlo returns on real episodes.

  Only steps of episodes that ended by termination count (truncated returns are censored; see
  the module docstring). Jitted (``agent`` static).

  Args:
    agent: the agent (``agent.gamma`` discounts the returns).
    params: its parameters.
    episodes: an :class:`EpisodeBatch` or ``Trajectories`` with recorded observations.

  Returns:
    ``health/value_error`` (mean ``V - G``), ``health/value_abs_error``,
    ``health/value_mc_correlation`` (Pearson, pooled over steps),
    ``health/value_mean_predicted``, ``health/value_mean_return``,
    ``health/value_calibration_steps`` (steps used) and ``health/value_censored_share`` (share
    of valid steps left out because their episode was truncated). NaN when no episode
    terminated.

  Raises:
    ValueError: for episodes without observations.
  """
  return _value_calibration(agent, params, episode_batch(episodes, agent))


# ---------------------------------------------------------------------------------------------
# Values on probe states against exact optimal values
# ---------------------------------------------------------------------------------------------


def probe_values(agent: Agent, params: Params, probe_obs: Array) -> Array:
  """Predicted ``V(enc(o))`` of each probe observation.

  Args:
    agent: the agent.
    params: its parameters.
    probe_obs: ``[S, obs_dim]`` observations (e.g. ``env.all_observations(env_params)``).

  Returns:
    ``[S]`` predicted values.
  """
  return jax.vmap(lambda o: observation_value(agent, params, o))(
      jnp.asarray(probe_obs, jnp.float32))


@functools.partial(jax.jit, static_argnames=("num_iters",))
def optimal_tables(mdp: oracles.TabularMDP, gamma: float | Array,
                   num_iters: int = oracles.DEFAULT_NUM_ITERS) -> tuple[Array, Array]:
  """Exact optimal values and action values of every goal (value iteration, vmapped).

  Args:
    mdp: the tabular MDP (``env.tabular(env_params)``).
    gamma: discount (use the agent's, ``agent.gamma``).
    num_iters: value-iteration backups.

  Returns:
    ``(v [K, S], q [K, S, A])``: row ``k`` treats goal ``k`` as the intended one.
  """
  goals = jnp.arange(mdp.num_goals, dtype=jnp.int32)
  return jax.vmap(lambda k: oracles.value_iteration(mdp, k, gamma, num_iters))(goals)


def goal_approach_states(mdp: oracles.TabularMDP) -> Array:
  """The approach states of each goal: non-terminal states one move away from it.

  Args:
    mdp: the tabular MDP.

  Returns:
    ``[K, S]`` bool; ``[k, s]`` is True when some action moves ``s`` into goal ``k``.
  """
  enters = mdp.next_state[None, :, :] == mdp.goal_states[:, None, None]  # [K, S, A]
  return jnp.any(enters, axis=-1) & ~mdp.terminal[None, :]


def _goal_keys(goal_names: Sequence[str] | None, num_goals: int) -> list[str]:
  if goal_names is None:
    return [str(k) for k in range(num_goals)]
  if len(goal_names) != num_goals:
    raise ValueError(f"goal_names has {len(goal_names)} names for {num_goals} goals")
  return [str(name) for name in goal_names]


def value_goal_alignment(
    predicted_values: Array,
    optimal_values: Array,
    mask: Array | None = None,
    approach_states: Array | None = None,
    intended_goal: int | Array | None = None,
    goal_names: Sequence[str] | None = None,
) -> dict[str, Array]:
  """Which goal's optimal values the predicted values look like.

  Args:
    predicted_values: ``[S]`` the agent's values of the probe states (:func:`probe_values`).
    optimal_values: ``[K, S]`` exact ``V*_k`` of each goal (:func:`optimal_tables`).
    mask: optional ``[S]`` bool probe states to compare on (use the non-terminal states).
    approach_states: optional ``[K, S]`` bool approach states of each goal
      (:func:`goal_approach_states`), for the value peak goal.
    intended_goal: optional ``[]`` int index of the intended goal (may be traced).
    goal_names: goal labels used in the keys (``"0" .. "K-1"`` when ``None``).

  Returns:
    ``health/value_rank_corr_<goal>`` (Spearman with ``V*_goal``) for every goal,
    ``health/value_implied_goal`` (int32, -1 when no correlation is defined) and
    ``health/value_implied_margin``; with an intended goal ``health/value_rank_corr_intended``
    and ``health/value_implied_is_intended``; with approach states
    ``health/value_near_<goal>`` (mean predicted value over the goal's approach states) and
    ``health/value_peak_goal`` (int32 argmax of those, -1 when none is finite).
  """
  optimal_values = jnp.asarray(optimal_values, jnp.float32)
  names = _goal_keys(goal_names, optimal_values.shape[0])
  correlations = jax.vmap(lambda v: spearman_correlation(predicted_values, v, mask))(
      optimal_values)
  implied, margin = _best_with_margin(correlations)
  metrics = {f"health/value_rank_corr_{name}": correlations[k] for k, name in enumerate(names)}
  metrics["health/value_implied_goal"] = implied
  metrics["health/value_implied_margin"] = margin
  if intended_goal is not None:
    intended_goal = jnp.asarray(intended_goal, jnp.int32)
    metrics["health/value_rank_corr_intended"] = correlations[intended_goal]
    metrics["health/value_implied_is_intended"] = (implied == intended_goal).astype(jnp.float32)
  if approach_states is not None:
    approach_states = jnp.asarray(approach_states, bool)
    predicted = jnp.asarray(predicted_values, jnp.float32)
    near = _ratio(jnp.sum(jnp.where(approach_states, predicted[None, :], 0.0), axis=1),
                  jnp.sum(approach_states, axis=1).astype(jnp.float32))
    for k, name in enumerate(names):
      metrics[f"health/value_near_{name}"] = near[k]
    metrics["health/value_peak_goal"] = _best_with_margin(near)[0]
  return metrics


# ---------------------------------------------------------------------------------------------
# Planner
# ---------------------------------------------------------------------------------------------


def optimal_action_share(actions: Array, q: Array, mask: Array | None = None,
                         atol: float = DEFAULT_OPTIMAL_ATOL) -> Array:
  """Share of states whose action is optimal: ``q[s, a_s] >= max_a q[s, a] - atol``.

  Args:
    actions: ``[S]`` int chosen action per state.
    q: ``[S, A]`` action values (e.g. exact ``Q*`` of a goal).
    mask: optional ``[S]`` bool states to count (e.g. non-terminal).
    atol: tie tolerance.

  Returns:
    ``[]`` share in ``[0, 1]`` (NaN when the mask selects nothing).
  """
  q = jnp.asarray(q, jnp.float32)
  actions = jnp.asarray(actions, jnp.int32)
  chosen = jnp.take_along_axis(q, actions[:, None], axis=-1)[:, 0]
  optimal = (chosen >= jnp.max(q, axis=-1) - atol).astype(jnp.float32)
  mask = jnp.ones(actions.shape, bool) if mask is None else jnp.asarray(mask, bool)
  return _ratio(_masked_sum(optimal, mask), jnp.sum(mask).astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("agent",))
def planner_greedy_actions(key: Array, agent: Agent, params: Params, probe_obs: Array
                           ) -> tuple[Array, Array]:
  """Greedy planner actions on every probe state at every horizon ``1 .. max_horizon``.

  The same key per state is used at every horizon (common random numbers for the sampling
  planners); the exhaustive planner ignores it.

  Args:
    key: PRNG key.
    agent: the agent (discrete actions).
    params: its parameters.
    probe_obs: ``[S, obs_dim]`` observations.

  Returns:
    ``(actions, nonfinite)``: int32 ``[max_horizon, S]`` planner actions (row ``h - 1`` is
    horizon ``h``) and bool ``[max_horizon, S]`` non-finite-plan flags.

  Raises:
    ValueError: if the agent's actions are continuous.
  """
  if not agent.spec.discrete:
    raise ValueError("planner_greedy_actions needs a discrete-action agent (agent.spec.discrete)")
  probe_obs = jnp.asarray(probe_obs, jnp.float32)
  keys = jax.random.split(key, probe_obs.shape[0])
  axes = agent.eval_axes
  horizons = (jnp.arange(1, axes.depth_max + 1, dtype=jnp.int32) if axes.depth_name is not None
              else jnp.zeros((1,), jnp.int32))  # an agent without a depth axis: one row

  def at_horizon(horizon):
    outs = jax.vmap(lambda k, o: agent.act(params, k, o, eval_args(depth=horizon)))(
        keys, probe_obs)
    return outs.action.astype(jnp.int32), outs.nonfinite

  return jax.vmap(at_horizon)(horizons)


def _planner_metrics(actions: Array, nonfinite: Array, mask: Array, horizon: Array,
                     optimal_q: Array | None, intended_goal: Array | None,
                     goal_names: Sequence[str] | None) -> dict[str, Array]:
  max_horizon = actions.shape[0]
  weight = mask.astype(jnp.float32)
  total = jnp.sum(weight)

  def share(flags):
    return _ratio(jnp.sum(jnp.where(mask, flags, False).astype(jnp.float32)), total)

  acting = jnp.clip(jnp.asarray(horizon, jnp.int32), 1, max_horizon) - 1
  chosen = actions[acting]
  metrics = {}
  for h in range(1, max_horizon):
    metrics[f"health/planner_horizon_agreement_{h}"] = share(actions[h - 1] == actions[h])
  metrics["health/planner_agreement_with_max_horizon"] = share(chosen == actions[-1])
  metrics["health/planner_nonfinite_share"] = share(nonfinite[acting])
  if optimal_q is not None:
    names = _goal_keys(goal_names, optimal_q.shape[0])
    shares = jax.vmap(lambda q: optimal_action_share(chosen, q, mask))(optimal_q)
    for k, name in enumerate(names):
      metrics[f"health/planner_optimal_share_{name}"] = shares[k]
    metrics["health/planner_implied_goal"], metrics["health/planner_implied_margin"] = (
        _best_with_margin(shares))
    if intended_goal is not None:
      metrics["health/planner_optimal_share"] = shares[jnp.asarray(intended_goal, jnp.int32)]
  return metrics


def planner_health(
    key: Array,
    agent: Agent,
    params: Params,
    probe_obs: Array,
    mask: Array | None = None,
    horizon: int | Array | None = None,
    optimal_q: Array | None = None,
    intended_goal: int | Array | None = None,
    goal_names: Sequence[str] | None = None,
) -> dict[str, Array]:
  """Self-consistency of the planner across horizons and agreement with optimal actions.

  See the module docstring for the definitions. Jitted (``agent`` and ``goal_names`` static).

  Args:
    key: PRNG key (sampling planners).
    agent: the agent (discrete actions).
    params: its parameters.
    probe_obs: ``[S, obs_dim]`` probe observations.
    mask: optional ``[S]`` bool probe states to count (e.g. the non-terminal states).
    horizon: the acting horizon (``agent.config.horizon`` when ``None``).
    optimal_q: optional ``[K, S, A]`` exact ``Q*`` of each goal on the probe states
      (:func:`optimal_tables`).
    intended_goal: optional ``[]`` int intended goal (with ``optimal_q``).
    goal_names: goal labels used in the keys.

  Returns:
    ``health/planner_horizon_agreement_h`` for ``h = 1 .. max_horizon - 1``,
    ``health/planner_agreement_with_max_horizon``, ``health/planner_nonfinite_share``; with
    ``optimal_q`` also ``health/planner_optimal_share_<goal>``,
    ``health/planner_implied_goal`` and ``health/planner_implied_margin``, and with an intended
    goal ``health/planner_optimal_share``.

  Raises:
    ValueError: if the agent's actions are continuous.
  """
  if horizon is None:
    horizon = _acting_depth(agent)
  return _planner_health(key, agent, params, probe_obs, mask, horizon, optimal_q, intended_goal,
                         None if goal_names is None else tuple(goal_names))


@functools.partial(jax.jit, static_argnames=("agent", "goal_names"))
def _planner_health(key, agent, params, probe_obs, mask, horizon, optimal_q, intended_goal,
                    goal_names):
  actions, nonfinite = planner_greedy_actions(key, agent, params, probe_obs)
  mask = jnp.ones(actions.shape[1], bool) if mask is None else jnp.asarray(mask, bool)
  return _planner_metrics(actions, nonfinite, mask, horizon, optimal_q, intended_goal,
                          goal_names)


# ---------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------


def _with_intervals(key: Array, terms: _Terms, num_resamples: int, confidence: float
                    ) -> dict[str, Array]:
  interval = stats.bootstrap_ci(key, (terms.numerators, terms.denominators), _ratio_of_sums,
                                num_resamples, confidence)
  metrics = {}
  for i, name in enumerate(terms.names):
    metrics.update(stats.ci_dict(name, stats.ConfidenceInterval(
        interval.estimate[i], interval.low[i], interval.high[i])))
  return metrics


@functools.partial(jax.jit, static_argnames=(
    "agent", "env", "horizon", "num_resamples", "confidence"))
def _component_health(key, agent, params, env, env_params, episodes, horizon, planner_horizon,
                      num_resamples, confidence):
  key_model, key_value, key_correlation, key_planner = jax.random.split(key, 4)

  # -- world model and value calibration on the real episodes, with bootstrap intervals
  metrics = {}
  if has_world_model(agent):
    model_terms, metrics = _world_model_terms(agent, params, episodes, horizon)
    metrics.update(_with_intervals(key_model, model_terms, num_resamples, confidence))
    _relative_latent_errors(metrics, horizon)
  has_value = has_value_function(agent)
  if has_value:
    value_terms, pairs, extra = _value_terms(agent, params, episodes)
    metrics.update(extra)
    metrics.update(_with_intervals(key_value, value_terms, num_resamples, confidence))
    metrics.update(stats.ci_dict("health/value_mc_correlation", stats.bootstrap_ci(
        key_correlation, pairs, _pooled_pearson, num_resamples, confidence)))

  # -- probe states: every tabular state of a grid world, else the episodes' observations
  intended_goal = getattr(env_params, "intended_goal", None)
  tabular = hasattr(env, "tabular") and hasattr(env, "all_observations")
  optimal_q = goal_names = None
  if tabular:
    mdp = env.tabular(env_params)
    probe_obs = env.all_observations(env_params)
    mask = ~mdp.terminal
    optimal_v, optimal_q = optimal_tables(mdp, agent.gamma)
    goal_names = getattr(env, "goal_names", None)
    if has_value:
      metrics.update(value_goal_alignment(
          probe_values(agent, params, probe_obs), optimal_v, mask, goal_approach_states(mdp),
          intended_goal, goal_names))
  else:
    probe_obs = jnp.reshape(episodes.obs[:, :-1], (-1, episodes.obs.shape[-1]))
    mask = jnp.reshape(jnp.asarray(episodes.valid, bool), (-1,))
  if agent.spec.discrete:
    actions, nonfinite = planner_greedy_actions(key_planner, agent, params, probe_obs)
    metrics.update(_planner_metrics(actions, nonfinite, mask, planner_horizon, optimal_q,
                                    intended_goal, goal_names))
  metrics["health/num_episodes"] = jnp.int32(episodes.valid.shape[0])
  return metrics


def component_health(
    key: Array,
    agent: Agent,
    params: Params,
    env: Any,
    env_params: Any,
    trajectories: Any,
    horizon: int | None = None,
    planner_horizon: int | Array | None = None,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    confidence: float = 0.95,
) -> dict[str, Array]:
  """All component-health metrics of one agent on one batch of real episodes.

  Runs under ``jax.jit`` as a whole (``agent``, ``env``, ``horizon``, ``num_resamples`` and
  ``confidence`` static) and vmaps over ``params`` and ``trajectories``.

  Args:
    key: PRNG key (bootstrap resampling and sampling planners).
    agent: the agent (static).
    params: its parameters (may be faulted).
    env: the environment the episodes come from (static). Grid worlds with ``tabular`` and
      ``all_observations`` add the exact value and planner comparisons over every tabular
      state; elsewhere the planner probes the episodes' valid observations.
    env_params: its parameters (``intended_goal``, when present, is the intended goal).
    trajectories: :class:`~mbrl_drift.trajectories.Trajectories` recorded with
      ``record_obs=True`` (or an :class:`EpisodeBatch`).
    horizon: ``H``, the static world-model unroll length (``agent.config.max_horizon``, the
      deepest the planner looks, when ``None``).
    planner_horizon: the horizon the agent acts at (``agent.config.horizon`` when ``None``).
    num_resamples: bootstrap resamples over episodes.
    confidence: two-sided coverage of the intervals.

  Returns:
    One flat ``"health/..."`` dict: the keys of :func:`world_model_errors`,
    :func:`value_calibration` and, where they apply, :func:`value_goal_alignment` and
    :func:`planner_health` (discrete actions only), plus ``health/num_episodes``. Every mean
    over episode steps also has ``_ci_low`` / ``_ci_high`` (percentile bootstrap over
    episodes; the relative latent errors, counts and probe-state metrics have none).

  Raises:
    ValueError: for episodes without observations or a bad ``horizon``.
  """
  if horizon is None:
    horizon = max(agent.eval_axes.depth_max, 1)
  if planner_horizon is None:
    planner_horizon = _acting_depth(agent)
  return _component_health(key, agent, params, env, env_params,
                           episode_batch(trajectories, agent), _check_horizon(horizon),
                           planner_horizon, num_resamples, confidence)


__all__ = [
    "EpisodeBatch",
    "average_ranks",
    "component_health",
    "episode_batch",
    "goal_approach_states",
    "monte_carlo_returns",
    "optimal_action_share",
    "optimal_tables",
    "pearson_correlation",
    "planner_greedy_actions",
    "planner_health",
    "probe_values",
    "spearman_correlation",
    "step_terminations",
    "value_calibration",
    "value_goal_alignment",
    "world_model_errors",
]
