"""The planning agent: world model and value function as separate, path-addressed components.

Parameters are one nested dict whose top-level keys name components (DESIGN.md)::

  {"world_model": {"encoder", "dynamics", "reward", "termination"[, "decoder"]},
   "value": ...[, "actor": ...]}

Each component is an ``(init, apply)`` pair over its own subtree, so a fault, a freeze or a swap of
one component never touches the others. Actions come from planning (:mod:`mbrl_drift.planner`)
over the learned latent dynamics with the value as terminal bootstrap.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import envs
from mbrl_drift.config import AgentConfig
from mbrl_drift.networks import mlp_pair

Params = dict[str, Any]
#: ``hook(component_path, output) -> output``: applied to every component output (activation faults).
OutputHook = Callable[[str, jax.Array], jax.Array]


class Component(NamedTuple):
  """An ``(init, apply)`` pair over one parameter subtree."""

  init: Callable[[jax.Array], Params]
  apply: Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """What the agent needs to know about an environment's spaces.

  Attributes:
    obs_dim: flat observation size.
    action_dim: number of discrete actions, or the continuous action dimension.
    discrete: whether actions are discrete.
    action_low, action_high: bounds of continuous actions (the agent plans in ``[-1, 1]``).
  """

  obs_dim: int
  action_dim: int
  discrete: bool
  action_low: tuple[float, ...] = ()
  action_high: tuple[float, ...] = ()

  @classmethod
  def from_env(cls, env: envs.Environment, env_params: Any) -> "EnvSpec":
    obs_space = env.observation_space(env_params)
    action_space = env.action_space(env_params)
    obs_dim = int(np.prod(obs_space.shape))
    if isinstance(action_space, envs.Discrete):
      return cls(obs_dim=obs_dim, action_dim=int(action_space.n), discrete=True)
    shape = tuple(action_space.shape)
    low = np.broadcast_to(np.asarray(action_space.low, np.float32), shape).ravel()
    high = np.broadcast_to(np.asarray(action_space.high, np.float32), shape).ravel()
    return cls(obs_dim=obs_dim, action_dim=int(np.prod(shape)), discrete=False,
               action_low=tuple(float(x) for x in low), action_high=tuple(float(x) for x in high))


def get_path(params: Params, path: str) -> Any:
  """The subtree of ``params`` at ``path`` (``"world_model/dynamics"``)."""
  node = params
  for part in path.split("/"):
    node = node[part]
  return node


def set_path(params: Params, path: str, value: Any) -> Params:
  """A copy of ``params`` with ``value`` at ``path`` (created if absent; the input is unchanged)."""
  head, *rest = path.split("/")
  if not rest:
    return {**params, head: value}
  return {**params, head: set_path(params.get(head, {}), "/".join(rest), value)}


@dataclasses.dataclass(frozen=True)
class Agent:
  """A model-based planning agent (static: hashable, safe to close over in jitted code).

  Attributes:
    config: architecture and planner settings.
    spec: the environment's spaces.
    output_hook: optional ``hook(path, output)`` applied to each component's output, used by
      activation faults; ``None`` for the intact agent.
  """

  config: AgentConfig
  spec: EnvSpec
  output_hook: OutputHook | None = None

  # -- components -----------------------------------------------------------------------------

  @property
  def components(self) -> dict[str, Component]:
    """Path -> ``(init, apply)`` of every component of this agent."""
    c, s = self.config, self.spec
    latent, hidden, layers = c.latent_dim, c.hidden_dim, c.num_layers
    transition_in = latent + s.action_dim
    pairs = {
        "world_model/encoder": mlp_pair(hidden, layers, s.obs_dim, latent,
                                        output_transform=jnp.tanh),
        "world_model/dynamics": mlp_pair(hidden, layers, transition_in, latent,
                                         output_transform=jnp.tanh),
        "world_model/reward": mlp_pair(hidden, layers, transition_in, 1, zero_head=True),
        "world_model/termination": mlp_pair(hidden, layers, transition_in, 1, zero_head=True),
        "value": mlp_pair(hidden, layers, latent, 1, zero_head=True),
    }
    if c.use_decoder:
      pairs["world_model/decoder"] = mlp_pair(hidden, layers, latent, s.obs_dim)
    if c.use_actor:
      pairs["actor"] = mlp_pair(hidden, layers, latent, s.action_dim, zero_head=True)
    return {path: Component(*pair) for path, pair in pairs.items()}

  @property
  def component_paths(self) -> tuple[str, ...]:
    return tuple(self.components)

  def init(self, key: jax.Array) -> Params:
    """Initial parameters: a nested dict with one subtree per component path."""
    params: Params = {}
    components = self.components
    for subkey, (path, component) in zip(jax.random.split(key, len(components)),
                                          components.items()):
      params = set_path(params, path, component.init(subkey))
    return params

  def _apply(self, path: str, params: Params, x: jax.Array) -> jax.Array:
    out = self.components[path].apply(get_path(params, path), x)
    if self.output_hook is not None:
      out = self.output_hook(path, out)
    return out

  # -- model calls on a single example (vmap for batches) -------------------------------------

  def action_input(self, action: jax.Array) -> jax.Array:
    """Model input of an action: one-hot ``[A]`` (discrete) or ``[-1, 1]``-scaled ``[d]``."""
    if self.spec.discrete:
      return jax.nn.one_hot(action, self.spec.action_dim)
    return jnp.reshape(action, (self.spec.action_dim,)).astype(jnp.float32)

  def encode(self, params: Params, obs: jax.Array) -> jax.Array:
    """``obs [obs_dim] -> z [latent_dim]``."""
    return self._apply("world_model/encoder", params, jnp.ravel(obs).astype(jnp.float32))

  def transition(self, params: Params, z: jax.Array, action_input: jax.Array
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One latent step: ``(z [L], action_input [A]) -> (z_next [L], reward [], term_logit [])``."""
    za = jnp.concatenate([z, action_input])
    z_next = self._apply("world_model/dynamics", params, za)
    reward = self._apply("world_model/reward", params, za)[0]
    termination_logit = self._apply("world_model/termination", params, za)[0]
    return z_next, reward, termination_logit

  def value(self, params: Params, z: jax.Array) -> jax.Array:
    """``z [L] -> V(z) []``."""
    return self._apply("value", params, z)[0]

  def decode(self, params: Params, z: jax.Array) -> jax.Array:
    """``z [L] -> reconstructed obs [obs_dim]`` (requires ``use_decoder``)."""
    return self._apply("world_model/decoder", params, z)

  def actor_output(self, params: Params, z: jax.Array) -> jax.Array:
    """Policy prior: logits ``[A]`` (discrete) or a ``[-1, 1]`` mean action ``[d]``."""
    out = self._apply("actor", params, z)
    return out if self.spec.discrete else jnp.tanh(out)

  # -- environment actions --------------------------------------------------------------------

  def to_env_action(self, action: jax.Array) -> jax.Array:
    """Planner action -> environment action (rescales continuous ``[-1, 1]`` to the bounds)."""
    if self.spec.discrete:
      return action.astype(jnp.int32)
    low = jnp.asarray(self.spec.action_low, jnp.float32)
    high = jnp.asarray(self.spec.action_high, jnp.float32)
    return low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)

  def from_env_action(self, env_action: jax.Array) -> jax.Array:
    """Environment action -> planner action (inverse of :meth:`to_env_action`)."""
    if self.spec.discrete:
      return env_action.astype(jnp.int32)
    low = jnp.asarray(self.spec.action_low, jnp.float32)
    high = jnp.asarray(self.spec.action_high, jnp.float32)
    return 2.0 * (jnp.reshape(env_action, low.shape) - low) / (high - low) - 1.0

  def with_max_horizon(self, max_horizon: int) -> "Agent":
    """The same agent whose planner is compiled for horizons up to ``max_horizon`` only.

    The exhaustive planner builds its tree to ``max_horizon`` whatever horizon is asked for, so
    evaluating at short horizons with a deep tree wastes ``A**(max_horizon - horizon)`` times
    the model calls. Parameters are unaffected.
    """
    return dataclasses.replace(self, config=dataclasses.replace(
        self.config, max_horizon=max_horizon, horizon=min(self.config.horizon, max_horizon)))

  def with_output_hook(self, hook: OutputHook | None) -> "Agent":
    """The same agent whose component outputs pass through ``hook`` (activation faults)."""
    return dataclasses.replace(self, output_hook=hook)

