"""A small text grammar for weight faults, for the command line and sweep configs.

Grammar::

  spec   := fault ( ";" fault )*            several faults compose, applied left to right
  fault  := target ":" name [ "(" [ arg ( "," arg )* ] ")" ]
  target := pattern ( "+" pattern )*        component paths or globs, see faults.paths
  arg    := param "=" value                 number, true/false, a bare word or a quoted string

Examples::

  value:gaussian(scale=0.5)
  world_model/dynamics:bitflip(rate=1e-4, bits=exponent)
  value+world_model/reward:swap(run=runs/goal2)
  world_model/*:ablate()
  value:signflip(); world_model/reward:gaussian(scale=0.1, relative=true)

Whitespace around tokens is ignored. Values containing ``, ; ( )`` or spaces must be quoted
(``run='runs/a b'``). The ``run`` of ``swap`` and ``interpolate`` is resolved by the
``load_reference(run) -> params`` callable given to :func:`parse_fault_spec`; ``reinit`` uses its
``init_params``. Every malformed spec raises a ``ValueError`` that names the problem.

Training-time faults have the same grammar (:mod:`~mbrl_drift.faults.training_spec`), built on
the helpers :func:`split_top_level`, :func:`split_fault`, :func:`bind_params` and
:func:`format_fault_table`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from mbrl_drift.faults import activation, delta, weight
from mbrl_drift.faults.paths import split_pattern

Params = Any


class _Required:
  """Marker for a parameter without default."""

  def __repr__(self) -> str:
    return "<required>"


REQUIRED = _Required()


@dataclasses.dataclass(frozen=True)
class ParamInfo:
  """One parameter of a spec fault: its name, type, default and description."""

  name: str
  kind: str  # "float", "bool", "choice" or "str"
  default: Any
  doc: str
  choices: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FaultInfo:
  """A fault of the spec grammar: ``name``, ``params`` (name -> default or ``REQUIRED``), ``doc``.
  """

  name: str
  params: dict[str, Any]
  doc: str


@dataclasses.dataclass(frozen=True)
class _Entry:
  doc: str
  params: tuple[ParamInfo, ...]
  build: Callable[..., weight.Fault]


def _build_reference(factory: Callable[[str, Params], weight.Fault]) -> Callable[..., weight.Fault]:

  def build(target: str, run: str, *, load_reference: Callable[[str], Params] | None,
            init_params: Any, name: str) -> weight.Fault:
    del init_params
    if load_reference is None:
      raise ValueError(f"fault {name!r} needs a load_reference(run) callable to load {run!r}")
    fault = factory(target, load_reference(run))
    return fault.replace(options=fault.options + (("run", run),))

  return build


def _build_reinit(target: str, *, load_reference: Any, init_params: Any,
                  name: str) -> weight.Fault:
  del load_reference
  if init_params is None:
    raise ValueError(f"fault {name!r} needs init_params (parameters or an init_fn(key) callable)")
  return weight.reinitialize(target, init_params)


def _plain(factory: Callable[..., weight.Fault]) -> Callable[..., weight.Fault]:

  def build(target: str, *, load_reference: Any, init_params: Any, name: str,
            **kwargs: Any) -> weight.Fault:
    del load_reference, init_params, name
    return factory(target, **kwargs)

  return build


_RUN = ParamInfo("run", "str", REQUIRED, "checkpoint to load with load_reference")

_REGISTRY: dict[str, _Entry] = {
    "gaussian": _Entry(
        "additive Gaussian weight noise, std scale*severity (times tensor RMS if relative)",
        (ParamInfo("scale", "float", 0.1, "noise std at severity 1"),
         ParamInfo("relative", "bool", False, "scale by each tensor's RMS")),
        _plain(weight.gaussian_noise)),
    "bitflip": _Entry(
        "flip float bits, each with probability rate*severity (may give Inf/NaN)",
        (ParamInfo("rate", "float", 1e-3, "per-bit flip probability at severity 1"),
         ParamInfo("bits", "choice", "any", "which bits", weight.BIT_GROUPS)),
        _plain(weight.bit_flip)),
    "stuck": _Entry(
        "a fraction severity of the weights stuck at value",
        (ParamInfo("value", "float", 0.0, "stuck value"),),
        _plain(weight.stuck_at)),
    "ablate": _Entry(
        "silence a fraction severity of each network's hidden units",
        (), _plain(weight.unit_ablation)),
    "scale": _Entry(
        "scale the output layer by 1 + severity*(factor - 1)",
        (ParamInfo("factor", "float", REQUIRED, "output scale at severity 1"),),
        _plain(weight.output_scale)),
    "signflip": _Entry(
        "multiply the output layer by 1 - 2*severity (negated at 1)",
        (), _plain(weight.sign_flip)),
    "reinit": _Entry(
        "move toward freshly initialised parameters by fraction severity",
        (), _build_reinit),
    "interpolate": _Entry(
        "move toward a checkpoint's parameters by fraction severity (e.g. the base model)",
        (_RUN,), _build_reference(weight.interpolate)),
    "swap": _Entry(
        "replace by the same component of another checkpoint (blend below severity 1)",
        (_RUN,), _build_reference(weight.swap)),
    # Fine-tuning-delta faults: relative to the run's frozen base copy (base/<component>).
    "delta_scale": _Entry(
        "move along the fine-tuning delta toward the base by fraction severity (1 = base)",
        (), _plain(delta.delta_scale)),
    "delta_noise": _Entry(
        "noise of the fine-tuning delta's norm in a random direction, times severity",
        (), _plain(delta.delta_noise)),
    "delta_dropout": _Entry(
        "DARE: drop each delta entry with probability severity, rescale the rest",
        (), _plain(delta.delta_dropout)),
    # Activation faults act on a component's output at run time, not on its weights.
    "act_noise": _Entry(
        "activation fault: Gaussian noise on the component's output, std scale*severity",
        (ParamInfo("scale", "float", 0.1, "noise std at severity 1"),
         ParamInfo("relative", "bool", False, "scale by the output's RMS")),
        _plain(activation.activation_noise)),
    "act_stuck": _Entry(
        "activation fault: a fraction severity of output units stuck at value",
        (ParamInfo("value", "float", 0.0, "stuck value"),
         ParamInfo("seed", "int", 0, "chooses the stuck units")),
        _plain(activation.activation_stuck_at)),
    "act_ablate": _Entry(
        "activation fault: a fraction severity of output units set to 0",
        (ParamInfo("seed", "int", 0, "chooses the ablated units"),),
        _plain(activation.activation_ablation)),
}


def list_faults() -> list[FaultInfo]:
  """The faults of the spec grammar.

  Returns:
    One :class:`FaultInfo` per fault name, sorted by name; parameters without a default map to
    ``REQUIRED``.
  """
  return [FaultInfo(name, {p.name: p.default for p in entry.params}, entry.doc)
          for name, entry in sorted(_REGISTRY.items())]


def describe_faults() -> str:
  """A formatted table of the spec faults with their parameters and defaults, plus the syntax."""
  lines = format_fault_table([(name, entry.params, entry.doc)
                              for name, entry in sorted(_REGISTRY.items())])
  lines += ["",
            "syntax: TARGET:FAULT(param=value, ...); TARGET:FAULT(...)  (';' composes in order)",
            "TARGET: component paths or globs joined by '+', e.g. value+world_model/reward, "
            "world_model/*"]
  return "\n".join(lines)


def format_fault_table(rows: Sequence[tuple[str, Sequence[ParamInfo], str]]) -> list[str]:
  """The lines of an aligned ``fault  parameters  description`` table.

  Args:
    rows: ``(fault name, its parameters, one-line description)`` per fault, in display order.

  Returns:
    A header, a rule and one line per fault; a parameter shows as ``name=default`` (choices as
    ``name=a|b|c (default)``, no default as ``<required>``).
  """
  shown = []
  for name, params, doc in rows:
    text = ", ".join(
        f"{p.name}={'|'.join(p.choices)} ({p.default})" if p.choices else
        f"{p.name}={_show(p.default)}" for p in params)
    shown.append((name, text or "-", doc))
  widths = [max(len(row[i]) for row in shown + [("fault", "parameters", "")]) for i in range(2)]
  lines = [f"{'fault':<{widths[0]}}  {'parameters':<{widths[1]}}  description",
           f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 11}"]
  lines += [f"{n:<{widths[0]}}  {p:<{widths[1]}}  {d}" for n, p, d in shown]
  return lines


def _show(default: Any) -> str:
  if default is REQUIRED:
    return "<required>"
  if default is None:
    return "none"
  if isinstance(default, bool):
    return str(default).lower()
  return f"{default:g}" if isinstance(default, float) else str(default)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def split_top_level(text: str, separator: str, context: str) -> list[str]:
  """Splits on ``separator`` outside quotes and parentheses; checks both are balanced.

  Args:
    text: e.g. a whole spec (``";"``) or the arguments of one fault (``","``).
    separator: one character.
    context: the text named in error messages.

  Returns:
    The parts, unstripped (``len == number of top-level separators + 1``).

  Raises:
    ValueError: for unbalanced parentheses or an unterminated quote.
  """
  parts, depth, quote, start = [], 0, None, 0
  for i, char in enumerate(text):
    if quote:
      if char == quote:
        quote = None
    elif char in "'\"":
      quote = char
    elif char == "(":
      depth += 1
    elif char == ")":
      depth -= 1
      if depth < 0:
        raise ValueError(f"unbalanced parentheses in {context!r}: unexpected ')' at position {i}")
    elif char == separator and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  if quote:
    raise ValueError(f"unterminated quote {quote} in {context!r}")
  if depth != 0:
    raise ValueError(f"unbalanced parentheses in {context!r}: {depth} unclosed '('")
  parts.append(text[start:])
  return parts


def _unquote(value: str) -> str:
  if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
    return value[1:-1]
  return value


def _convert(fault: str, param: ParamInfo, raw: str) -> Any:
  text = _unquote(raw.strip())
  if param.kind == "int":
    try:
      return int(text)
    except ValueError:
      raise ValueError(f"fault {fault!r} parameter {param.name!r}: expected an integer, "
                       f"got {raw.strip()!r}") from None
  if param.kind == "float":
    try:
      value = float(text)
    except ValueError:
      raise ValueError(f"fault {fault!r} parameter {param.name!r}: expected a number, "
                       f"got {raw.strip()!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
      raise ValueError(f"fault {fault!r} parameter {param.name!r}: expected a finite number, "
                       f"got {raw.strip()!r}")
    return value
  if param.kind == "bool":
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise ValueError(f"fault {fault!r} parameter {param.name!r}: expected true or false, "
                     f"got {raw.strip()!r}")
  if param.kind == "choice":
    if text not in param.choices:
      raise ValueError(f"fault {fault!r} parameter {param.name!r}: {text!r} is not one of "
                       f"{', '.join(param.choices)}")
    return text
  if not text:
    raise ValueError(f"fault {fault!r} parameter {param.name!r}: empty value")
  return text


def split_fault(text: str, example: str = "value:gaussian(scale=0.5)"
                ) -> tuple[str, str, list[str]]:
  """Splits one ``TARGET:NAME(param=value, ...)`` into its target, name and raw arguments.

  Only the syntax is checked: the target's characters (not its components), the colon, the
  parentheses and quotes, and that a name is present.

  Args:
    text: one fault, without ``";"``.
    example: a well-formed fault shown when the colon is missing.

  Returns:
    ``(target, name, arguments)``, target and name stripped; ``arguments`` holds the raw
    ``"param=value"`` texts (empty without arguments), checked by :func:`bind_params`.

  Raises:
    ValueError: naming the problem (empty fault, missing colon, target or name, unbalanced
      parentheses or quotes, text after ``")"``).
  """
  stripped = text.strip()
  if not stripped:
    raise ValueError("empty fault in spec (check for a stray ';')")
  if ":" not in stripped:
    raise ValueError(f"missing ':' in fault {stripped!r}; expected TARGET:FAULT(param=value, ...), "
                     f"e.g. {example}")
  target, call = (part.strip() for part in stripped.split(":", 1))
  if not target:
    raise ValueError(f"missing target before ':' in {stripped!r}")
  split_pattern(target)  # raises a ValueError naming the bad term
  if "(" in call:
    name, _, rest = call.partition("(")
    name = name.strip()
    split_top_level("(" + rest, ",", stripped)  # raises on unbalanced parentheses or quotes
    rest = rest.rstrip()
    if not rest.endswith(")"):
      raise ValueError(f"unexpected text after ')' in {stripped!r}")
    args_text = rest[:-1]
    if _has_unquoted_parenthesis(args_text):
      raise ValueError(f"unexpected parenthesis inside the arguments of {stripped!r} "
                       "(quote values that contain parentheses)")
  elif ")" in call:
    raise ValueError(f"unbalanced parentheses in {stripped!r}: ')' without '('")
  else:
    name, args_text = call, ""
  if not name:
    raise ValueError(f"missing fault name after ':' in {stripped!r}")
  arguments = split_top_level(args_text, ",", stripped) if args_text.strip() else []
  return target, name, arguments


def bind_params(name: str, params: Sequence[ParamInfo], arguments: Sequence[str],
                context: str) -> dict[str, Any]:
  """Converts a fault's raw ``"param=value"`` arguments and fills in the defaults.

  Args:
    name: the fault's name (for messages).
    params: the fault's parameters.
    arguments: raw argument texts from :func:`split_fault`.
    context: the fault's text (for messages).

  Returns:
    Parameter name -> converted value, for every parameter.

  Raises:
    ValueError: for an empty argument, one without ``"="``, an unknown parameter (listing the
      allowed ones), a repeated one, a value of the wrong type or a missing required one.
  """
  allowed = {p.name: p for p in params}
  kwargs: dict[str, Any] = {}
  for arg in arguments:
    if not arg.strip():
      raise ValueError(f"empty argument in {context!r} (check for a stray ',')")
    if "=" not in arg:
      raise ValueError(f"argument {arg.strip()!r} in {context!r} is not param=value; "
                       f"parameters of {name!r}: {', '.join(allowed) or 'none'}")
    key, raw = (part.strip() for part in arg.split("=", 1))
    if key not in allowed:
      raise ValueError(f"fault {name!r} has no parameter {key!r}; allowed: "
                       f"{', '.join(allowed) or 'none'}")
    if key in kwargs:
      raise ValueError(f"parameter {key!r} given twice in {context!r}")
    kwargs[key] = _convert(name, allowed[key], raw)
  for param in params:
    if param.name not in kwargs:
      if param.default is REQUIRED:
        raise ValueError(f"fault {name!r} requires parameter {param.name!r} in {context!r}")
      kwargs[param.name] = param.default
  return kwargs


def _parse_one(text: str, load_reference: Any, init_params: Any) -> weight.Fault:
  target, name, arguments = split_fault(text)
  stripped = text.strip()
  if name not in _REGISTRY:
    raise ValueError(f"unknown fault {name!r} in {stripped!r}; known faults: "
                     f"{', '.join(sorted(_REGISTRY))}")
  entry = _REGISTRY[name]
  kwargs = bind_params(name, entry.params, arguments, stripped)
  return entry.build(target, load_reference=load_reference, init_params=init_params, name=name,
                     **kwargs)


def _has_unquoted_parenthesis(text: str) -> bool:
  quote = None
  for char in text:
    if quote:
      quote = None if char == quote else quote
    elif char in "'\"":
      quote = char
    elif char in "()":
      return True
  return False


def parse_fault_spec(spec: str, load_reference: Callable[[str], Params] | None = None,
                     init_params: Params | Callable[[Any], Params] | None = None) -> weight.Fault:
  """Parses a fault spec (grammar in the module docstring) into a :class:`~weight.Fault`.

  Args:
    spec: e.g. ``"value:gaussian(scale=0.5); world_model/*:ablate()"``.
    load_reference: ``load_reference(run) -> params``, needed by ``swap`` and ``interpolate``.
    init_params: initial parameters or ``init_fn(key) -> params``, needed by ``reinit``.

  Returns:
    The fault; several ``;``-separated faults are combined with :func:`~weight.compose`.

  Raises:
    ValueError: for a malformed spec: missing colon, unknown fault (listing the known ones),
      unknown parameter (listing the allowed ones), bad or missing value, unbalanced parentheses
      or quotes, a malformed target, or a reference fault without its loader.
  """
  if not isinstance(spec, str):
    raise ValueError(f"fault spec must be a string, got {type(spec).__name__}")
  faults = [_parse_one(part, load_reference, init_params)
            for part in split_top_level(spec, ";", spec)]
  if len(faults) == 1:
    return faults[0]
  if any(isinstance(fault, activation.ActivationFault) for fault in faults):
    raise ValueError(f"activation faults (act_*) cannot be composed with ';' in {spec!r}; "
                     "evaluate them as separate conditions")
  return weight.compose(*faults)
