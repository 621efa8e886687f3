"""JAX-native environments for mbrl_drift.

Pure, jittable, vmappable ``reset(key, params)`` / ``step(key, state, action, params)`` over
frozen pytree dataclasses (see :mod:`envs.core`). Importing this package registers every
environment with gymnasium as ``mbrl_drift/<Name>-v0``.

Example::

  import envs
  env, params = envs.make("GoalGrid-FourRooms")
  obs, state = env.reset(jax.random.key(0), params)
"""

from envs.core import Box, Discrete, Environment, pytree_dataclass, static_field
from envs.registry import gym_id, make, names, register, register_all_with_gymnasium

register_all_with_gymnasium()

__all__ = [
    "Box",
    "Discrete",
    "Environment",
    "gym_id",
    "make",
    "names",
    "pytree_dataclass",
    "register",
    "static_field",
]
