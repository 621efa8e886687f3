"""A text grammar for training-time faults, for the command line, configs and sweep files.

The grammar of the weight faults (:mod:`~mbrl_drift.faults.spec`), over the training-time faults
of :mod:`~mbrl_drift.faults.training`::

  spec   := fault ( ";" fault )*            several faults act together
  fault  := target ":" name [ "(" [ arg ( "," arg )* ] ")" ]
  target := pattern ( "+" pattern )*
  arg    := param "=" value

Examples::

  world_model/reward:reward_signflip(start_step=5000)
  value:target_noise(scale=0.5, start_step=2000, end_step=4000)
  value:gradient_noise(scale=0.1)
  world_model/dynamics:freeze(start_step=1000)
  value:lr_spike(factor=10, start_step=3000, end_step=3100)
  value:optimizer_reset(start_step=5000)
  *:reward_swap(goal_index=1, start_step=0)

A fault parses into a :class:`~mbrl_drift.faults.TrainingHooks` holding exactly what its Python
factory builds (``reward_signflip`` -> :func:`~mbrl_drift.faults.training.reward_sign_flip` in
``reward_faults``, ``freeze`` -> :func:`~mbrl_drift.faults.training.freeze` in
``update_transforms``, ...); :func:`combine_hooks` joins hooks. Steps count the environment
steps of one seed, summed over its parallel environments (the scale of
``TrainConfig.total_steps``); a fault acts for ``start_step <= step < end_step`` (no
``end_step``: to the end of the run) with strength ``severity`` (0 is the identity).

What the target addresses depends on the fault:

* reward faults (``reward_*``): the losses that see the corrupted rewards, ``world_model/reward``
  (the reward model), ``value`` (its n-step targets) or both (``*``);
* value-target faults (``target_*``): the value targets, so the target must address ``value``;
* ``gradient_noise`` (on the gradients, before the optimisers), ``freeze`` and ``lr_spike`` (on
  the updates, after them): component paths or globs as for weight faults, checked against the
  trained agent's components when training is built;
* ``optimizer_reset``: exact component paths (``world_model/dynamics+value``), one reset each.

Every malformed spec raises a ``ValueError`` that names the problem and the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
from typing import TYPE_CHECKING, Any, Callable

from mbrl_drift.faults import training
from mbrl_drift.faults.training import TrainingHooks
from mbrl_drift.faults.paths import pattern_matches_path
from mbrl_drift.faults.spec import (
    REQUIRED,
    FaultInfo,
    ParamInfo,
    bind_params,
    format_fault_table,
    list_faults,
    split_fault,
    split_top_level,
)


# Kinds of training-time fault: where their hook goes.
REWARD, TARGET, GRADIENT, UPDATE, RESET = "reward", "target", "gradient", "update", "reset"



@dataclasses.dataclass(frozen=True)
class _Entry:
  kind: str
  doc: str
  params: tuple[ParamInfo, ...]
  build: Callable[..., TrainingHooks]


def _window(severity_doc: str = "strength; 0 is the identity") -> tuple[ParamInfo, ...]:
  return (ParamInfo("start_step", "int", 0, "first faulty environment step"),
          ParamInfo("end_step", "int", None, "first healthy step again (none: to the end)"),
          ParamInfo("severity", "float", 1.0, severity_doc))


def _hooks(**fields: Any) -> TrainingHooks:
  return TrainingHooks(**fields)


def _signal(factory: Callable[..., Any], field: str,
            positional: tuple[str, ...] = ()) -> Callable[..., TrainingHooks]:

  def build(target: str, **kwargs: Any) -> TrainingHooks:
    args = [kwargs.pop(name) for name in positional]
    return _hooks(**{field: (factory(*args, target=target, **kwargs),)})

  return build


def _build_reset(target: str, *, start_step: int, severity: float) -> TrainingHooks:
  if start_step < 0:
    raise ValueError(f"optimizer_reset: start_step must be >= 0, got {start_step}")
  if severity < 0:
    raise ValueError(f"optimizer_reset: severity must be >= 0, got {severity}")
  paths = tuple(term.strip() for term in target.split("+"))
  return _hooks(optimizer_resets=tuple((path, start_step, severity) for path in paths))


_SCALE = ParamInfo("scale", "float", REQUIRED, "noise std at severity 1")

_REGISTRY: dict[str, _Entry] = {
    "reward_noise": _Entry(
        REWARD, "Gaussian reward noise r + scale*severity*eps",
        (_SCALE, *_window()), _signal(training.reward_noise, "reward_faults", ("scale",))),
    "reward_signflip": _Entry(
        REWARD, "rewards times 1 - 2*severity (negated at 1)",
        _window(), _signal(training.reward_sign_flip, "reward_faults")),
    "reward_swap": _Entry(
        REWARD, "rewards of another goal, r + severity*(r_goal - r) (goal environments)",
        (ParamInfo("goal_index", "int", REQUIRED, "the goal whose rewards are learned"),
         *_window("mixing fraction; 1 is the other goal's rewards")),
        _signal(training.reward_swap, "reward_faults")),
    "target_noise": _Entry(
        TARGET, "Gaussian value-target noise y + scale*severity*eps",
        (_SCALE, *_window()), _signal(training.target_noise, "target_faults", ("scale",))),
    "target_signflip": _Entry(
        TARGET, "value targets times 1 - 2*severity (negated at 1)",
        _window(), _signal(training.target_sign_flip, "target_faults")),
    "target_offset": _Entry(
        TARGET, "biased value targets y + severity*offset (optimism for offset > 0)",
        (ParamInfo("offset", "float", REQUIRED, "bias at severity 1"), *_window()),
        _signal(training.target_offset, "target_faults", ("offset",))),
    "gradient_noise": _Entry(
        GRADIENT, "Gaussian noise scale*severity*eps on the gradients (before the optimiser)",
        (_SCALE, ParamInfo("seed", "int", 0, "seeds the noise"), *_window()),
        _signal(training.gradient_noise, "gradient_transforms", ("scale",))),
    "freeze": _Entry(
        UPDATE, "updates times 1 - severity (frozen at severity 1)",
        _window("fraction of the update removed"), _signal(training.freeze, "update_transforms")),
    "lr_spike": _Entry(
        UPDATE, "learning-rate spike: updates times 1 + severity*(factor - 1)",
        (ParamInfo("factor", "float", REQUIRED, "update scale at severity 1"), *_window()),
        _signal(training.lr_spike, "update_transforms", ("factor",))),
    "optimizer_reset": _Entry(
        RESET, "re-initialise the component's optimiser state (Adam moments) at start_step",
        (ParamInfo("start_step", "int", REQUIRED, "the step of the reset (a multiple of num_envs)"),
         ParamInfo("severity", "float", 1.0, "fraction of the reset")),
        _build_reset),
}

_SYNTAX = [
    "syntax: TARGET:FAULT(param=value, ...); TARGET:FAULT(...)  (';' or a repeated --train-fault "
    "adds faults)",
    "steps: environment steps of one seed (as total_steps); active for start_step <= step < "
    "end_step",
    "TARGET: reward_*: the losses seeing the rewards, world_model/reward, value or * (both); "
    "target_*: value;",
    "        gradient_noise, freeze, lr_spike: component paths or globs joined by '+', e.g. "
    "world_model/*;",
    "        optimizer_reset: component paths joined by '+', e.g. world_model/dynamics+value",
]


def list_training_faults() -> list[FaultInfo]:
  """The faults of the training-time spec grammar.

  Returns:
    One :class:`~mbrl_drift.faults.spec.FaultInfo` per fault name, reward faults first, then
    value-target faults, gradient and update transforms and the optimiser reset; parameters
    without a default map to ``REQUIRED``.
  """
  return [FaultInfo(name, {p.name: p.default for p in entry.params}, entry.doc)
          for name, entry in _REGISTRY.items()]


def describe_training_faults() -> str:
  """A formatted table of the training-time faults with their parameters, plus the syntax."""
  lines = format_fault_table([(name, entry.params, entry.doc)
                              for name, entry in _REGISTRY.items()])
  return "\n".join(lines + [""] + _SYNTAX)


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------


@functools.cache
def _possible_components() -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(every component path any registered agent can have, with groups; the trainable ones)."""
  from mbrl_drift.agents.registry import fault_surface

  trainable = tuple(p for p in fault_surface()[0] if not p.startswith("base/"))
  groups = {path.split("/")[0] for path in fault_surface()[0] if "/" in path}
  return tuple(sorted(set(fault_surface()[0]) | groups)), trainable


@functools.cache
def _signal_consumers() -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(the losses that see rewards, the losses with value targets) over every registered agent."""
  from mbrl_drift.agents.registry import fault_surface

  return fault_surface()[1], fault_surface()[2]


def _check_target(kind: str, name: str, target: str, context: str) -> None:
  terms = [term.strip() for term in target.split("+")]
  if kind in (REWARD, TARGET):
    reward_losses, target_losses = _signal_consumers()
    losses = reward_losses if kind == REWARD else target_losses
    valid = ", ".join(losses) + ", *"
    for term in terms:
      if not any(pattern_matches_path(term, loss) for loss in losses):
        what = "loss that sees rewards" if kind == REWARD else "value targets"
        raise ValueError(f"target {term!r} of {name!r} in {context!r} addresses no {what}; "
                         f"valid targets: {valid}")
    return
  components, trainable = _possible_components()
  if kind == RESET:
    for term in terms:
      if term not in trainable:
        raise ValueError(f"target {term!r} of {name!r} in {context!r} is not a component with "
                         f"its own optimiser; valid targets (joined by '+'): "
                         f"{', '.join(trainable)}")
    if len(set(terms)) != len(terms):
      raise ValueError(f"a component is reset twice in {context!r}")
    return
  for term in terms:
    if not any(fnmatch.fnmatchcase(path, term) for path in components):
      raise ValueError(f"target {term!r} of {name!r} in {context!r} matches no component; "
                       f"valid component paths: {', '.join(components)}")


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _unknown_fault(name: str, context: str) -> ValueError:
  if name in {info.name for info in list_faults()}:
    return ValueError(f"{name!r} in {context!r} is an evaluation-time weight fault "
                      "(`mbrl-drift evaluate --fault`); training-time faults: "
                      f"{', '.join(_REGISTRY)}")
  close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
  hint = f"did you mean {close[0]!r}? " if close else ""
  return ValueError(f"unknown training fault {name!r} in {context!r}; {hint}known training "
                    f"faults: {', '.join(_REGISTRY)}")


def _parse_one(text: str) -> TrainingHooks:
  target, name, arguments = split_fault(text, example="value:target_noise(scale=0.5)")
  context = text.strip()
  if name not in _REGISTRY:
    raise _unknown_fault(name, context)
  entry = _REGISTRY[name]
  kwargs = bind_params(name, entry.params, arguments, context)
  _check_target(entry.kind, name, target, context)
  try:
    return entry.build(target, **kwargs)
  except ValueError as error:  # the factories' range checks (scale >= 0, end_step > start_step)
    raise ValueError(f"{error} in {context!r}") from None


def parse_training_fault_spec(spec: str) -> TrainingHooks:
  """Parses a training-time fault spec (grammar in the module docstring) into hooks.

  Args:
    spec: e.g. ``"value:target_noise(scale=0.5, start_step=2000, end_step=4000)"``.

  Returns:
    A :class:`~mbrl_drift.faults.TrainingHooks` holding just the spec's faults (several
    ``;``-separated faults combined with :func:`combine_hooks`), for
    ``make_train(config, hooks)``.

  Raises:
    ValueError: for a malformed spec: missing colon, unknown fault (listing the known ones),
      unknown parameter (listing the allowed ones), bad or missing value, unbalanced parentheses
      or quotes, or a target that the fault cannot address (listing the valid targets).
  """
  if not isinstance(spec, str):
    raise ValueError(f"training fault spec must be a string, got {type(spec).__name__}")
  return combine_hooks(*(_parse_one(part) for part in split_top_level(spec, ";", spec)))


def combine_hooks(*hooks: TrainingHooks) -> TrainingHooks:
  """All the faults of several hooks in one, in the order given.

  Gradient and update transforms are chained in that order; signal faults apply one after the
  other.

  Args:
    *hooks: :class:`~mbrl_drift.faults.TrainingHooks`.

  Returns:
    The combined :class:`~mbrl_drift.faults.TrainingHooks` (empty without arguments).

  Raises:
    TypeError: if an argument is not a ``TrainingHooks``.
    ValueError: if two hooks reset the optimiser of the same component (one reset per
      component).
  """
  from mbrl_drift.train import TrainingHooks

  for hook in hooks:
    if not isinstance(hook, TrainingHooks):
      raise TypeError(f"combine_hooks takes TrainingHooks, got {type(hook).__name__}")
  combined = TrainingHooks(*(tuple(item for hook in hooks for item in getattr(hook, field))
                             for field in TrainingHooks._fields))
  paths = [reset[0] for reset in combined.optimizer_resets]
  repeated = sorted({path for path in paths if paths.count(path) > 1})
  if repeated:
    raise ValueError(f"optimizer_resets reset {', '.join(repeated)} more than once; one reset "
                     "per component")
  return combined
