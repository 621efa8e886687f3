"""Name -> environment registry, and registration of every environment with gymnasium.

Environments are imported lazily, so ``import envs`` stays cheap and a broken optional module
cannot break the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from envs.core import Environment

# name -> (module, factory, keyword arguments of the factory)
_REGISTRY: dict[str, tuple[str, str, dict[str, Any]]] = {
    "GoalGrid-OpenRoom": ("envs.goal_grid", "GoalGrid", {"layout": "open_room"}),
    "GoalGrid-FourRooms": ("envs.goal_grid", "GoalGrid", {"layout": "four_rooms"}),
    "GoalGrid-ForkMaze": ("envs.goal_grid", "GoalGrid", {"layout": "fork_maze"}),
    "PointGoals": ("envs.point_goals", "PointGoals", {}),
    "CartPole": ("envs.classic_control", "CartPole", {}),
    "Pendulum": ("envs.classic_control", "Pendulum", {}),
    "MountainCar": ("envs.classic_control", "MountainCar", {}),
    "MountainCarContinuous": ("envs.classic_control", "MountainCarContinuous", {}),
    "Acrobot": ("envs.classic_control", "Acrobot", {}),
}

GYM_NAMESPACE = "mbrl_drift"


def names() -> list[str]:
  """Names of every registered environment, in registration order."""
  return list(_REGISTRY)


def gym_id(name: str) -> str:
  """The gymnasium id of a registered environment, e.g. ``"mbrl_drift/CartPole-v0"``."""
  _check_name(name)
  return f"{GYM_NAMESPACE}/{name}-v0"


def _check_name(name: str) -> None:
  if name not in _REGISTRY:
    raise ValueError(f"unknown environment {name!r}; valid names are: {', '.join(names())}")


def make(name: str, **kwargs: Any) -> tuple[Environment, Any]:
  """Builds a registered environment.

  Args:
    name: one of :func:`names`, e.g. ``"GoalGrid-FourRooms"``.
    **kwargs: overrides of the environment constructor's arguments.

  Returns:
    ``(env, default_params)``.

  Raises:
    ValueError: if ``name`` is not registered (the message lists the valid names).
  """
  _check_name(name)
  module_name, factory_name, defaults = _REGISTRY[name]
  factory = getattr(importlib.import_module(module_name), factory_name)
  env = factory(**{**defaults, **kwargs})
  return env, env.default_params


def register(name: str, module: str, factory: str, **kwargs: Any) -> None:
  """Registers a user environment under ``name`` (and with gymnasium).

  Args:
    name: registry name; must be new.
    module: importable module holding the factory.
    factory: callable returning an :class:`~envs.core.Environment`.
    **kwargs: default keyword arguments of the factory.
  """
  if name in _REGISTRY:
    raise ValueError(f"environment {name!r} is already registered")
  _REGISTRY[name] = (module, factory, dict(kwargs))
  _register_with_gymnasium(name)


def _register_with_gymnasium(name: str) -> None:
  import gymnasium

  env_id = f"{GYM_NAMESPACE}/{name}-v0"
  if env_id in gymnasium.registry:
    return
  gymnasium.register(
      id=env_id,
      entry_point="envs.gym_adapter:GymnasiumEnv",
      vector_entry_point="envs.gym_adapter:GymnasiumVectorEnv",
      kwargs={"env_name": name},
  )


def register_all_with_gymnasium() -> None:
  """Registers every environment as ``mbrl_drift/<Name>-v0`` (idempotent)."""
  for name in _REGISTRY:
    _register_with_gymnasium(name)
