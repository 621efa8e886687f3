"""The registry of agent definitions (imports no JAX: configs validate against it).

``get(name)`` gives a registered :class:`AgentDef`; ``names()`` lists them. Adding an agent is
one package under ``mbrl_drift/agents/`` that calls :func:`register`, plus its line in
:data:`BUILTIN_AGENT_MODULES`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class AgentDef:
  """A registered architecture.

  ``build`` and ``make_train`` may import their heavy modules lazily, so that registering (and
  reading configs) imports no JAX.

  Attributes:
    name: the registry name (``--agent NAME``).
    config_type: its frozen config dataclass (``TrainConfig.agent``); every field has a default.
    build: ``(train_config, env_spec) -> Agent``; the whole
      :class:`~mbrl_drift.config.TrainConfig` is given, so that for example a run fine-tuned
      from a base (``train_config.init_from``) can add a frozen ``base/actor`` component.
    make_train: ``(train_config, hooks) -> Trainer`` (:class:`mbrl_drift.agents.base.Trainer`).
    components: every component path an agent of this kind can have (under any config): what
      training-time fault specs are checked against before an agent is built.
    reward_consumers: the losses (component paths) whose rewards reward faults may corrupt.
    target_consumers: the losses whose value targets target faults may corrupt.
    train_fields: the :class:`~mbrl_drift.config.TrainConfig` fields its training reads
      (``None``: all). Others must stay at their defaults and are left out of its configs'
      identity.
    presets: ``() -> {environment name: tuned TrainConfig}`` (a function, read lazily).
    description: one line for ``mbrl-drift agents``.
  """

  name: str
  config_type: type
  build: Callable[..., Any]
  make_train: Callable[..., Any]
  components: tuple[str, ...] = ()
  reward_consumers: tuple[str, ...] = ()
  target_consumers: tuple[str, ...] = ()
  train_fields: tuple[str, ...] | None = None
  presets: Callable[[], Mapping[str, Any]] = dict
  description: str = ""


_REGISTRY: dict[str, AgentDef] = {}


def register(definition: AgentDef) -> AgentDef:
  """Adds an agent definition to the registry (its name must be new; a module that registers
  again, e.g. after a reload, replaces its own definition)."""
  existing = _REGISTRY.get(definition.name)
  if existing is not None and existing.build.__module__ != definition.build.__module__:
    raise ValueError(f"an agent named {definition.name!r} is already registered (by "
                     f"{existing.build.__module__})")
  _REGISTRY[definition.name] = definition
  return definition


def get(name: str) -> AgentDef:
  """The registered agent definition called ``name``.

  Raises:
    ValueError: no agent of that name (the message lists the registered ones).
  """
  _load_builtins()
  if name not in _REGISTRY:
    raise ValueError(f"unknown agent {name!r}; registered agents: {', '.join(names())}")
  return _REGISTRY[name]


def fault_surface() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
  """``(components, reward consumers, target consumers)`` over every registered agent."""
  union = lambda field: tuple(dict.fromkeys(p for d in _definitions() for p in getattr(d, field)))
  return union("components"), union("reward_consumers"), union("target_consumers")


def _definitions() -> list[AgentDef]:
  _load_builtins()
  return list(_REGISTRY.values())


def names() -> tuple[str, ...]:
  """Names of every registered agent."""
  _load_builtins()
  return tuple(_REGISTRY)


def definition_of_config(agent_config: Any) -> AgentDef:
  """The registered definition whose ``config_type`` is ``type(agent_config)``."""
  _load_builtins()
  for definition in _REGISTRY.values():
    if type(agent_config) is definition.config_type:
      return definition
  raise ValueError(f"{type(agent_config).__name__} is the config of no registered agent")


#: Modules that register the built-in agents (``import`` registers them). Adding an agent is one
#: module that calls :func:`register`, plus its line here.
BUILTIN_AGENT_MODULES: Sequence[str] = (
    "mbrl_drift.agents.mpc",
    "mbrl_drift.agents.policy",
)


def _load_builtins() -> None:
  for module in BUILTIN_AGENT_MODULES:
    importlib.import_module(module)
