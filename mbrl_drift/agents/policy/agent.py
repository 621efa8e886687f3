"""The policy agent: an actor and a critic as separate, path-addressed components.

Parameters are one nested dict whose top-level keys name components::

  {"actor": ..., "critic": ...[, "base": {"actor": ...}]}

* ``actor``: an MLP from the observation to categorical logits ``[A]`` (discrete actions), or to
  the mean ``[d]`` of a Gaussian over pre-squash actions ``u`` plus a state-independent log
  standard deviation ``[d]`` (continuous actions; the action is ``tanh(u)`` in ``[-1, 1]``,
  mapped to the environment's bounds by :meth:`EnvSpec.to_env_action`; Haarnoja et al. 2018).
* ``critic``: an MLP from the observation to the state value ``V(s)``.
* ``base/actor`` (runs fine-tuned from a base, ``TrainConfig.init_from``): a frozen copy of the
  base run's actor, of the same shape as ``actor``; never updated, so faults can move
  parameters along the fine-tuning delta and metrics can measure reversion.

Networks follow purejaxrl (Lu et al. 2022): ``num_layers`` Dense + activation layers with
orthogonal initialisation (scale sqrt 2), an actor head at scale 0.01 and a critic head at
scale 1.

Everything here works on one example; ``jax.vmap`` batches it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mbrl_drift.agents.base import (ActOut, Component, EnvSpec, EvalArgs, EvalAxes, OutputHook,
                                    Params, get_path, init_components)
from mbrl_drift.agents.policy.config import PolicyConfig

#: The policy's action-selection rules (``EvalArgs.selection`` indexes them).
SELECTIONS = ("greedy", "sample")
GREEDY, SAMPLE = 0, 1

ACTOR, CRITIC, BASE_ACTOR = "actor", "critic", "base/actor"

_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------


class MLP(nn.Module):
  """``num_layers`` Dense + activation layers and a Dense head (orthogonal initialisation)."""

  hidden_dim: int
  num_layers: int
  out_dim: int
  activation: str = "tanh"
  head_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    activation = nn.tanh if self.activation == "tanh" else nn.relu
    for _ in range(self.num_layers):
      x = nn.Dense(self.hidden_dim, kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)),
                   bias_init=nn.initializers.zeros)(x)
      x = activation(x)
    return nn.Dense(self.out_dim, kernel_init=nn.initializers.orthogonal(self.head_scale),
                    bias_init=nn.initializers.zeros)(x)


class LogStd(nn.Module):
  """A state-independent log standard deviation ``[dim]``."""

  dim: int
  init: float

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.param("log_std", nn.initializers.constant(self.init), (self.dim,))


class GaussianActor(nn.Module):
  """Mean ``[d]`` of the pre-squash Gaussian and its log std ``[d]``, concatenated ``[2d]``."""

  hidden_dim: int
  num_layers: int
  action_dim: int
  activation: str
  log_std_init: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mean = MLP(self.hidden_dim, self.num_layers, self.action_dim, self.activation, 0.01)(x)
    log_std = LogStd(self.action_dim, self.log_std_init)()
    return jnp.concatenate([mean, jnp.broadcast_to(log_std, mean.shape)], axis=-1)


def _module_pair(module: nn.Module, in_dim: int) -> Component:
  def init(key: jax.Array) -> Params:
    return module.init(key, jnp.zeros((in_dim,), jnp.float32))["params"]

  def apply(params: Params, x: jax.Array) -> jax.Array:
    return module.apply({"params": params}, x)

  return Component(init, apply)


# ---------------------------------------------------------------------------------------------
# Distributions (one example; ``dist`` is the actor's output)
# ---------------------------------------------------------------------------------------------


def categorical_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
  """``log pi(a)`` of a categorical over ``logits [A]`` for ``action []``."""
  return jax.nn.log_softmax(logits)[action]


def categorical_entropy(logits: jax.Array) -> jax.Array:
  """Entropy (nats) of a categorical over ``logits [A]``."""
  log_p = jax.nn.log_softmax(logits)
  return -jnp.sum(jnp.exp(log_p) * log_p)


def categorical_kl(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
  """Exact ``KL(p || q)`` (nats) between categoricals over logits ``[A]``."""
  log_p, log_q = jax.nn.log_softmax(logits_p), jax.nn.log_softmax(logits_q)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q))


def _split_gaussian(dist: jax.Array) -> tuple[jax.Array, jax.Array]:
  half = dist.shape[-1] // 2
  return dist[..., :half], dist[..., half:]


def gaussian_log_prob(dist: jax.Array, u: jax.Array) -> jax.Array:
  """``log N(u; mean, std^2)`` of a pre-squash action ``u [d]`` (diagonal Gaussian).

  The tanh squashing adds ``-sum log(1 - tanh(u)^2)``, the same for every policy, so it cancels
  in PPO's probability ratio and is left out.
  """
  mean, log_std = _split_gaussian(dist)
  return jnp.sum(-0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * _LOG_2PI)


def gaussian_entropy(dist: jax.Array) -> jax.Array:
  """Entropy of the pre-squash diagonal Gaussian (the squashed policy's entropy differs by the
  expected log-Jacobian)."""
  _, log_std = _split_gaussian(dist)
  return jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0))


def gaussian_kl(dist_p: jax.Array, dist_q: jax.Array) -> jax.Array:
  """Closed-form ``KL(p || q)`` of diagonal Gaussians; it equals the KL of the tanh-squashed
  policies (KL is invariant under the bijection tanh)."""
  mean_p, log_std_p = _split_gaussian(dist_p)
  mean_q, log_std_q = _split_gaussian(dist_q)
  var_p, var_q = jnp.exp(2 * log_std_p), jnp.exp(2 * log_std_q)
  return jnp.sum(log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5)


def greedy_probs(logits: jax.Array) -> jax.Array:
  """One-hot of ``argmax logits [A]``, ties sharing the mass equally."""
  best = (logits >= jnp.max(logits)).astype(jnp.float32)
  return best / jnp.sum(best)


# ---------------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PolicyAgent:
  """An actor-critic policy (static: hashable, safe to close over in jitted code).

  Implements :class:`mbrl_drift.agents.base.Agent`: selections ``("greedy", "sample")``, no
  depth axis. Optional capabilities: :meth:`action_distribution` (discrete actions) and
  :meth:`value`.

  Attributes:
    config: architecture and training settings.
    spec: the environment's spaces.
    has_base: whether the agent carries a frozen ``base/actor`` (fine-tuned runs).
    output_hook: optional ``hook(path, output)`` applied to each component's output
      (activation faults); ``None`` for the intact agent.
  """

  config: PolicyConfig
  spec: EnvSpec
  has_base: bool = False
  output_hook: OutputHook | None = None

  # -- components -----------------------------------------------------------------------------

  def _actor_module(self) -> nn.Module:
    c, s = self.config, self.spec
    if s.discrete:
      return MLP(c.hidden_dim, c.num_layers, s.action_dim, c.activation, head_scale=0.01)
    return GaussianActor(c.hidden_dim, c.num_layers, s.action_dim, c.activation, c.log_std_init)

  @property
  def components(self) -> dict[str, Component]:
    """Path -> ``(init, apply)`` of every component of this agent."""
    c, s = self.config, self.spec
    actor = _module_pair(self._actor_module(), s.obs_dim)
    pairs = {
        ACTOR: actor,
        CRITIC: _module_pair(MLP(c.hidden_dim, c.num_layers, 1, c.activation, 1.0), s.obs_dim),
    }
    if self.has_base:
      pairs[BASE_ACTOR] = actor
    return pairs

  @property
  def component_paths(self) -> tuple[str, ...]:
    return tuple(self.components)

  @property
  def trainable_paths(self) -> tuple[str, ...]:
    """The components that training updates (``base/actor`` is frozen)."""
    return (ACTOR, CRITIC)

  def init(self, key: jax.Array) -> Params:
    """Initial parameters: one subtree per component path (``base/actor`` a copy of
    ``actor``)."""
    params = init_components({ACTOR: self.components[ACTOR],
                              CRITIC: self.components[CRITIC]}, key)
    if self.has_base:
      params["base"] = {"actor": params[ACTOR]}
    return params

  @property
  def gamma(self) -> float:
    return self.config.gamma

  @property
  def eval_axes(self) -> EvalAxes:
    return EvalAxes(selections=SELECTIONS, depth_name=None)

  def _apply(self, path: str, params: Params, x: jax.Array) -> jax.Array:
    out = self.components[path].apply(get_path(params, path), x)
    if self.output_hook is not None:
      out = self.output_hook(path, out)
    return out

  # -- network calls on one example -----------------------------------------------------------

  def actor_output(self, params: Params, obs: jax.Array, path: str = ACTOR) -> jax.Array:
    """The actor's distribution parameters for ``obs [obs_dim]``: logits ``[A]`` (discrete) or
    ``[mean, log_std]`` ``[2d]`` of the pre-squash Gaussian (continuous)."""
    return self._apply(path, params, jnp.ravel(obs).astype(jnp.float32))

  def value(self, params: Params, obs: jax.Array) -> jax.Array:
    """The critic's ``V(obs) []`` for ``obs [obs_dim]``."""
    return self._apply(CRITIC, params, jnp.ravel(obs).astype(jnp.float32))[0]

  def action_distribution(self, params: Params, obs: jax.Array, path: str = ACTOR) -> jax.Array:
    """``pi(. | obs)``: action probabilities ``[A]`` (discrete actions only).

    Args:
      params: agent parameters.
      obs: ``[obs_dim]`` observation.
      path: ``"actor"`` (default) or ``"base/actor"`` for the frozen base policy.

    Raises:
      ValueError: for continuous actions (a density, not a table of probabilities).
    """
    if not self.spec.discrete:
      raise ValueError("action_distribution needs discrete actions; this policy is a Gaussian")
    return jax.nn.softmax(self.actor_output(params, obs, path))

  # -- distributions (one example) ------------------------------------------------------------

  def log_prob(self, dist: jax.Array, action: jax.Array) -> jax.Array:
    """``log pi(action)`` under the actor output ``dist``; continuous ``action`` is the
    pre-squash ``u [d]``."""
    if self.spec.discrete:
      return categorical_log_prob(dist, action)
    return gaussian_log_prob(dist, action)

  def entropy(self, dist: jax.Array) -> jax.Array:
    return categorical_entropy(dist) if self.spec.discrete else gaussian_entropy(dist)

  def kl(self, dist_p: jax.Array, dist_q: jax.Array) -> jax.Array:
    """Exact ``KL(p || q)`` between two actor outputs."""
    if self.spec.discrete:
      return categorical_kl(dist_p, dist_q)
    return gaussian_kl(dist_p, dist_q)

  def sample(self, key: jax.Array, dist: jax.Array
             ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """A training-time sample from the actor output ``dist`` of one observation.

    A non-finite ``dist`` is replaced by a uniform categorical (discrete) or a standard normal
    pre-squash Gaussian (continuous), so the action is random and nothing raises.

    Returns:
      ``(action, env_action, log_prob, nonfinite)``: ``action`` is int32 ``[]`` or the
      pre-squash ``u [d]``; ``env_action`` the environment's action.
    """
    nonfinite = ~jnp.all(jnp.isfinite(dist))
    dist = jnp.where(nonfinite, 0.0, dist)
    if self.spec.discrete:
      action = jax.random.categorical(key, dist).astype(jnp.int32)
    else:
      mean, log_std = _split_gaussian(dist)
      action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    log_prob = self.log_prob(dist, action)
    return action, self.to_env_action(action), log_prob, nonfinite

  def to_env_action(self, action: jax.Array) -> jax.Array:
    """Agent action (int32, or pre-squash ``u [d]``) -> environment action."""
    if self.spec.discrete:
      return self.spec.to_env_action(action)
    return self.spec.to_env_action(jnp.tanh(action))

  # -- the evaluation policy ------------------------------------------------------------------

  def act(self, params: Params, key: jax.Array, obs: jax.Array, args: EvalArgs) -> ActOut:
    """Selects an action for ``obs [obs_dim]``.

    ``greedy`` takes the most probable action (the Gaussian's mean, squashed); ``sample`` draws
    from the policy, with logits divided by (or the standard deviation multiplied by)
    ``args.temperature`` when it is positive. ``args.epsilon`` and ``args.depth`` are ignored.
    A non-finite actor output gives ``nonfinite=True`` and a uniformly random action.
    """
    dist = self.actor_output(params, obs)
    nonfinite = ~jnp.all(jnp.isfinite(dist))
    temperature = jnp.where(args.temperature > 0, args.temperature, 1.0)
    greedy = args.selection == GREEDY
    key_sample, key_uniform = jax.random.split(key)
    if self.spec.discrete:
      num_actions = self.spec.action_dim
      logits = jnp.where(nonfinite, 0.0, dist)
      sample_probs = jax.nn.softmax(logits / temperature)
      probs = jnp.where(greedy, greedy_probs(logits), sample_probs)
      sampled = jax.random.categorical(key_sample, logits / temperature)
      action = jnp.where(greedy, jnp.argmax(logits), sampled).astype(jnp.int32)
      random = jax.random.randint(key_uniform, (), 0, num_actions, jnp.int32)
      action = jnp.where(nonfinite, random, action)
      probs = jnp.where(nonfinite, jnp.full((num_actions,), 1.0 / num_actions), probs)
      return ActOut(action=self.spec.to_env_action(action), action_probs=probs,
                    nonfinite=nonfinite)
    mean, log_std = _split_gaussian(jnp.where(nonfinite, 0.0, dist))
    u = mean + temperature * jnp.exp(log_std) * jax.random.normal(key_sample, mean.shape)
    action = jnp.tanh(jnp.where(greedy, mean, u))
    random = jax.random.uniform(key_uniform, mean.shape, minval=-1.0, maxval=1.0)
    action = jnp.where(nonfinite, random, action)
    return ActOut(action=self.spec.to_env_action(action), action_probs=None, nonfinite=nonfinite)

  def for_depth(self, max_depth: int) -> "PolicyAgent":
    """The same agent (a policy has no planning depth)."""
    del max_depth
    return self

  def with_output_hook(self, hook: OutputHook | None) -> "PolicyAgent":
    """The same agent whose component outputs pass through ``hook`` (activation faults)."""
    return dataclasses.replace(self, output_hook=hook)


def build(config, spec: EnvSpec) -> PolicyAgent:
  """The agent of a :class:`~mbrl_drift.config.TrainConfig` (``base/actor`` when
  ``config.init_from`` is set)."""
  return PolicyAgent(config=config.agent, spec=spec, has_base=bool(config.init_from))
