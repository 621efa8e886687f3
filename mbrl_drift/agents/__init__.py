"""Agents as plug-ins: one small interface (:mod:`mbrl_drift.agents.base`) and a registry
(:mod:`mbrl_drift.agents.registry`).

``agents.get("planner")`` gives an :class:`~mbrl_drift.agents.registry.AgentDef`;
``agents.names()`` lists the registered ones. Importing this package imports no JAX; the
interface types (``Agent``, ``ActOut``, ``EvalArgs``, ...) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from mbrl_drift.agents.registry import AgentDef, definition_of_config, get, names, register

_BASE_NAMES = ("ActOut", "Agent", "Component", "EnvSpec", "EvalArgs", "EvalAxes", "Trainer",
               "eval_args", "get_path", "init_components", "set_path")

__all__ = ["AgentDef", "definition_of_config", "get", "names", "register", *_BASE_NAMES]


def __getattr__(name: str) -> Any:
  if name in _BASE_NAMES:
    return getattr(importlib.import_module("mbrl_drift.agents.base"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
