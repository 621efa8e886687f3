"""The model-predictive planning agent (``--agent planner``).

A latent world model (encoder, dynamics, reward, termination, optional decoder) and a value
function, trained jointly from replay (TD-MPC style; Hansen et al. 2022); actions come from
planning over the world model with the value as terminal bootstrap
(:mod:`mbrl_drift.agents.mpc.planner`).
"""

from __future__ import annotations

from typing import Any

from mbrl_drift.agents.registry import AgentDef, register
from mbrl_drift.config import AgentConfig


def _build(config: Any, spec: Any):
  from mbrl_drift.agents.mpc.agent import PlannerAgent

  return PlannerAgent(config=config.agent, spec=spec)


def _make_train(config: Any, hooks: Any = None):
  from mbrl_drift.agents.mpc.train import make_train

  return make_train(config) if hooks is None else make_train(config, hooks)


def _presets() -> dict[str, Any]:
  from mbrl_drift.presets import PRESETS

  return PRESETS


PLANNER = register(AgentDef(
    name="planner",
    config_type=AgentConfig,
    build=_build,
    make_train=_make_train,
    components=("world_model/encoder", "world_model/dynamics", "world_model/reward",
                "world_model/termination", "world_model/decoder", "value", "actor"),
    reward_consumers=("world_model/reward", "value"),
    target_consumers=("value",),
    train_fields=None,
    presets=_presets,
    description="model-predictive planning over a learned latent world model with a value "
                "bootstrap (exhaustive, sampling or CEM search)",
))
