"""Core environment contract: pure ``reset`` / ``step`` over frozen pytree dataclasses.

The contract follows gymnax 1.x (six-value step)::

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

Subclasses implement ``reset_env`` and ``step_env`` for a single (unbatched) environment; the
base class adds auto-reset, so ``step`` can run inside ``lax.scan`` forever. Batch with
``jax.vmap``. Nothing here mutates hidden state: every call is a pure function of its arguments.

This package depends on jax (and gymnasium for the adapters) only, never on ``mbrl_drift``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PRNGKey = jax.Array


def static_field(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
  """A dataclass field that is pytree *metadata* (hashable, not traced), e.g. a layout."""
  metadata = {**kwargs.pop("metadata", {}), "static": True}
  return dataclasses.field(default=default, metadata=metadata, **kwargs)


_T = TypeVar("_T")


def pytree_dataclass(cls: type[_T]) -> type[_T]:
  """Makes ``cls`` a frozen dataclass registered as a JAX pytree.

  Fields declared with :func:`static_field` become static metadata; all other fields are
  leaves, so params and states can be vmapped, traced and drifted. Instances gain a
  ``replace(**changes)`` method like ``flax.struct.dataclass``.
  """
  cls = dataclasses.dataclass(frozen=True)(cls)
  fields = dataclasses.fields(cls)
  data_fields = [f.name for f in fields if not f.metadata.get("static", False)]
  meta_fields = [f.name for f in fields if f.metadata.get("static", False)]
  jax.tree_util.register_dataclass(cls, data_fields=data_fields, meta_fields=meta_fields)
  cls.replace = dataclasses.replace  # type: ignore[attr-defined]
  return cls


# ---------------------------------------------------------------------------------------------
# Spaces
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Discrete:
  """``n`` actions (or observations) labelled ``0 .. n-1``."""

  n: int
  dtype: Any = jnp.int32

  @property
  def shape(self) -> tuple[int, ...]:
    return ()

  def sample(self, key: PRNGKey) -> Array:
    """Uniform sample, shape ``[]``."""
    return jax.random.randint(key, (), 0, self.n, dtype=self.dtype)

  def contains(self, x: Any) -> bool:
    x = np.asarray(x)
    return bool(x.shape == () and np.issubdtype(x.dtype, np.integer) and 0 <= int(x) < self.n)


@dataclasses.dataclass(frozen=True)
class Box:
  """A box ``[low, high]`` of the given shape; bounds may be infinite."""

  low: Any
  high: Any
  shape: tuple[int, ...]
  dtype: Any = jnp.float32

  def sample(self, key: PRNGKey) -> Array:
    """Uniform sample inside finite bounds (standard normal where a bound is infinite)."""
    low = jnp.broadcast_to(jnp.asarray(self.low, self.dtype), self.shape)
    high = jnp.broadcast_to(jnp.asarray(self.high, self.dtype), self.shape)
    finite = jnp.isfinite(low) & jnp.isfinite(high)
    key_uniform, key_normal = jax.random.split(key)
    uniform = jax.random.uniform(
        key_uniform, self.shape, self.dtype,
        jnp.where(finite, low, 0.0), jnp.where(finite, high, 1.0))
    normal = jax.random.normal(key_normal, self.shape, self.dtype)
    return jnp.where(finite, uniform, jnp.clip(normal, low, high))

  def contains(self, x: Any) -> bool:
    x = np.asarray(x)
    low = np.broadcast_to(np.asarray(self.low, np.float64), self.shape)
    high = np.broadcast_to(np.asarray(self.high, np.float64), self.shape)
    return bool(x.shape == tuple(self.shape) and np.all(x >= low) and np.all(x <= high))


Space = Discrete | Box

# ---------------------------------------------------------------------------------------------
# Environment base
# ---------------------------------------------------------------------------------------------

StateT = TypeVar("StateT")
ParamsT = TypeVar("ParamsT")


class Environment(Generic[StateT, ParamsT]):
  """Base class of every JAX environment in ``envs``.

  Subclasses implement, for one environment (no batch axis):

  * ``default_params -> Params``
  * ``reset_env(key, params) -> (obs, state)``
  * ``step_env(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)``
  * ``observation_space(params)`` and ``action_space(params)``

  ``step_env`` returns ``reward`` as float32 ``[]``, ``terminated`` / ``truncated`` as bool ``[]``
  and ``info`` as a dict of arrays whose structure never depends on the step (so it scans).

  :meth:`step` wraps ``step_env`` with auto-reset: when an episode ends, the returned ``obs`` and
  ``state`` are those of a fresh episode, and ``info["final_observation"]`` holds the pre-reset
  observation (equal to ``obs`` when the episode did not end). ``reward``, ``terminated``,
  ``truncated`` and the rest of ``info`` describe the transition that just happened.
  """

  #: Registry name, e.g. ``"CartPole"``; the gymnasium id is ``f"mbrl_drift/{name}-v0"``.
  name: str = "Environment"

  @property
  def default_params(self) -> ParamsT:
    raise NotImplementedError

  def reset_env(self, key: PRNGKey, params: ParamsT) -> tuple[Array, StateT]:
    raise NotImplementedError

  def step_env(
      self, key: PRNGKey, state: StateT, action: Array, params: ParamsT
  ) -> tuple[Array, StateT, Array, Array, Array, dict[str, Array]]:
    raise NotImplementedError

  def observation_space(self, params: ParamsT) -> Space:
    raise NotImplementedError

  def action_space(self, params: ParamsT) -> Space:
    raise NotImplementedError

  # -- public, auto-resetting API ---------------------------------------------------------------

  def reset(self, key: PRNGKey, params: ParamsT | None = None) -> tuple[Array, StateT]:
    """Starts an episode.

    Args:
      key: PRNG key.
      params: environment parameters (``default_params`` when ``None``).

    Returns:
      ``(obs, state)``: observation ``[*obs_shape]`` and the environment state.
    """
    if params is None:
      params = self.default_params
    return self.reset_env(key, params)

  def step(
      self, key: PRNGKey, state: StateT, action: Array, params: ParamsT | None = None
  ) -> tuple[Array, StateT, Array, Array, Array, dict[str, Array]]:
    """Steps one environment and auto-resets it when the episode ends.

    Args:
      key: PRNG key (split internally between the transition and the reset).
      state: current state.
      action: action, ``[]`` int32 for discrete or ``[*action_shape]`` float32 for continuous.
      params: environment parameters (``default_params`` when ``None``).

    Returns:
      ``(obs, state, reward, terminated, truncated, info)`` where ``obs`` and ``state`` belong
      to a new episode if this one ended, and ``info["final_observation"]`` is the observation
      reached by this transition.
    """
    if params is None:
      params = self.default_params
    key_step, key_reset = jax.random.split(key)
    obs_st, state_st, reward, terminated, truncated, info = self.step_env(
        key_step, state, action, params)
    obs_re, state_re = self.reset_env(key_reset, params)
    done = jnp.logical_or(terminated, truncated)
    state = jax.tree.map(lambda re, st: jnp.where(done, re, st), state_re, state_st)
    obs = jnp.where(done, obs_re, obs_st)
    info = {**info, "final_observation": obs_st}
    return obs, state, reward, terminated, truncated, info

  @property
  def num_actions(self) -> int:
    """Number of discrete actions, or the action dimension of a continuous environment."""
    space = self.action_space(self.default_params)
    return space.n if isinstance(space, Discrete) else int(np.prod(space.shape))

  @property
  def discrete_actions(self) -> bool:
    return isinstance(self.action_space(self.default_params), Discrete)

  def __repr__(self) -> str:
    return f"{type(self).__name__}(name={self.name!r})"
