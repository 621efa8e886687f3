"""Gymnasium adapters: any registered JAX environment as a ``gymnasium.Env`` or ``VectorEnv``.

Importing :mod:`envs` registers every environment as ``mbrl_drift/<Name>-v0`` with these two
classes as entry points, so third-party gymnasium code can use them without knowing that JAX
runs inside::

  import envs, gymnasium
  env = gymnasium.make("mbrl_drift/PointGoals-v0", render_mode="rgb_array")
  obs, info = env.reset(seed=0)
  obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

  vec = gymnasium.make_vec("mbrl_drift/PointGoals-v0", num_envs=8,
                           vectorization_mode="vector_entry_point")

Both adapters take the same keyword arguments (through ``gymnasium.make`` / ``make_vec``):

* ``env_kwargs``: constructor arguments of the JAX environment (e.g. ``{"walls": []}``),
* ``env_params``: field overrides of its default parameters (e.g. ``{"intended_goal": 2}``),
* ``render_mode``: ``None`` or ``"rgb_array"`` (for environments that have a ``render`` method).

Episode ends follow gymnasium 1.x. The single environment never auto-resets: after
``terminated or truncated`` call ``reset``. Time-limit truncation comes from the JAX
environment's own parameters, so the registration sets no ``max_episode_steps`` and
``gymnasium.make`` adds no ``TimeLimit`` on top; ``gymnasium.make(id, max_episode_steps=n)``
still adds gymnasium's ``TimeLimit`` and can shorten episodes (to lengthen them, raise the time
limit through ``env_params``, e.g. ``{"max_steps": 200}``; ``make_vec`` rejects
``max_episode_steps`` for the same reason). The vector environment auto-resets in the same step
(``AutoresetMode.SAME_STEP``): the returned observation of a finished sub-environment is the
first of its next episode, and ``info["final_obs"]`` / ``info["final_info"]`` (with masks
``info["_final_obs"]`` / ``info["_final_info"]``) hold the last observation and info of the
finished episode, exactly like ``gymnasium.vector.SyncVectorEnv`` in that mode.

Each adapter calls one jitted function per ``reset`` / ``step``; the environment and its compiled
functions are shared by every adapter built with the same name and equal ``env_kwargs``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs import core
from envs import registry

_RENDER_FPS = 30


# ---------------------------------------------------------------------------------------------
# Spaces and conversions
# ---------------------------------------------------------------------------------------------


def to_gymnasium_space(space: core.Space) -> spaces.Space:
  """Converts an :mod:`envs.core` space to the gymnasium space with the same meaning.

  Args:
    space: a :class:`envs.core.Discrete` or :class:`envs.core.Box`.

  Returns:
    ``gymnasium.spaces.Discrete(n)`` (int64 samples), or ``gymnasium.spaces.Box`` with the
    same bounds, shape and numpy dtype.
  """
  if isinstance(space, core.Discrete):
    return spaces.Discrete(int(space.n))
  if isinstance(space, core.Box):
    dtype = np.dtype(space.dtype)
    shape = tuple(int(d) for d in space.shape)
    low = np.broadcast_to(np.asarray(space.low, dtype), shape)
    high = np.broadcast_to(np.asarray(space.high, dtype), shape)
    return spaces.Box(low=low.copy(), high=high.copy(), shape=shape, dtype=dtype)
  raise TypeError(f"cannot convert space {space!r}: expected envs.core.Discrete or Box")


def _observation_to_numpy(obs: np.ndarray, space: spaces.Space) -> Any:
  """A fresh, writable numpy observation of ``space``'s dtype (int64 scalar for Discrete)."""
  if isinstance(space, spaces.Discrete):
    return np.int64(obs)
  return np.array(obs, dtype=space.dtype, copy=True)


def _info_to_numpy(info: dict[str, Any]) -> dict[str, Any]:
  """Fresh numpy values: numpy scalars for ``[]`` leaves, arrays otherwise (nested dicts kept)."""
  converted = {}
  for key, value in info.items():
    if isinstance(value, dict):
      converted[key] = _info_to_numpy(value)
    else:
      value = np.asarray(value)
      converted[key] = value[()] if value.ndim == 0 else value.copy()
  return converted


def _seed_to_key(rng: np.random.Generator) -> jax.Array:
  """A JAX key drawn from a (seeded) numpy generator."""
  return jax.random.key(int(rng.integers(0, 2**32 - 1, dtype=np.uint64)))


# ---------------------------------------------------------------------------------------------
# Compiled functions, shared between adapters of the same environment
# ---------------------------------------------------------------------------------------------


class _Compiled(NamedTuple):
  env: core.Environment
  default_params: Any
  reset: Any
  step: Any
  reset_all: Any
  reset_batch: Any
  step_batch: Any


def _build(env_name: str, env_kwargs: dict[str, Any]) -> _Compiled:
  env, default_params = registry.make(env_name, **env_kwargs)

  def reset(key, params):
    key, key_reset = jax.random.split(key)
    obs, state = env.reset_env(key_reset, params)
    return key, obs, state

  def step(key, state, action, params):
    key, key_step = jax.random.split(key)
    return (key, *env.step_env(key_step, state, action, params))

  def reset_all(key, num_envs, params):
    keys = jax.random.split(key, num_envs + 1)
    obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(keys[1:], params)
    return keys[0], obs, state

  def reset_batch(key, obs, state, mask, params):
    # Resets the sub-environments where ``mask`` [N] is True, keeping the others.
    keys = jax.random.split(key, mask.shape[0] + 1)
    obs_re, state_re = jax.vmap(env.reset_env, in_axes=(0, None))(keys[1:], params)

    def select(new, old):
      return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)

    obs = select(obs_re, obs)
    state = jax.tree.map(select, state_re, state)
    return keys[0], obs, state

  def step_batch(key, state, action, params):
    keys = jax.random.split(key, action.shape[0] + 1)
    out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys[1:], state, action, params)
    return (keys[0], *out)

  return _Compiled(
      env=env,
      default_params=default_params,
      reset=jax.jit(reset),
      step=jax.jit(step),
      reset_all=jax.jit(reset_all, static_argnums=1),
      reset_batch=jax.jit(reset_batch),
      step_batch=jax.jit(step_batch),
  )


_COMPILED_CACHE: dict[Any, _Compiled] = {}


def _freeze(value: Any) -> Any:
  """A hashable stand-in for constructor arguments (raises TypeError when there is none)."""
  if isinstance(value, dict):
    return ("dict", tuple(sorted((key, _freeze(item)) for key, item in value.items())))
  if isinstance(value, list | tuple):
    return (type(value).__name__, tuple(_freeze(item) for item in value))
  if isinstance(value, np.ndarray | jax.Array):
    array = np.asarray(value)
    return ("array", array.shape, str(array.dtype), array.tobytes())
  hash(value)
  return value


def _compiled(env_name: str, env_kwargs: dict[str, Any] | None) -> _Compiled:
  """The environment and its jitted functions, shared by adapters built with equal arguments."""
  env_kwargs = dict(env_kwargs or {})
  try:
    cache_key = (env_name, _freeze(env_kwargs))
  except TypeError:
    return _build(env_name, env_kwargs)
  if cache_key not in _COMPILED_CACHE:
    _COMPILED_CACHE[cache_key] = _build(env_name, env_kwargs)
  return _COMPILED_CACHE[cache_key]


def _override_params(env: core.Environment, params: Any, overrides: dict[str, Any] | None) -> Any:
  """``params`` with field overrides, through the environment's validating ``make_params``.

  Environments without ``make_params`` get a plain replacement that keeps each array field's
  dtype and shape.
  """
  if not overrides:
    return params
  make_params = getattr(env, "make_params", None)
  if callable(make_params):
    return make_params(**overrides)
  fields = [field.name for field in dataclasses.fields(params)]
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise ValueError(
        f"env_params has unknown field(s) {unknown} for {env.name}; valid fields are: "
        f"{', '.join(fields)}")
  changes = {}
  for name, value in overrides.items():
    old = getattr(params, name)
    if isinstance(old, jax.Array | np.ndarray | np.generic):
      new = jnp.asarray(value, old.dtype)
      if new.shape != np.shape(old):
        raise ValueError(f"env_params[{name!r}] must have shape {np.shape(old)}, got {new.shape}")
      changes[name] = new
    else:
      changes[name] = type(old)(value) if isinstance(old, int | float | bool) else value
  return params.replace(**changes)


def _render_modes(env: core.Environment) -> list[str]:
  return ["rgb_array"] if callable(getattr(env, "render", None)) else []


def _check_render_mode(render_mode: str | None, modes: list[str], env_name: str) -> None:
  if render_mode is not None and render_mode not in modes:
    allowed = ", ".join(repr(m) for m in [None, *modes])
    raise ValueError(
        f"render_mode={render_mode!r} is not supported by {env_name}; allowed values: {allowed}")


# ---------------------------------------------------------------------------------------------
# Single environment
# ---------------------------------------------------------------------------------------------


class GymnasiumEnv(gymnasium.Env):
  """One registered JAX environment behind the ``gymnasium.Env`` API.

  ``reset(seed=s)`` seeds the numpy generator ``np_random`` and draws the JAX key from it, so
  the same seed gives the same episode; every ``step`` splits that key inside one jitted call
  of the environment's ``step_env`` (no auto-reset). Observations are fresh numpy arrays of the
  observation space's dtype (float32 for Box), rewards python floats, infos dicts of numpy
  values (e.g. ``info["reached_goal"]`` for goal environments).

  Attributes:
    jax_env: the wrapped :class:`envs.core.Environment`.
    params: its parameters (defaults with the ``env_params`` overrides).
    state: the current JAX state (``None`` before the first ``reset``).
  """

  metadata = {"render_modes": ["rgb_array"], "render_fps": _RENDER_FPS}

  def __init__(
      self,
      env_name: str,
      render_mode: str | None = None,
      env_kwargs: dict[str, Any] | None = None,
      env_params: dict[str, Any] | None = None,
  ):
    """Builds the adapter.

    Args:
      env_name: a registered environment name (see :func:`envs.names`).
      render_mode: ``None`` or ``"rgb_array"`` (only for environments with a ``render`` method).
      env_kwargs: constructor arguments of the JAX environment.
      env_params: overrides of fields of its default parameters.

    Raises:
      ValueError: for an unknown name, an unsupported ``render_mode`` or a bad ``env_params``.
    """
    self._compiled = _compiled(env_name, env_kwargs)
    self.jax_env = self._compiled.env
    self.params = _override_params(self.jax_env, self._compiled.default_params, env_params)
    self.env_name = env_name
    modes = _render_modes(self.jax_env)
    self.metadata = {"render_modes": modes, "render_fps": _RENDER_FPS}
    _check_render_mode(render_mode, modes, env_name)
    self.render_mode = render_mode
    self.observation_space = to_gymnasium_space(self.jax_env.observation_space(self.params))
    self.action_space = to_gymnasium_space(self.jax_env.action_space(self.params))
    self.state = None
    self._key = None

  def reset(
      self, *, seed: int | None = None, options: dict[str, Any] | None = None
  ) -> tuple[Any, dict[str, Any]]:
    """Starts an episode.

    Args:
      seed: seeds ``np_random`` (and so the episode); ``None`` continues the current generator.
      options: accepted for the gymnasium API; no options are used.

    Returns:
      ``(obs, info)`` with an empty ``info``.
    """
    del options
    super().reset(seed=seed)
    self._key, obs, self.state = self._compiled.reset(_seed_to_key(self.np_random), self.params)
    return _observation_to_numpy(jax.device_get(obs), self.observation_space), {}

  def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
    """Steps the environment (without auto-reset).

    Args:
      action: an element of ``action_space`` (python or numpy int for Discrete, array for Box).

    Returns:
      ``(obs, reward, terminated, truncated, info)``.

    Raises:
      gymnasium.error.ResetNeeded: before the first ``reset``.
      ValueError: for an action of the wrong kind or shape.
    """
    if self.state is None:
      raise gymnasium.error.ResetNeeded("call reset() before step()")
    action = self._convert_action(action)
    key, obs, state, reward, terminated, truncated, info = self._compiled.step(
        self._key, self.state, action, self.params)
    self._key, self.state = key, state
    obs, reward, terminated, truncated, info = jax.device_get(
        (obs, reward, terminated, truncated, info))
    return (_observation_to_numpy(obs, self.observation_space), float(reward),
            bool(terminated), bool(truncated), _info_to_numpy(info))

  def _convert_action(self, action: Any) -> np.ndarray:
    if isinstance(self.action_space, spaces.Discrete):
      array = np.asarray(action)
      if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"action must be an integer in [0, {self.action_space.n}), got {action!r}")
      value = int(array.reshape(()))
      if not 0 <= value < self.action_space.n:
        raise ValueError(f"action must be an integer in [0, {self.action_space.n}), got {value}")
      return np.int32(value)
    array = np.asarray(action, dtype=self.action_space.dtype)
    if array.size != int(np.prod(self.action_space.shape)):
      raise ValueError(
          f"action must have shape {self.action_space.shape}, got {np.shape(action)}")
    return array.reshape(self.action_space.shape)

  def render(self) -> np.ndarray | None:
    """Renders the current state.

    Returns:
      uint8 ``[H, W, 3]`` image in ``"rgb_array"`` mode; ``None`` when ``render_mode`` is None.

    Raises:
      gymnasium.error.ResetNeeded: when rendering before the first ``reset``.
    """
    if self.render_mode is None:
      if self.metadata["render_modes"]:
        gymnasium.logger.warn(
            "render() called without a render_mode; build the environment with "
            f"gymnasium.make({registry.gym_id(self.env_name)!r}, render_mode='rgb_array')")
      return None
    if self.state is None:
      raise gymnasium.error.ResetNeeded("call reset() before render()")
    return np.asarray(self.jax_env.render(self.state, self.params), dtype=np.uint8)

  def __repr__(self) -> str:
    return f"GymnasiumEnv({self.env_name!r})"


# ---------------------------------------------------------------------------------------------
# Vector environment
# ---------------------------------------------------------------------------------------------


class GymnasiumVectorEnv(gymnasium.vector.VectorEnv):
  """``num_envs`` copies of a JAX environment stepped in one jitted, vmapped call.

  Uses the environment's auto-resetting ``step`` (``AutoresetMode.SAME_STEP``, declared in
  ``metadata["autoreset_mode"]``). Infos follow ``gymnasium.vector.SyncVectorEnv`` in that mode:
  each key of the step info is an array ``[N]`` with a mask ``"_" + key``; sub-environments that
  finished this step report their last observation in ``info["final_obs"]`` (object array,
  ``None`` elsewhere) and their step info under ``info["final_info"]``.

  ``reset(seed=s)`` draws one JAX key from the seeded ``np_random`` and splits it over the
  sub-environments; ``options={"reset_mask": mask}`` (bool ``[N]``) resets only some of them.
  """

  metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"],
              "render_fps": _RENDER_FPS}

  def __init__(
      self,
      env_name: str,
      num_envs: int,
      render_mode: str | None = None,
      env_kwargs: dict[str, Any] | None = None,
      env_params: dict[str, Any] | None = None,
      max_episode_steps: int | None = None,
  ):
    """Builds the vector adapter.

    Args:
      env_name: a registered environment name (see :func:`envs.names`).
      num_envs: number of sub-environments ``N >= 1``.
      render_mode: ``None`` or ``"rgb_array"`` (only for environments with a ``render`` method).
      env_kwargs: constructor arguments of the JAX environment.
      env_params: overrides of fields of its default parameters (the time limit included).
      max_episode_steps: must be ``None``; the time limit is the environment's own parameter.

    Raises:
      ValueError: for a bad ``num_envs``, ``render_mode``, ``env_params`` or a
        ``max_episode_steps``.
    """
    if int(num_envs) < 1:
      raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if max_episode_steps is not None:
      raise ValueError(
          "max_episode_steps is not supported by the vector adapter: the time limit is the "
          "JAX environment's own parameter; override it through env_params instead")
    self._compiled = _compiled(env_name, env_kwargs)
    self.jax_env = self._compiled.env
    self.params = _override_params(self.jax_env, self._compiled.default_params, env_params)
    self.env_name = env_name
    self.num_envs = int(num_envs)
    modes = _render_modes(self.jax_env)
    self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": modes,
                     "render_fps": _RENDER_FPS}
    _check_render_mode(render_mode, modes, env_name)
    self.render_mode = render_mode
    self.single_observation_space = to_gymnasium_space(
        self.jax_env.observation_space(self.params))
    self.single_action_space = to_gymnasium_space(self.jax_env.action_space(self.params))
    self.observation_space = batch_space(self.single_observation_space, self.num_envs)
    self.action_space = batch_space(self.single_action_space, self.num_envs)
    self.state = None
    self._obs = None
    self._key = None

  def reset(
      self, *, seed: int | None = None, options: dict[str, Any] | None = None
  ) -> tuple[np.ndarray, dict[str, Any]]:
    """Resets every sub-environment (or those in ``options["reset_mask"]``).

    Args:
      seed: an int seeds ``np_random`` (and so every sub-environment); ``None`` continues.
      options: optionally ``{"reset_mask": bool [N]}``; the other sub-environments keep their
        state (only after a first full reset).

    Returns:
      ``(obs [N, *obs_shape], info)`` with an empty ``info``.
    """
    if seed is not None and not isinstance(seed, int | np.integer):
      raise ValueError(f"seed must be an int or None, got {seed!r}")
    super().reset(seed=None if seed is None else int(seed))
    mask = np.ones(self.num_envs, np.bool_)
    options = dict(options or {})
    if "reset_mask" in options:
      mask = np.asarray(options.pop("reset_mask"))
      if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
        raise ValueError(
            f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), got "
            f"{mask.dtype} {mask.shape}")
      if self.state is None and not mask.all():
        raise ValueError("options['reset_mask'] needs a first reset of every sub-environment")
    key = _seed_to_key(self.np_random)
    if self.state is None:
      self._key, obs, state = self._compiled.reset_all(key, self.num_envs, self.params)
    else:
      self._key, obs, state = self._compiled.reset_batch(
          key, self._obs, self.state, jnp.asarray(mask), self.params)
    self._obs, self.state = obs, state
    return self._batch_observation(jax.device_get(obs)), {}

  def step(
      self, actions: Any
  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Steps every sub-environment, auto-resetting finished ones in the same step.

    Args:
      actions: batch ``[N, *action_shape]`` (ints ``[N]`` for Discrete).

    Returns:
      ``(obs, rewards, terminations, truncations, infos)`` with ``obs`` ``[N, *obs_shape]``,
      float32 ``rewards [N]``, bool ``terminations`` / ``truncations [N]``.

    Raises:
      gymnasium.error.ResetNeeded: before the first ``reset``.
    """
    if self.state is None:
      raise gymnasium.error.ResetNeeded("call reset() before step()")
    actions = self._convert_actions(actions)
    key, obs, state, reward, terminated, truncated, info = self._compiled.step_batch(
        self._key, self.state, actions, self.params)
    self._key, self.state, self._obs = key, state, obs
    obs, reward, terminated, truncated, info = jax.device_get(
        (obs, reward, terminated, truncated, info))
    final_obs = info.pop("final_observation")
    done = np.logical_or(terminated, truncated)
    infos: dict[str, Any] = {}
    if done.any():
      final_obs_array = np.full(self.num_envs, None, dtype=object)
      for i in np.flatnonzero(done):
        final_obs_array[i] = _observation_to_numpy(final_obs[i], self.single_observation_space)
      infos["final_obs"], infos["_final_obs"] = final_obs_array, done.copy()
      infos["final_info"], infos["_final_info"] = _masked_info(info, done), done.copy()
    if not done.all():
      infos.update(_masked_info(info, ~done))
    return (self._batch_observation(obs), np.array(reward, np.float32),
            np.array(terminated, np.bool_), np.array(truncated, np.bool_), infos)

  def _batch_observation(self, obs: np.ndarray) -> np.ndarray:
    dtype = self.observation_space.dtype
    return np.array(obs, dtype=dtype, copy=True)

  def _convert_actions(self, actions: Any) -> np.ndarray:
    space = self.single_action_space
    if isinstance(space, spaces.Discrete):
      array = np.asarray(actions)
      if array.shape != (self.num_envs,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"actions must be {self.num_envs} integers in [0, {space.n}), got {actions!r}")
      if np.any(array < 0) or np.any(array >= space.n):
        raise ValueError(f"actions must be integers in [0, {space.n}), got {array}")
      return array.astype(np.int32)
    array = np.asarray(actions, dtype=space.dtype)
    expected = (self.num_envs, *space.shape)
    if array.size != int(np.prod(expected)):
      raise ValueError(f"actions must have shape {expected}, got {array.shape}")
    return array.reshape(expected)

  def render(self) -> tuple[np.ndarray, ...] | None:
    """Renders every sub-environment.

    Returns:
      a tuple of ``N`` uint8 ``[H, W, 3]`` images in ``"rgb_array"`` mode, else ``None``.
    """
    if self.render_mode is None:
      return None
    if self.state is None:
      raise gymnasium.error.ResetNeeded("call reset() before render()")
    states = jax.device_get(self.state)
    return tuple(
        np.asarray(self.jax_env.render(jax.tree.map(lambda x, i=i: x[i], states), self.params),
                   dtype=np.uint8)
        for i in range(self.num_envs))

  def __repr__(self) -> str:
    return f"GymnasiumVectorEnv({self.env_name!r}, num_envs={self.num_envs})"


def _masked_info(info: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
  """Vector info: each ``[N, ...]`` value zeroed where ``mask`` is False, plus ``_key`` masks."""
  out: dict[str, Any] = {}
  for key, value in info.items():
    if isinstance(value, dict):
      out[key] = _masked_info(value, mask)
    else:
      value = np.asarray(value)
      expanded = mask.reshape(mask.shape + (1,) * (value.ndim - 1))
      out[key] = np.where(expanded, value, np.zeros_like(value))
    out[f"_{key}"] = mask.copy()
  return out
