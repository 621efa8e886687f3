"""mbrl_drift: how model-based RL agents fail when one of their parts breaks.

The names below load on first use, so ``import mbrl_drift`` (and the pytest plugin) import no
JAX until something needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AgentConfig": "mbrl_drift.config",
    "TrainConfig": "mbrl_drift.config",
    "EnvSpec": "mbrl_drift.agents.base",
    "get_path": "mbrl_drift.agents.base",
    "set_path": "mbrl_drift.agents.base",
    "PlannerAgent": "mbrl_drift.agents.mpc.agent",
    "Trainer": "mbrl_drift.agents.base",
    "TrainingHooks": "mbrl_drift.faults.training",
    "TrainState": "mbrl_drift.agents.mpc.train",
    "make_train": "mbrl_drift.train",
    "Trajectories": "mbrl_drift.trajectories",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
