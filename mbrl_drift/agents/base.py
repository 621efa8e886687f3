"""The agent interface: what every architecture provides, and nothing more.

An *agent definition* (:class:`AgentDef`) is registered under a name (``"planner"``,
``"policy"``, ...) and says how to build the agent for an environment and how to train it.
A built agent (:class:`Agent`) is a static, hashable object (safe to close over in jitted code)
with

* ``components``: component path -> :class:`Component` ``(init, apply)`` over one subtree of
  the parameter dict (the fault surface; paths such as ``"world_model/dynamics"``,
  ``"value"``, ``"actor"``, ``"base/actor"``),
* ``init(key) -> params``,
* ``act(params, key, obs, eval_args) -> ActOut``: the evaluation policy for one observation,
* ``eval_axes``: the action-selection rules it supports and its planning-depth axis, if any,
* ``with_output_hook(hook)``: the same agent with every component output passed through
  ``hook(path, output)`` (activation faults),
* ``for_depth(max_depth)``: the same agent compiled for planning depths up to ``max_depth``.

Training follows purejaxrl (Lu et al. 2022): ``AgentDef.make_train(config, hooks)`` returns a
:class:`Trainer` of pure functions whose ``train(key)`` is one jittable run built from
``lax.scan``; the host sees only chunk boundaries (``init`` + ``run_chunk``).

Everything outside :mod:`mbrl_drift.agents` (training runs, checkpoints, evaluation, faults,
component health, sweeps, reports, the pytest plugin, the CLI) uses only this interface.
Optional capabilities are plain methods that an agent either has or has not (checked with
``hasattr``, never by name): ``encode`` / ``transition`` / ``value`` for a latent world model
and value function (component health), ``action_distribution`` for a policy with explicit action
probabilities (reversion metrics).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import envs

Params = dict[str, Any]
#: ``hook(component_path, output) -> output``: applied to every component output (activation faults).
OutputHook = Callable[[str, jax.Array], jax.Array]


class Component(NamedTuple):
  """An ``(init, apply)`` pair over one parameter subtree."""

  init: Callable[[jax.Array], Params]
  apply: Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """What an agent needs to know about an environment's spaces.

  Attributes:
    obs_dim: flat observation size.
    action_dim: number of discrete actions, or the continuous action dimension.
    discrete: whether actions are discrete.
    action_low, action_high: bounds of continuous actions (agents act in ``[-1, 1]``).
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

  def to_env_action(self, action: jax.Array) -> jax.Array:
    """Agent action -> environment action (rescales continuous ``[-1, 1]`` to the bounds)."""
    if self.discrete:
      return action.astype(jnp.int32)
    low = jnp.asarray(self.action_low, jnp.float32)
    high = jnp.asarray(self.action_high, jnp.float32)
    return low + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)

  def from_env_action(self, env_action: jax.Array) -> jax.Array:
    """Environment action -> agent action (inverse of :meth:`to_env_action`)."""
    if self.discrete:
      return env_action.astype(jnp.int32)
    low = jnp.asarray(self.action_low, jnp.float32)
    high = jnp.asarray(self.action_high, jnp.float32)
    return 2.0 * (jnp.reshape(env_action, low.shape) - low) / (high - low) - 1.0


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


def init_components(components: Mapping[str, Component], key: jax.Array) -> Params:
  """Initial parameters of ``components``: one subtree per path, one key per component."""
  params: Params = {}
  for subkey, (path, component) in zip(jax.random.split(key, len(components)),
                                        components.items()):
    params = set_path(params, path, component.init(subkey))
  return params


# ---------------------------------------------------------------------------------------------
# Evaluation policy
# ---------------------------------------------------------------------------------------------


class EvalArgs(NamedTuple):
  """Traced arguments of :meth:`Agent.act` (a whole grid of them vmaps in one compilation).

  Attributes:
    depth: int32 ``[]`` planning depth on the agent's depth axis (the planner's horizon);
      ignored by agents without one.
    selection: int32 ``[]`` index into ``eval_axes.selections``.
    epsilon: float32 ``[]`` probability of a uniformly random action (``"epsilon"`` selection).
    temperature: float32 ``[]`` temperature of stochastic selection; ``0`` (or less) means the
      agent's configured default.
  """

  depth: jax.Array
  selection: jax.Array
  epsilon: jax.Array
  temperature: jax.Array


def eval_args(depth: int | jax.Array = 0, selection: int | jax.Array = 0,
              epsilon: float | jax.Array = 0.0, temperature: float | jax.Array = 0.0) -> EvalArgs:
  """:class:`EvalArgs` as arrays of the right dtypes."""
  return EvalArgs(depth=jnp.asarray(depth, jnp.int32), selection=jnp.asarray(selection, jnp.int32),
                  epsilon=jnp.asarray(epsilon, jnp.float32),
                  temperature=jnp.asarray(temperature, jnp.float32))


class ActOut(NamedTuple):
  """Output of :meth:`Agent.act` for one observation.

  Attributes:
    action: environment action (int32 ``[]`` or float32 ``[d]``).
    action_probs: ``[A]`` probabilities the selection rule gave each discrete action, or
      ``None`` where the agent has none (continuous actions, sampled search).
    nonfinite: bool ``[]``, True when a non-finite value met the decision (e.g. under a
      fault); the agent then acts uniformly at random instead of raising.
  """

  action: jax.Array
  action_probs: jax.Array | None
  nonfinite: jax.Array


@dataclasses.dataclass(frozen=True)
class EvalAxes:
  """The evaluation axes an agent supports.

  Attributes:
    selections: names of its action-selection rules; index ``i`` is ``EvalArgs.selection = i``
      and the first is the default (``("greedy", "epsilon", "boltzmann")`` for the planner,
      ``("greedy", "sample")`` for a policy).
    depth_name: name of its planning-depth axis (``"horizon"``), ``None`` when it has none.
    depth_default: the depth it was trained at.
    depth_max: the largest depth one compiled agent supports (``for_depth`` raises it).
  """

  selections: tuple[str, ...]
  depth_name: str | None = None
  depth_default: int = 0
  depth_max: int = 0

  def selection_index(self, name: str) -> int:
    """Index of a selection rule; a ``ValueError`` names the valid choices."""
    if name not in self.selections:
      raise ValueError(f"unknown policy {name!r}; choose from {list(self.selections)}")
    return self.selections.index(name)

  def check_depth(self, depth: int) -> None:
    """Raises a ``ValueError`` for a depth outside ``[1, depth_max]`` (or any depth but the
    default when there is no depth axis)."""
    if self.depth_name is None:
      if depth not in (0, None):
        raise ValueError(f"this agent has no planning depth; got horizon {depth}")
      return
    if not 1 <= int(depth) <= self.depth_max:
      raise ValueError(f"{self.depth_name} {depth} is outside [1, {self.depth_max}] "
                       f"(the run's largest {self.depth_name})")


class Agent(Protocol):
  """A built agent (static and hashable). See the module docstring."""

  spec: EnvSpec

  @property
  def components(self) -> Mapping[str, Component]: ...

  @property
  def eval_axes(self) -> EvalAxes: ...

  @property
  def gamma(self) -> float: ...

  def init(self, key: jax.Array) -> Params: ...

  def act(self, params: Params, key: jax.Array, obs: jax.Array, args: EvalArgs) -> ActOut: ...

  def with_output_hook(self, hook: OutputHook | None) -> "Agent": ...

  def for_depth(self, max_depth: int) -> "Agent": ...


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


class Trainer(NamedTuple):
  """The functions of one training configuration (all pure; jit and vmap them freely).

  The training state is the agent's own pytree; it has at least ``params`` (the agent's
  parameters) and ``env_steps`` (int32 ``[]`` environment steps taken).

  Attributes:
    config: the :class:`~mbrl_drift.config.TrainConfig`.
    agent: the agent being trained.
    env: the environment.
    env_params: the training environment's parameters.
    init: ``(key, params=None) -> state``; ``params`` starts the run from given agent
      parameters (fine-tuning) instead of a fresh initialisation.
    run_chunk: ``state -> (state, metrics)``: ``iterations_per_chunk`` iterations with their
      updates; ``metrics`` is a flat ``"group/name"`` dict of scalars.
    train: ``key -> (state, metrics)``: the whole run, metrics stacked ``[num_chunks]``.
    iterations_per_chunk: iterations per chunk.
  """

  config: Any
  agent: Agent
  env: envs.Environment
  env_params: Any
  init: Callable[..., Any]
  run_chunk: Callable[[Any], tuple[Any, dict[str, jax.Array]]]
  train: Callable[[jax.Array], tuple[Any, dict[str, jax.Array]]]
  iterations_per_chunk: int


def whole_run(init: Callable[..., Any], run_chunk: Callable[[Any], tuple[Any, Any]],
              num_chunks: int) -> Callable[[jax.Array], tuple[Any, Any]]:
  """``train(key) -> (state, metrics)``: ``init(key)``, then ``num_chunks`` chunks in one
  ``lax.scan`` (metrics stacked ``[num_chunks]``), the ``train`` of every :class:`Trainer`."""

  def train(key: jax.Array) -> tuple[Any, Any]:
    return jax.lax.scan(lambda state, _: run_chunk(state), init(key), None, length=num_chunks)

  return train
