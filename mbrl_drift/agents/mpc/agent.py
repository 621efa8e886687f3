"""The planning agent: world model and value function as separate, path-addressed components.

Parameters are one nested dict whose top-level keys name components (docs/design.md)::

  {"world_model": {"encoder", "dynamics", "reward", "termination"[, "decoder"]},
   "value": ...[, "actor": ...]}

Each component is an ``(init, apply)`` pair over its own subtree, so a fault, a freeze or a swap of
one component never touches the others. Actions come from planning (:mod:`mbrl_drift.agents.mpc.planner`)
over the learned latent dynamics with the value as terminal bootstrap.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mbrl_drift.agents.base import (ActOut, Component, EnvSpec, EvalArgs, EvalAxes, OutputHook,
                                    Params, get_path, init_components)
from mbrl_drift.config import AgentConfig
from mbrl_drift.networks import mlp_pair

#: The planner's action-selection rules (``EvalArgs.selection`` indexes them).
SELECTIONS = ("greedy", "epsilon", "boltzmann")

@dataclasses.dataclass(frozen=True)
class PlannerAgent:
  """A model-based planning agent (static: hashable, safe to close over in jitted code).

  Implements :class:`mbrl_drift.agents.base.Agent`; its depth axis is the planning horizon and
  its selection rules are greedy, epsilon-greedy and Boltzmann over plan scores.

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
    return init_components(self.components, key)

  @property
  def gamma(self) -> float:
    return self.config.gamma

  @property
  def eval_axes(self) -> EvalAxes:
    return EvalAxes(selections=SELECTIONS, depth_name="horizon",
                    depth_default=self.config.horizon, depth_max=self.config.max_horizon)

  def act(self, params: Params, key: jax.Array, obs: jax.Array, args: EvalArgs) -> ActOut:
    """Plans from ``obs [obs_dim]`` at horizon ``args.depth`` and selects an action."""
    from mbrl_drift.agents.mpc import planner

    temperature = jnp.where(args.temperature > 0, args.temperature,
                            self.config.boltzmann_temperature)
    plan = planner.act(self, params, key, obs, args.depth, args.selection, args.epsilon,
                       temperature)
    return ActOut(action=plan.action, action_probs=plan.action_probs, nonfinite=plan.nonfinite)

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
    return self.spec.to_env_action(action)

  def from_env_action(self, env_action: jax.Array) -> jax.Array:
    """Environment action -> planner action (inverse of :meth:`to_env_action`)."""
    return self.spec.from_env_action(env_action)

  def for_depth(self, max_depth: int) -> "PlannerAgent":
    """The same agent compiled for horizons up to ``max_depth`` (see :meth:`with_max_horizon`)."""
    return self.with_max_horizon(max_depth)

  def with_max_horizon(self, max_horizon: int) -> "PlannerAgent":
    """The same agent whose planner is compiled for horizons up to ``max_horizon`` only.

    The exhaustive planner builds its tree to ``max_horizon`` whatever horizon is asked for, so
    evaluating at short horizons with a deep tree wastes ``A**(max_horizon - horizon)`` times
    the model calls. Parameters are unaffected.
    """
    return dataclasses.replace(self, config=dataclasses.replace(
        self.config, max_horizon=max_horizon, horizon=min(self.config.horizon, max_horizon)))

  def with_output_hook(self, hook: OutputHook | None) -> "PlannerAgent":
    """The same agent whose component outputs pass through ``hook`` (activation faults)."""
    return dataclasses.replace(self, output_hook=hook)

