"""Training of any registered agent: ``make_train(config) -> Trainer`` (purejaxrl style).

``make_train`` looks up the agent named by ``config.agent_kind`` in the registry
(:mod:`mbrl_drift.agents`) and returns its :class:`~mbrl_drift.agents.base.Trainer`, whose
``train(key)`` is one jittable run, so ``jax.jit(jax.vmap(trainer.train))(keys)`` trains many
seeds at once (Lu et al. 2022). Training-time faults enter through :class:`TrainingHooks`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

import envs
from mbrl_drift import agents
from mbrl_drift.agents.base import EnvSpec, Trainer
from mbrl_drift.config import TrainConfig
from mbrl_drift.faults.training import TrainingHooks

__all__ = ["TrainingHooks", "Trainer", "build_agent", "make_env", "make_train"]


def make_env(config: TrainConfig) -> tuple[envs.Environment, Any]:
  """The configured environment; random starts are switched on where the env supports them."""
  try:
    env, env_params = envs.make(config.env, **dict(config.env_kwargs))
  except TypeError as error:
    raise ValueError(f"invalid config field env_kwargs={config.env_kwargs!r} for "
                     f"{config.env}: {error}") from error
  if hasattr(env_params, "random_start"):
    env_params = env_params.replace(random_start=jnp.asarray(True))
  return env, env_params


def build_agent(config: TrainConfig, env: envs.Environment | None = None,
                env_params: Any = None) -> agents.Agent:
  """The agent of ``config`` for its environment (built by the registered definition)."""
  if env is None:
    env, env_params = make_env(config)
  return agents.get(config.agent_kind).build(config, EnvSpec.from_env(env, env_params))


def make_train(config: TrainConfig, hooks: TrainingHooks = TrainingHooks()) -> Trainer:
  """Builds the pure functions of one training run of the configured agent.

  Args:
    config: the run's configuration; its ``training_faults`` specs are parsed into hooks and
      its ``freeze`` patterns keep those components fixed.
    hooks: further training-time fault hooks (identity by default), applied after those of
      ``config.training_faults``.

  Returns:
    A :class:`~mbrl_drift.agents.base.Trainer`; ``jax.jit(jax.vmap(trainer.train))(keys)``
    trains one seed per key.
  """
  if config.freeze:
    from mbrl_drift.faults import combine_hooks, freeze

    hooks = combine_hooks(hooks, TrainingHooks(update_transforms=(
        freeze(target="+".join(config.freeze)),)))
  return agents.get(config.agent_kind).make_train(config, hooks)
