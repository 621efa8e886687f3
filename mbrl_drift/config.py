"""Frozen, validated configuration of a training run and of the planning agent.

:class:`TrainConfig` holds what every run has (environment, steps, chunks, training faults, the
base it was fine-tuned from) plus the replay-learning fields of the planner; its ``agent`` field
is the config dataclass of the registered agent named by ``agent_kind``
(:class:`AgentConfig` for ``"planner"``; see :mod:`mbrl_drift.agents`).

Every field is static (hashable): a config is baked into the compiled ``train`` function, so two
runs with equal configs share one compilation. Validation raises a :class:`ValueError` that names
the bad field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from typing import Any

PLANNERS = ("exhaustive", "sampling", "cem")
ACTION_SELECTIONS = ("greedy", "epsilon", "boltzmann")


def _require(condition: bool, field: str, value: Any, allowed: str) -> None:
  if not condition:
    raise ValueError(f"invalid config field {field}={value!r}: expected {allowed}")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def check_field_types(config: Any) -> None:
  """Type-checks and canonicalises every ``bool``, ``int``, ``float`` and ``str`` field of a
  frozen config dataclass, in place (call it first in ``__post_init__``).

  A ``bool`` field takes only ``True`` / ``False`` (the string ``"false"`` is an error, not a
  truthy value); an ``int`` field takes an int or an integral float (``128.0`` is stored as
  ``128``); a ``float`` field takes an int or a float (stored as a float); a ``str`` field takes
  a string. So a config has one canonical form, and ``hidden_dim=128`` and ``128.0`` are the same
  run with the same hash.

  Raises:
    ValueError: naming the field, the value and the expected type.
  """
  for field in dataclasses.fields(config):
    kind = _field_types(type(config)).get(field.name)
    value = getattr(config, field.name)
    if kind is bool:
      _require(isinstance(value, bool), field.name, value, "true or false (a bool)")
    elif kind is int:
      integral = isinstance(value, float) and value.is_integer()
      _require((isinstance(value, int) and not isinstance(value, bool)) or integral,
               field.name, value, "an int")
      object.__setattr__(config, field.name, int(value))
    elif kind is float:
      _require(isinstance(value, (int, float)) and not isinstance(value, bool), field.name,
               value, "a number (float)")
      object.__setattr__(config, field.name, float(value))
    elif kind is str:
      _require(isinstance(value, str), field.name, value, "a string")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
  """Architecture of the model-based agent and of its planner.

  Attributes:
    latent_dim: size of the world model's latent state.
    hidden_dim: width of every MLP.
    num_layers: hidden layers per MLP.
    use_decoder: add a ``world_model/decoder`` trained to reconstruct observations.
    use_actor: add an ``actor`` policy prior (trained to imitate the planner) that proposes
      action sequences to the sampling planners.
    value_gradients_to_encoder: whether the value loss trains the encoder (and dynamics).
    planner: ``"exhaustive"`` (every discrete action sequence, ``A**horizon``), ``"sampling"``
      (cross-entropy search over discrete sequences) or ``"cem"`` (continuous actions).
    gamma: discount of the planner's returns and of the value targets.
    horizon: default planning horizon (the evaluation may override it up to ``max_horizon``).
    max_horizon: largest horizon one compiled planner supports (exhaustive planner: the tree is
      built to this depth and shorter horizons read their scores off it).
    num_samples: candidate sequences per iteration of the sampling / CEM planners.
    num_elites: elites kept per CEM iteration.
    planner_iterations: CEM refinement iterations.
    boltzmann_temperature: temperature of Boltzmann action selection over plan scores.
    epsilon: probability of a uniformly random action in ``"epsilon"`` selection.
  """

  latent_dim: int = 32
  hidden_dim: int = 128
  num_layers: int = 2
  use_decoder: bool = True
  use_actor: bool = False
  value_gradients_to_encoder: bool = False
  planner: str = "exhaustive"
  gamma: float = 0.97
  horizon: int = 1
  max_horizon: int = 3
  num_samples: int = 64
  num_elites: int = 8
  planner_iterations: int = 3
  boltzmann_temperature: float = 0.05
  epsilon: float = 0.1

  def __post_init__(self) -> None:
    check_field_types(self)
    _require(self.latent_dim >= 1, "latent_dim", self.latent_dim, "an int >= 1")
    _require(self.hidden_dim >= 1, "hidden_dim", self.hidden_dim, "an int >= 1")
    _require(self.num_layers >= 1, "num_layers", self.num_layers, "an int >= 1")
    _require(self.planner in PLANNERS, "planner", self.planner, f"one of {PLANNERS}")
    _require(0.0 < self.gamma <= 1.0, "gamma", self.gamma, "a float in (0, 1]")
    _require(self.max_horizon >= 1, "max_horizon", self.max_horizon, "an int >= 1")
    _require(1 <= self.horizon <= self.max_horizon, "horizon", self.horizon,
             f"an int in [1, max_horizon={self.max_horizon}]")
    _require(self.num_samples >= 2, "num_samples", self.num_samples, "an int >= 2")
    _require(1 <= self.num_elites <= self.num_samples, "num_elites", self.num_elites,
             f"an int in [1, num_samples={self.num_samples}]")
    _require(self.planner_iterations >= 1, "planner_iterations", self.planner_iterations,
             "an int >= 1")
    _require(self.boltzmann_temperature > 0, "boltzmann_temperature",
             self.boltzmann_temperature, "a float > 0")
    _require(0.0 <= self.epsilon <= 1.0, "epsilon", self.epsilon, "a float in [0, 1]")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run of the planning agent (per seed).

  Attributes:
    env: registered environment name (see ``envs.names()``).
    env_kwargs: constructor overrides of the environment, as a tuple of ``(name, value)`` pairs.
    agent: the agent's config, an instance of the ``config_type`` of the agent ``agent_kind``
      (:class:`AgentConfig` for the planner).
    agent_kind: registered agent name (``mbrl_drift.agents.names()``). Left out of
      :meth:`to_dict` (and so of the config hash) while it is ``"planner"``.
    init_from: a trained run whose parameters start this one (fine-tuning; ``""`` for none).
      Part of the run's identity; left out of :meth:`to_dict` while empty.
    freeze: component paths or patterns kept fixed during training. Left out of
      :meth:`to_dict` while empty.
    total_steps: environment steps per seed (summed over the parallel environments).
    num_envs: parallel environments per seed.
    buffer_size: replay capacity in environment steps per seed. A small buffer keeps the n-step
      targets close to the current policy: old exploratory data biases them low.
    batch_size: sequences per gradient update.
    unroll_steps: world-model unroll length of the latent-consistency, reward and termination
      losses (Hansen et al. 2022, TD-MPC).
    n_step: steps of the n-step value target (the discount is ``agent.gamma``).
    updates_per_iteration: gradient updates after each vectorised environment step.
    learning_starts: environment steps of uniformly random actions before learning.
    epsilon_start, epsilon_end, epsilon_decay_fraction: linear decay of the exploration rate of
      the planner's epsilon-greedy behaviour policy over that fraction of training.
    exploration_repeat: steps for which an exploratory random action is held. ``1`` is plain
      epsilon-greedy (a fresh uniform action replaces the planner's with probability epsilon
      at every step); ``z > 1`` is temporally-extended epsilon-greedy (Dabney et al. 2021): an
      environment not already exploring starts, with probability epsilon, a uniform action
      that it repeats for ``z`` steps (or until its episode ends), which reaches far more of
      the state space than per-step noise when single steps are small.
    world_model_lr, value_lr, actor_lr: Adam learning rates per component group.
    final_lr_fraction: the learning rates decay linearly, over the run's updates, to this
      fraction of their initial value (``1.0``: constant). Left out of :meth:`to_dict` (and so
      of the config hash) while it is ``1.0``.
    target_tau: Polyak rate of the value target network.
    rho: per-step weight decay of the unrolled world-model losses.
    consistency_coef, reward_coef, termination_coef, decoder_coef, value_coef: loss weights.
    max_grad_norm: global-norm gradient clipping per component.
    num_chunks: host-visible chunks the run is split into (progress, logging, checkpoints).
    eval_episodes: episodes of the periodic evaluation at chunk boundaries.
    training_faults: training-time fault specs (:mod:`mbrl_drift.faults.training_spec`), e.g.
      ``("value:target_noise(scale=0.5, start_step=2000)",)``, hooked into every update of the
      run by ``make_train``. A list (or one string) is stored as a tuple. Left out of
      :meth:`to_dict` (and so of the config hash) while empty.
  """

  env: str = "GoalGrid-FourRooms"
  env_kwargs: tuple[tuple[str, Any], ...] = ()
  agent: Any = AgentConfig()
  agent_kind: str = "planner"
  init_from: str = ""
  freeze: tuple[str, ...] = ()
  total_steps: int = 20_000
  num_envs: int = 16
  buffer_size: int = 4_000
  batch_size: int = 64
  unroll_steps: int = 3
  n_step: int = 5
  updates_per_iteration: int = 4
  learning_starts: int = 1_000
  epsilon_start: float = 1.0
  epsilon_end: float = 0.05
  epsilon_decay_fraction: float = 0.5
  exploration_repeat: int = 1
  world_model_lr: float = 1e-3
  value_lr: float = 1e-3
  actor_lr: float = 1e-3
  final_lr_fraction: float = 1.0
  target_tau: float = 0.02
  rho: float = 0.9
  consistency_coef: float = 1.0
  reward_coef: float = 1.0
  termination_coef: float = 1.0
  decoder_coef: float = 1.0
  value_coef: float = 1.0
  max_grad_norm: float = 10.0
  num_chunks: int = 4
  eval_episodes: int = 128
  training_faults: tuple[str, ...] = ()

  def __post_init__(self) -> None:
    import envs

    from mbrl_drift import agents

    check_field_types(self)
    for name in ("training_faults", "freeze"):
      value = getattr(self, name)
      if isinstance(value, str):  # one entry; JSON, TOML and argparse give lists
        object.__setattr__(self, name, (value,))
      elif isinstance(value, list):
        object.__setattr__(self, name, tuple(value))

    if self.env not in envs.names():
      raise ValueError(f"invalid config field env={self.env!r}: expected one of {envs.names()}")
    _require(self.agent_kind in agents.names(), "agent_kind", self.agent_kind,
             f"one of {list(agents.names())}")
    definition = agents.get(self.agent_kind)
    _require(isinstance(self.agent, definition.config_type), "agent", self.agent,
             f"a {definition.config_type.__name__} (the config of agent_kind="
             f"{self.agent_kind!r})")
    _require(isinstance(self.init_from, str), "init_from", self.init_from,
             "a run directory (a string; empty for none)")
    _require(all(isinstance(p, str) and p for p in self.freeze), "freeze", self.freeze,
             "a tuple of component paths")
    for name in self._unused_fields(definition.train_fields):
      _require(getattr(self, name) == _FIELD_DEFAULTS[name], name, getattr(self, name),
               f"its default {_FIELD_DEFAULTS[name]!r}: agent {self.agent_kind!r} does not read it")
    for name in ("total_steps", "num_envs", "buffer_size", "batch_size", "unroll_steps", "n_step",
                 "updates_per_iteration", "exploration_repeat", "num_chunks", "eval_episodes"):
      value = getattr(self, name)
      _require(isinstance(value, int) and value >= 1, name, value, "an int >= 1")
    _require(self.iterations >= self.num_chunks, "total_steps", self.total_steps,
             f"at least num_envs * num_chunks = {self.num_envs * self.num_chunks}")
    _require(self.learning_starts >= 0, "learning_starts", self.learning_starts, "an int >= 0")
    if "learning_starts" not in self._unused_fields(definition.train_fields):
      _require(self.learning_starts < self.total_steps, "learning_starts", self.learning_starts,
               f"fewer than total_steps={self.total_steps}")
    if "buffer_size" not in self._unused_fields(definition.train_fields):
      _require(self.buffer_size >= self.num_envs * (self.sequence_length + 1), "buffer_size",
               self.buffer_size,
               f"at least num_envs * (unroll_steps + n_step + 1) = "
               f"{self.num_envs * (self.sequence_length + 1)}")
    for name in ("epsilon_start", "epsilon_end", "epsilon_decay_fraction", "target_tau", "rho",
                 "final_lr_fraction"):
      value = getattr(self, name)
      _require(0.0 <= value <= 1.0, name, value, "a float in [0, 1]")
    for name in ("world_model_lr", "value_lr", "actor_lr", "max_grad_norm"):
      value = getattr(self, name)
      _require(value > 0, name, value, "a float > 0")
    for name in ("consistency_coef", "reward_coef", "termination_coef", "decoder_coef",
                 "value_coef"):
      value = getattr(self, name)
      _require(value >= 0, name, value, "a float >= 0")
    self._check_training_faults()

  @staticmethod
  def _unused_fields(train_fields: tuple[str, ...] | None) -> tuple[str, ...]:
    """The fields an agent whose ``AgentDef.train_fields`` is ``train_fields`` does not read."""
    if train_fields is None:
      return ()
    return tuple(name for name in _TRAIN_FIELD_NAMES
                 if name not in train_fields and name not in _COMMON_FIELDS)

  def _check_training_faults(self) -> None:
    _require(isinstance(self.training_faults, tuple)
             and all(isinstance(spec, str) for spec in self.training_faults),
             "training_faults", self.training_faults, "a tuple of training fault spec strings")
    if not self.training_faults:
      return
    from mbrl_drift.faults.training_spec import combine_hooks, parse_training_fault_spec

    hooks = []
    for spec in self.training_faults:
      try:
        hooks.append(parse_training_fault_spec(spec))
      except ValueError as error:
        raise ValueError(f"invalid config field training_faults: {error}") from None
      for _, step, _ in hooks[-1].optimizer_resets:
        # The step counter advances by num_envs, and a reset happens at one exact step.
        _require(step % self.num_envs == 0, "training_faults", spec,
                 f"an optimizer_reset start_step that is a multiple of num_envs={self.num_envs} "
                 f"(the step counter advances by num_envs; {step} is never reached)")
    try:
      combine_hooks(*hooks)
    except ValueError as error:
      raise ValueError(f"invalid config field training_faults={self.training_faults!r}: "
                       f"{error}") from None

  # -- derived sizes --------------------------------------------------------------------------

  @property
  def sequence_length(self) -> int:
    """Transitions per sampled sequence: the unroll plus the n-step window of its last step."""
    return self.unroll_steps + self.n_step

  @property
  def iterations(self) -> int:
    """Vectorised environment steps per seed."""
    return self.total_steps // self.num_envs

  @property
  def learning_updates(self) -> int:
    """Gradient updates per component over the whole run (those after ``learning_starts``)."""
    first = max(-(-self.learning_starts // self.num_envs), self.sequence_length)
    return max(1, (self.iterations - first + 1) * self.updates_per_iteration)

  @property
  def buffer_steps(self) -> int:
    """Buffer capacity in vectorised time steps."""
    return self.buffer_size // self.num_envs

  # -- identity and (de)serialisation ---------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["env_kwargs"] = [list(pair) for pair in self.env_kwargs]
    out["training_faults"] = list(self.training_faults)
    out["freeze"] = list(self.freeze)
    # Fields added after runs were first stored are left out at their defaults, so that the
    # dicts and hashes of configs that do not use them stay as they always were.
    for name in _LATER_FIELDS:
      if getattr(self, name) == _FIELD_DEFAULTS[name]:
        del out[name]
    from mbrl_drift import agents

    # An agent's identity holds only the fields it reads.
    for name in self._unused_fields(agents.get(self.agent_kind).train_fields):
      out.pop(name, None)
    return out

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
    from mbrl_drift import agents

    data = dict(data)
    kind = data.get("agent_kind", "planner")
    _require(isinstance(kind, str) and kind in agents.names(), "agent_kind", kind,
             f"one of {list(agents.names())}")
    agent_type = agents.get(kind).config_type
    agent_fields = {f.name for f in dataclasses.fields(agent_type)}
    train_fields = {f.name for f in dataclasses.fields(cls)}
    agent_data = data.pop("agent", {}) or {}
    unknown = set(agent_data) - agent_fields
    if unknown:
      raise ValueError(f"unknown agent config field(s) {sorted(unknown)}; allowed: "
                       f"{sorted(agent_fields)}")
    unknown = set(data) - train_fields
    if unknown:
      raise ValueError(f"unknown train config field(s) {sorted(unknown)}; allowed: "
                       f"{sorted(train_fields)}")
    if "env_kwargs" in data:
      data["env_kwargs"] = tuple(tuple(pair) for pair in data["env_kwargs"])
    for name in ("training_faults", "freeze"):
      if isinstance(data.get(name), list):
        data[name] = tuple(data[name])
    return cls(agent=agent_type(**agent_data), **data)

  def config_hash(self) -> str:
    """A short stable hash identifying this configuration."""
    blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


_LATER_FIELDS = ("training_faults", "final_lr_fraction", "agent_kind", "init_from", "freeze")
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
_TRAIN_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))
#: Fields every agent's run has (an AgentDef's ``train_fields`` need not list them).
_COMMON_FIELDS = ("env", "env_kwargs", "agent", "agent_kind", "init_from", "freeze",
                  "total_steps", "num_envs", "num_chunks", "eval_episodes", "training_faults")


def replace(config: Any, **changes: Any) -> Any:
  """``dataclasses.replace`` that also accepts ``agent__field=value`` for nested agent fields."""
  agent_changes = {k.split("__", 1)[1]: v for k, v in changes.items() if k.startswith("agent__")}
  changes = {k: v for k, v in changes.items() if not k.startswith("agent__")}
  if agent_changes:
    changes["agent"] = dataclasses.replace(config.agent, **agent_changes)
  return dataclasses.replace(config, **changes)
