"""Model-predictive planning over the learned world model with the value as terminal bootstrap.

A candidate action sequence ``a_0 .. a_{H-1}`` from observation ``o`` scores

  G_H = sum_{t<H} gamma^t alive_t r_t + gamma^H alive_H V(z_H),
  z_0 = enc(o),  (z_{t+1}, r_t, c_t) = model(z_t, a_t),  alive_{t+1} = alive_t (1 - sigmoid(c_t)),

i.e. the model's predicted return, with the predicted termination probability cutting off the
bootstrap (as in MuZero and TD-MPC, Schrittwieser et al. 2020; Hansen et al. 2022). Every planner
scores sequences of the compiled ``max_horizon`` and reads the score at the requested ``horizon``
from the same unroll, so the horizon is a traced argument: a horizon sweep reuses one compilation.

Planners (``AgentConfig.planner``):

* ``"exhaustive"``: every one of the ``A**max_horizon`` discrete sequences; a first action scores
  the best sequence that starts with it.
* ``"sampling"``: cross-entropy search over discrete sequences (categorical CEM; Rubinstein 1999).
* ``"cem"``: cross-entropy search over continuous sequences in ``[-1, 1]^d`` (Chua et al. 2018).

Action selection (``mode``, an int array so it can be swept too): ``GREEDY`` takes the best first
action, ``EPSILON`` replaces it by a uniform action with probability ``epsilon``, ``BOLTZMANN``
samples ``softmax(scores / temperature)``. Non-finite scores (e.g. under a fault) never raise: they
are ignored, a uniform action is taken when nothing finite remains, and ``nonfinite`` is reported.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mbrl_drift.agents.base import Params
from mbrl_drift.agents.mpc.agent import PlannerAgent as Agent

GREEDY, EPSILON, BOLTZMANN = 0, 1, 2
SELECTION_MODES = {"greedy": GREEDY, "epsilon": EPSILON, "boltzmann": BOLTZMANN}


class PlanResult(NamedTuple):
  """Output of :func:`act` for one observation.

  Attributes:
    action: environment action (int32 ``[]`` or float32 ``[d]``).
    planner_action: the action in planner space (int32 ``[]`` or ``[-1, 1]^d``).
    scores: ``[A]`` score of each first action (discrete) or ``[num_elites]`` elite scores.
    nonfinite: bool ``[]``, True when the planner met a non-finite score.
    action_probs: ``[A]`` the probability the selection rule gave each discrete action (greedy:
      ties share the mass), ``None`` for continuous actions.
  """

  action: jax.Array
  planner_action: jax.Array
  scores: jax.Array
  nonfinite: jax.Array
  action_probs: jax.Array | None = None


def sequence_returns(agent: Agent, params: Params, z0: jax.Array, action_inputs: jax.Array
                     ) -> jax.Array:
  """Predicted return of each sequence at every depth.

  Args:
    agent: the agent.
    params: its parameters.
    z0: ``[L]`` latent of the current observation.
    action_inputs: ``[N, H, A_in]`` model inputs of ``N`` action sequences.

  Returns:
    ``[N, H + 1]``: column ``h`` is ``G_h``, the return of the first ``h`` actions bootstrapped
    with the value of the predicted latent after them.
  """
  gamma = agent.config.gamma

  def one_sequence(inputs_t: jax.Array) -> jax.Array:
    def step(carry, input_t):
      z_t, alive_t, return_t, discount_t = carry
      z_tp1, reward_t, termination_logit_t = agent.transition(params, z_t, input_t)
      return_tp1 = return_t + discount_t * alive_t * reward_t
      alive_tp1 = alive_t * (1.0 - jax.nn.sigmoid(termination_logit_t))
      discount_tp1 = discount_t * gamma
      bootstrapped = return_tp1 + discount_tp1 * alive_tp1 * agent.value(params, z_tp1)
      return (z_tp1, alive_tp1, return_tp1, discount_tp1), bootstrapped

    init = (z0, jnp.float32(1.0), jnp.float32(0.0), jnp.float32(1.0))
    _, returns = jax.lax.scan(step, init, inputs_t)
    return jnp.concatenate([agent.value(params, z0)[None], returns])

  return jax.vmap(one_sequence)(action_inputs)


def _all_sequences(num_actions: int, horizon: int) -> np.ndarray:
  """``[A**H, H]`` every discrete sequence, first action slowest-varying."""
  return np.array(list(itertools.product(range(num_actions), repeat=horizon)), np.int32)


def _finite_or(x: jax.Array, fill: float) -> jax.Array:
  return jnp.where(jnp.isfinite(x), x, fill)


def exhaustive_scores(agent: Agent, params: Params, z0: jax.Array, horizon: jax.Array
                      ) -> jax.Array:
  """``[A]`` best predicted ``G_horizon`` over all sequences starting with each action."""
  num_actions = agent.spec.action_dim
  sequences = _all_sequences(num_actions, agent.config.max_horizon)
  returns = sequence_returns(agent, params, z0, jax.nn.one_hot(sequences, num_actions))
  at_horizon = jnp.take(returns, horizon, axis=1)
  at_horizon = _finite_or(at_horizon, -jnp.inf)
  return at_horizon.reshape(num_actions, -1).max(axis=1)


def sampling_scores(agent: Agent, params: Params, key: jax.Array, z0: jax.Array,
                    horizon: jax.Array) -> jax.Array:
  """``[A]`` categorical-CEM scores: best sampled ``G_horizon`` per first action."""
  config, num_actions = agent.config, agent.spec.action_dim
  probs = jnp.full((config.max_horizon, num_actions), 1.0 / num_actions)
  if config.use_actor:
    prior = jax.nn.softmax(agent.actor_output(params, z0))
    probs = 0.5 * probs + 0.5 * prior[None, :]
  best = jnp.full((num_actions,), -jnp.inf)
  for key_iter in jax.random.split(key, config.planner_iterations):
    sequences = jax.random.categorical(
        key_iter, jnp.log(probs), axis=-1, shape=(config.num_samples, config.max_horizon))
    returns = sequence_returns(agent, params, z0, jax.nn.one_hot(sequences, num_actions))
    scores = _finite_or(jnp.take(returns, horizon, axis=1), -jnp.inf)
    per_first = jnp.where(jax.nn.one_hot(sequences[:, 0], num_actions, dtype=bool),
                          scores[:, None], -jnp.inf).max(axis=0)
    best = jnp.maximum(best, per_first)
    _, elite_index = jax.lax.top_k(scores, config.num_elites)
    counts = jax.nn.one_hot(sequences[elite_index], num_actions).sum(axis=0)
    probs = (counts + 0.1) / (config.num_elites + 0.1 * num_actions)
  return best


def cem_plan(agent: Agent, params: Params, key: jax.Array, z0: jax.Array, horizon: jax.Array
             ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Continuous CEM.

  Returns:
    ``(mean_action [d], elite_first_actions [E, d], elite_scores [E])`` after the last iteration.
  """
  config, dim = agent.config, agent.spec.action_dim
  mean = jnp.zeros((config.max_horizon, dim))
  if config.use_actor:
    mean = jnp.broadcast_to(agent.actor_output(params, z0), mean.shape)
  std = jnp.full((config.max_horizon, dim), 0.5)
  elites = jnp.zeros((config.num_elites, config.max_horizon, dim))
  elite_scores = jnp.zeros((config.num_elites,))
  for key_iter in jax.random.split(key, config.planner_iterations):
    noise = jax.random.normal(key_iter, (config.num_samples, config.max_horizon, dim))
    samples = jnp.clip(mean + std * noise, -1.0, 1.0)
    samples = samples.at[0].set(mean)  # keep the current mean among the candidates
    returns = sequence_returns(agent, params, z0, samples)
    scores = _finite_or(jnp.take(returns, horizon, axis=1), -jnp.inf)
    elite_scores, elite_index = jax.lax.top_k(scores, config.num_elites)
    elites = samples[elite_index]
    mean = elites.mean(axis=0)
    std = jnp.maximum(elites.std(axis=0), 0.05)
  return mean[0], elites[:, 0], elite_scores


def act(agent: Agent, params: Params, key: jax.Array, obs: jax.Array, horizon: jax.Array,
        mode: jax.Array, epsilon: jax.Array | float = 0.0,
        temperature: jax.Array | float | None = None) -> PlanResult:
  """Plans from one observation and selects an action.

  Args:
    agent: the agent.
    params: its parameters.
    key: PRNG key.
    obs: ``[obs_dim]`` observation.
    horizon: int ``[]`` planning horizon in ``[1, max_horizon]`` (traced).
    mode: int ``[]``, one of ``GREEDY``, ``EPSILON``, ``BOLTZMANN`` (traced).
    epsilon: probability of a uniform action in ``EPSILON`` mode.
    temperature: Boltzmann temperature (``agent.config.boltzmann_temperature`` when ``None``).

  Returns:
    A :class:`PlanResult`.
  """
  if temperature is None:
    temperature = agent.config.boltzmann_temperature
  key_plan, key_explore, key_choice, key_uniform = jax.random.split(key, 4)
  horizon = jnp.clip(jnp.asarray(horizon, jnp.int32), 1, agent.config.max_horizon)
  z0 = agent.encode(params, obs)
  nonfinite_latent = ~jnp.all(jnp.isfinite(z0))

  if agent.spec.discrete:
    num_actions = agent.spec.action_dim
    if agent.config.planner == "exhaustive":
      scores = exhaustive_scores(agent, params, z0, horizon)
    else:
      scores = sampling_scores(agent, params, key_plan, z0, horizon)
    finite = jnp.isfinite(scores)
    any_finite = jnp.any(finite)
    uniform_action = jax.random.randint(key_uniform, (), 0, num_actions)
    greedy = jnp.where(any_finite, jnp.argmax(scores), uniform_action)
    logits = jnp.where(finite, scores / temperature, -jnp.inf)
    logits = jnp.where(any_finite, logits - jnp.max(jnp.where(finite, logits, -1e30)), 0.0)
    boltzmann = jax.random.categorical(key_choice, logits)
    explore = jax.random.uniform(key_explore) < epsilon
    epsilon_action = jnp.where(explore, uniform_action, greedy)
    action = jnp.select([mode == EPSILON, mode == BOLTZMANN], [epsilon_action, boltzmann], greedy)
    action = action.astype(jnp.int32)
    nonfinite = ~jnp.all(finite) | nonfinite_latent
    uniform_probs = jnp.full((num_actions,), 1.0 / num_actions)
    best = finite & (scores >= jnp.max(jnp.where(finite, scores, -jnp.inf)))
    greedy_probs = jnp.where(any_finite, best / jnp.maximum(jnp.sum(best), 1), uniform_probs)
    epsilon_probs = (1.0 - epsilon) * greedy_probs + epsilon * uniform_probs
    action_probs = jnp.select([mode == EPSILON, mode == BOLTZMANN],
                              [epsilon_probs, jax.nn.softmax(logits)], greedy_probs)
  else:
    mean_action, elite_actions, elite_scores = cem_plan(agent, params, key_plan, z0, horizon)
    finite = jnp.isfinite(elite_scores)
    any_finite = jnp.any(finite)
    uniform_action = jax.random.uniform(key_uniform, mean_action.shape, minval=-1.0, maxval=1.0)
    greedy = jnp.where(any_finite & jnp.all(jnp.isfinite(mean_action)), mean_action,
                       uniform_action)
    logits = jnp.where(finite, elite_scores / temperature, -jnp.inf)
    logits = jnp.where(any_finite, logits - jnp.max(jnp.where(finite, logits, -1e30)), 0.0)
    boltzmann = elite_actions[jax.random.categorical(key_choice, logits)]
    boltzmann = jnp.where(jnp.all(jnp.isfinite(boltzmann)), boltzmann, uniform_action)
    explore = jax.random.uniform(key_explore) < epsilon
    epsilon_action = jnp.where(explore, uniform_action, greedy)
    action = jnp.select([mode == EPSILON, mode == BOLTZMANN], [epsilon_action, boltzmann], greedy)
    scores = elite_scores
    nonfinite = ~jnp.all(finite) | nonfinite_latent | ~jnp.all(jnp.isfinite(mean_action))
    action_probs = None
  return PlanResult(action=agent.to_env_action(action), planner_action=action, scores=scores,
                    nonfinite=nonfinite, action_probs=action_probs)
