"""Sweep specifications: a grid of trials, written in Python or in a TOML file.

A sweep trains one *job* per (environment, agent variant): all seeds of a job train together in
one vmapped call, once, and every fault condition of that job reuses the trained agent ("train
once, break many times"). A *trial* is one evaluation condition of a job::

  (job, fault, severity or matched-damage target, planning horizon, action selection)

Jobs and trials are identified by hashes of their configurations, so re-running a sweep finds
the work already done.

A sweep file (TOML)::

  name = "component_faults"
  seeds = 4

  [train]                      # TrainConfig fields (agent fields as agent.NAME or [train.agent])
  env = ["GoalGrid-FourRooms"] # a list makes a grid axis
  preset = true                # start from mbrl_drift.presets, then apply the fields below
  total_steps = 20000

  [[variants]]                 # optional agent/training variants (one job each per environment)
  name = "horizon2"
  agent = { horizon = 2 }

  [[references]]               # extra runs trained inside each job, named in fault specs
  name = "goal_b"              # used as  value:swap(run=@goal_b)
  env_kwargs = { intended_goal = 1 }
  init_from = "main"           # fine-tune the job's own run ...
  freeze = ["world_model/encoder", "world_model/dynamics"]  # ... keeping its world model

  [evaluate]
  faults = ["value:gaussian(scale=1.0)",  # a spec, or a table with its own severities:
            { spec = "value:swap(run=@goal_b)", severities = [1.0], matched_drops = [] }]
  severities = [0.3, 1.0]      # explicit severities of every fault
  matched_drops = [0.5]        # and/or severities calibrated to these success drops
  horizons = [1, 3]
  policies = ["greedy", "boltzmann"]
  episodes = 64
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

from mbrl_drift import faults as faults_lib
from mbrl_drift import presets
from mbrl_drift.config import TrainConfig

INTACT = "intact"
MAIN_RUN = "main"


def _hash(data: Any) -> str:
  blob = json.dumps(data, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def _pairs(value: Mapping[str, Any] | Sequence[Sequence[Any]] | None
           ) -> tuple[tuple[str, Any], ...]:
  """A mapping or a sequence of ``(name, value)`` pairs -> sorted tuple of pairs."""
  if not value:
    return ()
  items = value.items() if isinstance(value, Mapping) else (tuple(pair) for pair in value)
  return tuple(sorted(items))


@dataclasses.dataclass(frozen=True)
class Variant:
  """An agent or training variant: overrides applied on top of the sweep's training config.

  Attributes:
    name: short name shown in reports.
    train: ``(field, value)`` overrides of :class:`TrainConfig`.
    agent: ``(field, value)`` overrides of :class:`AgentConfig`.
  """

  name: str = "default"
  train: tuple[tuple[str, Any], ...] = ()
  agent: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class ReferenceRun:
  """A run trained inside each job next to the main one, named in fault specs as ``@name``.

  Attributes:
    name: its name (``value:swap(run=@name)``).
    env_kwargs: environment overrides merged into the job's (e.g. another intended goal).
    train: ``(field, value)`` training overrides (e.g. fewer steps).
    init_from: ``"main"`` to fine-tune the job's main run, ``None`` to train from scratch.
    freeze: component paths kept fixed while it trains.
  """

  name: str
  env_kwargs: tuple[tuple[str, Any], ...] = ()
  train: tuple[tuple[str, Any], ...] = ()
  init_from: str | None = MAIN_RUN
  freeze: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FaultEntry:
  """A fault of the sweep, optionally with its own severities.

  Attributes:
    spec: the fault spec (``mbrl-drift faults`` lists the faults).
    severities: explicit severities of this fault (``None``: the sweep's).
    matched_drops: matched-damage targets of this fault (``None``: the sweep's).
  """

  spec: str
  severities: tuple[float, ...] | None = None
  matched_drops: tuple[float, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Job:
  """One trained agent (all seeds) and the trials that evaluate it.

  Attributes:
    job_id: hash of everything that determines the trained parameters.
    env: environment name.
    variant: the variant's name.
    config: the main run's training configuration.
    seeds: seeds trained together.
    base_seed: the base seed of the run.
    references: ``(name, config, init_from, freeze)`` of each reference run.
  """

  job_id: str
  env: str
  variant: str
  config: TrainConfig
  seeds: int
  base_seed: int
  references: tuple[tuple[str, TrainConfig, str | None, tuple[str, ...]], ...]

  @property
  def run_dir(self) -> str:
    """The main run's directory, relative to the sweep directory."""
    return f"runs/{self.job_id}/{MAIN_RUN}"

  def reference_dir(self, name: str) -> str:
    return f"runs/{self.job_id}/{name}"


@dataclasses.dataclass(frozen=True)
class Trial:
  """One evaluation condition of a job.

  ``severity`` is set for explicit severities and ``target_drop`` for matched-damage trials
  (their severity is calibrated once per job and fault, then stored).
  """

  trial_id: str
  job_id: str
  fault: str
  severity: float | None
  target_drop: float | None
  horizon: int
  policy: str
  episodes: int

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """A grid of trials.

  Attributes:
    name: the sweep's name.
    envs: environment names (one job per environment and variant).
    seeds: seeds per job, trained in one vmapped call.
    base_seed: base seed of every job.
    preset: start each environment's config from :func:`mbrl_drift.presets.preset`.
    train: ``(field, value)`` training overrides applied to every job.
    agent: ``(field, value)`` agent overrides applied to every job.
    variants: agent/training variants (one job per environment and variant).
    references: runs trained inside each job for reference faults (``run=@name``).
    faults: fault specs or :class:`FaultEntry` (a fault with its own severities); every job
      also gets the intact condition.
    severities: explicit severities of every fault.
    matched_drops: drops in intended-goal success to calibrate a severity for, per fault.
    horizons: planning horizons (empty: each agent's training horizon).
    policies: action selections (``greedy``, ``epsilon``, ``boltzmann``).
    episodes: evaluation episodes per trial and seed.
    calibration_episodes: episodes per seed in matched-damage calibration.
    sample_episodes: episodes of seed 0 kept with each trial for trajectory pictures.
    eval_seed: seed of the evaluation keys.
  """

  name: str = "sweep"
  envs: tuple[str, ...] = ("GoalGrid-FourRooms",)
  seeds: int = 4
  base_seed: int = 0
  preset: bool = True
  train: tuple[tuple[str, Any], ...] = ()
  agent: tuple[tuple[str, Any], ...] = ()
  variants: tuple[Variant, ...] = (Variant(),)
  references: tuple[ReferenceRun, ...] = ()
  faults: tuple[FaultEntry, ...] = ()
  severities: tuple[float, ...] = ()
  matched_drops: tuple[float, ...] = ()
  horizons: tuple[int, ...] = ()
  policies: tuple[str, ...] = ("greedy",)
  episodes: int = 64
  calibration_episodes: int = 64
  sample_episodes: int = 6
  eval_seed: int = 0

  def __post_init__(self) -> None:
    object.__setattr__(self, "faults", tuple(_fault_entry(f) for f in self.faults))
    self.validate()

  @property
  def fault_specs(self) -> tuple[str, ...]:
    return tuple(entry.spec for entry in self.faults)

  # -- validation ------------------------------------------------------------------------------

  def validate(self) -> None:
    """Checks every field and builds every job's configuration.

    Raises:
      ValueError: naming the bad field and the allowed values.
    """
    import envs as envs_lib

    _check(isinstance(self.name, str) and self.name.strip() != "", "name", self.name,
           "a non-empty string")
    _check(len(self.envs) > 0, "envs", self.envs, "at least one environment")
    for env in self.envs:
      _check(env in envs_lib.names(), "envs", env, f"one of {envs_lib.names()}")
    _check(isinstance(self.seeds, int) and self.seeds >= 1, "seeds", self.seeds, "an int >= 1")
    for name in ("episodes", "calibration_episodes"):
      value = getattr(self, name)
      _check(isinstance(value, int) and value >= 1, name, value, "an int >= 1")
    _check(isinstance(self.sample_episodes, int) and self.sample_episodes >= 0,
           "sample_episodes", self.sample_episodes, "an int >= 0")
    names = [v.name for v in self.variants]
    _check(len(names) == len(set(names)) and names, "variants", names, "distinct names")
    for entry in self.faults:
      severities = self.severities if entry.severities is None else entry.severities
      drops = self.matched_drops if entry.matched_drops is None else entry.matched_drops
      _check(severities or drops, "severities", entry.spec,
             "at least one severity or matched drop for every fault")
      for severity in severities:
        _check(isinstance(severity, (int, float)) and severity >= 0, "severities", severity,
               "numbers >= 0")
      for drop in drops:
        _check(isinstance(drop, (int, float)) and 0 < drop <= 1, "matched_drops", drop,
               "numbers in (0, 1]")
    for horizon in self.horizons:
      _check(isinstance(horizon, int) and horizon >= 1, "horizons", horizon, "ints >= 1")
    _check(len(self.policies) > 0, "policies", self.policies,
           "some of each agent's action selections (planner: greedy, epsilon, boltzmann)")
    for name in ("horizons", "policies"):
      values = getattr(self, name)
      _check(len(values) == len(set(values)), name, values, "distinct values")
    reference_names = [r.name for r in self.references]
    _check(len(reference_names) == len(set(reference_names)) and MAIN_RUN not in reference_names,
           "references", reference_names, f"distinct names other than {MAIN_RUN!r}")
    for reference in self.references:
      _check(reference.init_from in (None, MAIN_RUN), "references.init_from",
             reference.init_from, f"{MAIN_RUN!r} or none")
    specs = self.fault_specs
    _check(len(specs) == len(set(specs)), "faults", specs, "distinct fault specs")
    for spec in specs:
      _check(isinstance(spec, str) and spec != INTACT, "faults", spec, "fault spec strings")
      _validate_fault(spec, reference_names)
    jobs = self.jobs()
    for job in jobs:
      _validate_fault_targets(specs, job)
      axes = job_eval_axes(job)
      for policy in self.policies:
        _check(policy in axes.selections, "policies", policy,
               f"one of {list(axes.selections)} (the action selections of the "
               f"{job.config.agent_kind} agent of {job.env}, variant {job.variant})")
      if axes.depth_name is None:
        continue
      for horizon in self.horizons:
        _check(horizon <= axes.depth_max, "horizons", horizon,
               f"at most the agent's largest {axes.depth_name}={axes.depth_max} ({job.env}, "
               f"variant {job.variant})")

  # -- the grid --------------------------------------------------------------------------------

  def jobs(self) -> list[Job]:
    """One job per (environment, variant), in spec order."""
    jobs = []
    for env in self.envs:
      for variant in self.variants:
        agent_kind = dict(variant.train).get("agent_kind",
                                             dict(self.train).get("agent_kind", "planner"))
        config = presets.starting_config(env, use_preset=self.preset, agent_kind=agent_kind)
        config = _apply(config, self.train, self.agent, f"train/agent of sweep {self.name!r}")
        config = _apply(config, variant.train, variant.agent, f"variant {variant.name!r}")
        references = []
        for reference in self.references:
          kwargs = {**dict(config.env_kwargs), **dict(reference.env_kwargs)}
          reference_config = _apply(
              dataclasses.replace(config, env_kwargs=tuple(sorted(kwargs.items()))),
              reference.train, (), f"reference {reference.name!r}")
          references.append((reference.name, reference_config, reference.init_from,
                             tuple(reference.freeze)))
        job_id = _hash({"config": config.to_dict(), "seeds": self.seeds,
                        "base_seed": self.base_seed,
                        "references": [(n, c.to_dict(), i, list(f)) for n, c, i, f in references]})
        jobs.append(Job(job_id=job_id, env=env, variant=variant.name, config=config,
                        seeds=self.seeds, base_seed=self.base_seed,
                        references=tuple(references)))
    return jobs

  def trials(self, job: Job) -> list[Trial]:
    """Every trial of a job: the intact agent, then each fault at each severity and target,
    at every horizon and policy."""
    axes = job_eval_axes(job)
    if axes.depth_name is None:
      horizons: Sequence[int | None] = (None,)
    else:
      horizons = self.horizons or (axes.depth_default,)
    conditions: list[tuple[str, float | None, float | None]] = [(INTACT, 0.0, None)]
    for entry in self.faults:
      severities = self.severities if entry.severities is None else entry.severities
      drops = self.matched_drops if entry.matched_drops is None else entry.matched_drops
      conditions += [(entry.spec, float(s), None) for s in severities]
      conditions += [(entry.spec, None, float(d)) for d in drops]
    trials = []
    for (fault, severity, drop), horizon, policy in itertools.product(
        conditions, horizons, self.policies):
      horizon = None if horizon is None else int(horizon)
      identity = {"job": job.job_id, "fault": fault, "severity": severity, "target_drop": drop,
                  "horizon": horizon, "policy": policy, "episodes": self.episodes,
                  "calibration_episodes": self.calibration_episodes if drop else None,
                  "eval_seed": self.eval_seed, "sample_episodes": self.sample_episodes}
      trials.append(Trial(trial_id=_hash(identity), job_id=job.job_id, fault=fault,
                          severity=severity, target_drop=drop, horizon=horizon,
                          policy=policy, episodes=self.episodes))
    return trials

  def spec_hash(self) -> str:
    """Hash of everything that determines the sweep's trials."""
    return _hash(self.to_dict())

  # -- (de)serialisation -----------------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(self), default=str))

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> "SweepSpec":
    """Builds a spec from the nested layout of a sweep file (module docstring), or from
    :meth:`to_dict`'s flat layout.

    Raises:
      ValueError: unknown sections or fields (listing the allowed ones), or invalid values.
    """
    data = dict(data)
    if "train" in data and isinstance(data["train"], Mapping) or "evaluate" in data:
      data = _flatten_file_layout(data)
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - allowed
    if unknown:
      raise ValueError(f"unknown sweep field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
      if name in ("envs", "policies"):
        value = (value,) if isinstance(value, str) else tuple(value)
      elif name in ("severities", "matched_drops", "horizons"):
        value = tuple(value)
      elif name in ("train", "agent"):
        value = _pairs(value)
      elif name == "faults":
        value = tuple(_fault_entry(f) for f in ((value,) if isinstance(value, str) else value))
      elif name == "variants":
        value = tuple(_variant(v) for v in value)
      elif name == "references":
        value = tuple(_reference(r) for r in value)
      kwargs[name] = value
    return cls(**kwargs)

  @classmethod
  def from_file(cls, path: str | Path) -> "SweepSpec":
    """Reads a TOML sweep file.

    Raises:
      ValueError: a file that is not valid TOML or describes an invalid sweep (the message
        names the file).
    """
    path = Path(path)
    try:
      data = tomllib.loads(path.read_text())
    except FileNotFoundError as error:
      raise ValueError(f"sweep file {path} does not exist") from error
    except tomllib.TOMLDecodeError as error:
      raise ValueError(f"sweep file {path} is not valid TOML: {error}") from error
    try:
      return cls.from_dict(data)
    except (ValueError, TypeError) as error:
      raise ValueError(f"invalid sweep file {path}: {error}") from error


# -- helpers -------------------------------------------------------------------------------------


def _check(condition: Any, field: str, value: Any, allowed: str) -> None:
  if not condition:
    raise ValueError(f"invalid sweep field {field}={value!r}: expected {allowed}")


def _validate_fault(spec: str, reference_names: Sequence[str]) -> None:
  def load_reference(run: str) -> dict:
    if run.startswith("@") and run[1:] not in reference_names:
      raise ValueError(f"fault {spec!r} names run {run!r}, but the sweep defines no reference "
                       f"run {run[1:]!r} (references: {list(reference_names)})")
    return {}

  try:
    faults_lib.parse_fault_spec(spec, load_reference=load_reference, init_params={})
  except ValueError as error:
    raise ValueError(f"invalid sweep field faults: {error}") from error


@functools.cache
def _eval_axes_of(config: TrainConfig) -> Any:
  from mbrl_drift.train import build_agent

  return build_agent(config).eval_axes


def job_eval_axes(job: Job) -> Any:
  """The evaluation axes (:class:`~mbrl_drift.agents.base.EvalAxes`) of a job's agent."""
  return _eval_axes_of(job.config)


def _validate_fault_targets(specs: Sequence[str], job: Job) -> None:
  """Checks every fault's target, and every reference's frozen paths, against the job's agent
  (shapes only, nothing is compiled), so that a bad path fails before anything trains."""
  import jax

  from mbrl_drift.faults.paths import resolve_target
  from mbrl_drift.train import build_agent

  agent = build_agent(job.config)
  params = jax.eval_shape(agent.init, jax.random.key(0))
  for name, _, _, freeze in job.references:
    for pattern in freeze:
      try:
        resolve_target(params, pattern)
      except ValueError as error:
        raise ValueError(f"invalid sweep field references.freeze of {name!r}: {error} (agent of "
                         f"{job.env}, variant {job.variant})") from error
  for spec in specs:
    fault = faults_lib.parse_fault_spec(spec, load_reference=lambda run: {}, init_params={})
    try:
      if isinstance(fault, faults_lib.ActivationFault):
        fault.validate(params)
      else:
        fault.target_paths(params)
    except ValueError as error:
      raise ValueError(f"invalid sweep field faults: {spec!r} does not fit the agent of "
                       f"{job.env} (variant {job.variant}): {error}") from error


def _apply(config: TrainConfig, train: Sequence[tuple[str, Any]],
           agent: Sequence[tuple[str, Any]], where: str) -> TrainConfig:
  """``config`` with field overrides, validated by :meth:`TrainConfig.from_dict`."""
  data = {**config.to_dict(), **dict(train)}
  data["agent"] = {**data["agent"], **dict(agent)}
  data["env_kwargs"] = _pairs(data.get("env_kwargs"))
  try:
    return TrainConfig.from_dict(data)
  except (TypeError, ValueError) as error:
    raise ValueError(f"invalid config in {where}: {error}") from error


def _fault_entry(data: Any) -> FaultEntry:
  if isinstance(data, FaultEntry):
    return data
  if isinstance(data, str):
    return FaultEntry(spec=data)
  if not isinstance(data, Mapping):
    raise ValueError(f"invalid sweep field faults: {data!r} is neither a spec string nor a "
                     f"table with spec, severities, matched_drops")
  data = dict(data)
  unknown = set(data) - {"spec", "severities", "matched_drops"}
  if unknown or "spec" not in data:
    raise ValueError(f"invalid sweep field faults: a fault table needs 'spec' and may have "
                     f"'severities', 'matched_drops'; got {sorted(data)}")
  optional = lambda name: None if data.get(name) is None else tuple(data[name])
  return FaultEntry(spec=str(data["spec"]), severities=optional("severities"),
                    matched_drops=optional("matched_drops"))


def _variant(data: Any) -> Variant:
  if isinstance(data, Variant):
    return data
  data = dict(data)
  unknown = set(data) - {"name", "train", "agent"}
  if unknown:
    raise ValueError(f"unknown variant field(s) {sorted(unknown)}; allowed: agent, name, train")
  return Variant(name=str(data.get("name", "default")), train=_pairs(data.get("train")),
                 agent=_pairs(data.get("agent")))


def _reference(data: Any) -> ReferenceRun:
  if isinstance(data, ReferenceRun):
    return data
  data = dict(data)
  allowed = {f.name for f in dataclasses.fields(ReferenceRun)}
  unknown = set(data) - allowed
  if unknown:
    raise ValueError(f"unknown reference field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
  if "name" not in data:
    raise ValueError("every [[references]] entry needs a name")
  return ReferenceRun(name=str(data["name"]), env_kwargs=_pairs(data.get("env_kwargs")),
                      train=_pairs(data.get("train")), init_from=data.get("init_from", MAIN_RUN),
                      freeze=tuple(data.get("freeze", ())))


_TOP_LEVEL = {"name", "seeds", "base_seed", "train", "evaluate", "variants", "references"}
_EVALUATE = {"faults", "severities", "matched_drops", "horizons", "policies", "episodes",
             "calibration_episodes", "sample_episodes", "eval_seed"}


def _flatten_file_layout(data: Mapping[str, Any]) -> dict[str, Any]:
  """Sweep-file layout (``[train]``, ``[evaluate]`` sections) -> :class:`SweepSpec` fields."""
  unknown = set(data) - _TOP_LEVEL
  if unknown:
    raise ValueError(f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_LEVEL)}")
  flat: dict[str, Any] = {k: data[k] for k in ("name", "seeds", "base_seed", "variants",
                                               "references") if k in data}
  train = dict(data.get("train") or {})
  if "env" in train:
    flat["envs"] = train.pop("env")
  if "preset" in train:
    flat["preset"] = bool(train.pop("preset"))
  agent = dict(train.pop("agent", {}) or {})
  agent.update({k.split(".", 1)[1]: train.pop(k) for k in list(train) if k.startswith("agent.")})
  flat["train"], flat["agent"] = train, agent
  evaluate = dict(data.get("evaluate") or {})
  unknown = set(evaluate) - _EVALUATE
  if unknown:
    raise ValueError(f"unknown [evaluate] key(s) {sorted(unknown)}; allowed: {sorted(_EVALUATE)}")
  flat.update(evaluate)
  return flat
