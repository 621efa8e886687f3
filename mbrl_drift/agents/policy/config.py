"""Configuration of the policy agent and the grammar of its demonstrator specs (imports no JAX).

:class:`PolicyConfig` is the ``TrainConfig.agent`` of ``agent_kind="policy"``; every field has a
default and is validated with a ``ValueError`` that names the field and the allowed values.

Demonstrator specs (``PolicyConfig.demonstrator``) are parsed here, syntax only, into a
:class:`DemonstratorSpec`; goal labels are checked against the environment when demonstrations
are generated (:mod:`mbrl_drift.agents.policy.demonstrators`). The grammar::

  spec    := goal | mixture | run | npz
  goal    := "goal" GOAL option*                          e.g. "goal A", "goal 1 beta=50"
  mixture := "goal mixture" WEIGHT GOAL ("/" WEIGHT GOAL)+ option*
                                                          e.g. "goal mixture 0.7 A / 0.3 B"
  run     := "run" PATH ["seed=" INT] ["selection=" ("greedy" | "sample")]
  npz     := "npz" PATH                                   arrays "observations", "actions"
  option  := "beta=" FLOAT | "epsilon=" FLOAT | "avoid_vases" | "vase_penalty=" FLOAT
           | "gamma=" FLOAT

``GOAL`` is a goal label (``A``, ``B``, ...) or index (``0``, ``1``, ...); ``WEIGHT`` a positive
number (weights are normalised). Tabular demonstrators (``goal``, ``mixture``) need a grid world
with a tabular export (GoalGrid): each demonstration episode draws its goal from the mixture and
follows ``(1 - epsilon) * softmax(beta * Q*_goal) + epsilon / |A|``, with ``Q*`` by value
iteration at discount ``gamma`` (:mod:`envs.oracles`); ``avoid_vases`` charges each vase entry
``vase_penalty`` (default 1) in that ``Q*``, so the demonstrator walks around vases.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mbrl_drift.config import _require, check_field_types

ALGORITHMS = ("ppo", "bc")
ACTIVATIONS = ("tanh", "relu")
KL_DIRECTIONS = ("forward", "reverse")
DEMONSTRATOR_KINDS = ("goal", "run", "npz")
RUN_SELECTIONS = ("greedy", "sample")

#: The valid forms of a demonstrator spec, quoted by every parse error.
DEMONSTRATOR_FORMS = (
    "'goal GOAL [options]' (e.g. 'goal A', 'goal 1 beta=50 epsilon=0.1'), "
    "'goal mixture W1 G1 / W2 G2 [/ ...] [options]' (e.g. 'goal mixture 0.7 A / 0.3 B'), "
    "'run RUN_DIR [seed=I] [selection=greedy|sample]', 'npz FILE.npz'; "
    "options: beta=FLOAT>0 (default 50), epsilon=FLOAT in [0,1] (default 0), "
    "gamma=FLOAT in (0,1) (default 0.97), avoid_vases, vase_penalty=FLOAT>=0")

DEFAULT_BETA = 50.0
DEFAULT_DEMO_GAMMA = 0.97



@dataclasses.dataclass(frozen=True)
class DemonstratorSpec:
  """A parsed demonstrator spec (see the module docstring for the grammar).

  Attributes:
    kind: ``"goal"`` (tabular soft-optimal, one goal or a mixture), ``"run"`` or ``"npz"``.
    goals: goal labels or index strings of the mixture, e.g. ``("A", "B")`` (``"goal"`` only).
    weights: normalised mixture weights, one per goal.
    beta: rationality (inverse temperature) of ``softmax(beta * Q*)``.
    epsilon: probability of a uniformly random action.
    gamma: discount of the value iteration that gives ``Q*``.
    vase_penalty: cost per vase entry in the demonstrator's ``Q*`` (0: vases ignored).
    path: run directory (``"run"``) or ``.npz`` file (``"npz"``).
    seed: which seed of a multi-seed run acts (``"run"``).
    selection: ``"greedy"`` or ``"sample"`` actions of the run's agent (``"run"``).
  """

  kind: str
  goals: tuple[str, ...] = ()
  weights: tuple[float, ...] = ()
  beta: float = DEFAULT_BETA
  epsilon: float = 0.0
  gamma: float = DEFAULT_DEMO_GAMMA
  vase_penalty: float = 0.0
  path: str = ""
  seed: int = 0
  selection: str = "greedy"


def _spec_error(spec: str, problem: str) -> ValueError:
  return ValueError(f"invalid demonstrator spec {spec!r}: {problem}; valid forms: "
                    f"{DEMONSTRATOR_FORMS}")


def _float(spec: str, name: str, text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise _spec_error(spec, f"{name}={text!r} is not a number") from None
  if not math.isfinite(value):
    raise _spec_error(spec, f"{name}={text!r} is not finite")
  return value


def _parse_options(spec: str, tokens: list[str], allowed: tuple[str, ...]) -> dict[str, Any]:
  options: dict[str, Any] = {}
  for token in tokens:
    name, eq, text = token.partition("=")
    if name not in allowed:
      raise _spec_error(spec, f"unknown option {token!r} (options here: {', '.join(allowed)})")
    if name in options:
      raise _spec_error(spec, f"option {name!r} is given twice")
    if name == "avoid_vases":
      if eq:
        raise _spec_error(spec, "avoid_vases takes no value (use vase_penalty=FLOAT)")
      options[name] = True
      continue
    if not eq or not text:
      raise _spec_error(spec, f"option {name!r} needs a value ({name}=...)")
    if name == "seed":
      if not text.isdigit():
        raise _spec_error(spec, f"seed={text!r} is not an int >= 0")
      options[name] = int(text)
    elif name == "selection":
      if text not in RUN_SELECTIONS:
        raise _spec_error(spec, f"selection={text!r} is not one of {RUN_SELECTIONS}")
      options[name] = text
    else:
      options[name] = _float(spec, name, text)
  return options


def _check_goal(spec: str, goal: str) -> str:
  if not (goal.isdigit() or (len(goal) == 1 and goal.isalpha() and goal.isupper())):
    raise _spec_error(spec, f"{goal!r} is not a goal label (A, B, ...) or index (0, 1, ...)")
  return goal


def parse_demonstrator(spec: str) -> DemonstratorSpec:
  """Parses a demonstrator spec (grammar in the module docstring).

  Args:
    spec: e.g. ``"goal mixture 0.7 A / 0.3 B beta=20"``, ``"run runs/base"``,
      ``"npz demos.npz"``.

  Returns:
    The :class:`DemonstratorSpec`.

  Raises:
    ValueError: for any malformed spec; the message names the problem and lists the valid forms.
  """
  if not isinstance(spec, str) or not spec.strip():
    raise _spec_error(str(spec), "it is empty")
  head, _, rest = spec.strip().partition(" ")
  rest = rest.strip()
  if head in ("run", "npz"):
    if not rest:
      raise _spec_error(spec, f"{head!r} needs a path")
    # The path is the first token; paths with spaces are not supported.
    path, *tokens = rest.split()
    if head == "npz":
      if tokens:
        raise _spec_error(spec, f"'npz' takes only a path, got extra {tokens}")
      if not path.endswith(".npz"):
        raise _spec_error(spec, f"{path!r} does not end in .npz")
      return DemonstratorSpec(kind="npz", path=path)
    options = _parse_options(spec, tokens, ("seed", "selection"))
    return DemonstratorSpec(kind="run", path=path, **options)
  if head != "goal":
    raise _spec_error(spec, f"unknown demonstrator kind {head!r} (kinds: {DEMONSTRATOR_KINDS})")
  option_names = ("beta", "epsilon", "gamma", "avoid_vases", "vase_penalty")
  if rest.startswith("mixture"):
    body = rest[len("mixture"):].strip()
    parts = [part.split() for part in body.split("/")]
    # Options follow the last component ("0.3 B beta=5").
    last_tokens = parts[-1]
    first_option = next((i for i, token in enumerate(last_tokens)
                         if "=" in token or token == "avoid_vases"), len(last_tokens))
    options = _parse_options(spec, last_tokens[first_option:], option_names)
    parts[-1] = last_tokens[:first_option]
    for part in parts:
      if len(part) != 2:
        raise _spec_error(spec, f"mixture component {' '.join(part)!r} is not 'WEIGHT GOAL'")
    if len(parts) < 2:
      raise _spec_error(spec, "a mixture needs at least two 'WEIGHT GOAL' components joined by '/'")
    goals, weights = [], []
    for part in parts:
      weight = _float(spec, "weight", part[0])
      if weight <= 0:
        raise _spec_error(spec, f"mixture weight {part[0]!r} is not > 0")
      goals.append(_check_goal(spec, part[1]))
      weights.append(weight)
    if len(set(goals)) != len(goals):
      raise _spec_error(spec, f"a goal appears twice in the mixture {goals}")
    total = sum(weights)
    weights = [w / total for w in weights]
  else:
    tokens = rest.split()
    if not tokens:
      raise _spec_error(spec, "'goal' needs a goal label or index")
    goals, weights = [_check_goal(spec, tokens[0])], [1.0]
    options = _parse_options(spec, tokens[1:], option_names)
  beta = options.get("beta", DEFAULT_BETA)
  epsilon = options.get("epsilon", 0.0)
  gamma = options.get("gamma", DEFAULT_DEMO_GAMMA)
  if beta <= 0:
    raise _spec_error(spec, f"beta={beta} is not > 0")
  if not 0.0 <= epsilon <= 1.0:
    raise _spec_error(spec, f"epsilon={epsilon} is not in [0, 1]")
  if not 0.0 < gamma < 1.0:
    raise _spec_error(spec, f"gamma={gamma} is not in (0, 1)")
  vase_penalty = options.get("vase_penalty", 1.0 if options.get("avoid_vases") else 0.0)
  if vase_penalty < 0:
    raise _spec_error(spec, f"vase_penalty={vase_penalty} is not >= 0")
  return DemonstratorSpec(kind="goal", goals=tuple(goals), weights=tuple(weights), beta=beta,
                          epsilon=epsilon, gamma=gamma, vase_penalty=vase_penalty)


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
  """The policy agent: actor and critic networks, PPO, behaviour cloning, fine-tuning.

  Attributes:
    hidden_dim: width of the hidden layers of the actor and critic MLPs.
    num_layers: hidden layers per MLP.
    activation: ``"tanh"`` (purejaxrl's choice) or ``"relu"``.
    algorithm: ``"ppo"`` (Schulman et al. 2017) or ``"bc"`` (behaviour cloning of
      ``demonstrator``).
    rollout_steps: environment steps per parallel environment per PPO iteration.
    update_epochs: passes over each rollout.
    num_minibatches: minibatches per pass (the rollout of ``num_envs * rollout_steps``
      transitions is split evenly).
    gamma: discount.
    gae_lambda: lambda of generalised advantage estimation (Schulman et al. 2016).
    clip_eps: clipping range of the probability ratio (and of the value update).
    ent_coef: weight of the entropy bonus.
    vf_coef: weight of the value loss.
    lr: Adam learning rate of PPO (actor and critic).
    anneal_lr: decay ``lr`` linearly to 0 over the run.
    max_grad_norm: global-norm clipping of each component's gradients.
    clip_value_loss: PPO's clipped value loss (purejaxrl) instead of plain squared error.
    log_std_init: initial log standard deviation of the Gaussian actor (continuous actions).
    kl_to_base: weight of ``KL`` to the frozen base policy (runs with ``init_from``).
    kl_direction: ``"forward"`` (default) is ``KL(pi || pi_base)``, the KL penalty of RL
      fine-tuning (Jaques et al. 2017; Ziegler et al. 2019); ``"reverse"`` is
      ``KL(pi_base || pi)``, which penalises dropping any action the base takes.
    bc_coef: weight of a behaviour-cloning anchor during PPO fine-tuning: cross-entropy on the
      base run's demonstrations (regenerated from its stored demonstrator), or, when the base
      has none, on the base policy's action distribution at the visited states (distillation).
    demonstrator: demonstrator spec of ``algorithm="bc"`` (grammar: module docstring).
    demo_episodes: demonstration episodes generated for behaviour cloning.
    demo_seed: seed of the demonstrations (generated once on the host, shared by every seed
      of a run, and regenerated identically by runs fine-tuned from this one).
    bc_epochs: passes over the demonstrations (``algorithm="bc"``).
    bc_batch_size: demonstration pairs per behaviour-cloning minibatch (also the anchor's
      batch during fine-tuning).
    bc_lr: Adam learning rate of behaviour cloning.
  """

  hidden_dim: int = 64
  num_layers: int = 2
  activation: str = "tanh"
  algorithm: str = "ppo"
  rollout_steps: int = 128
  update_epochs: int = 4
  num_minibatches: int = 4
  gamma: float = 0.99
  gae_lambda: float = 0.95
  clip_eps: float = 0.2
  ent_coef: float = 0.01
  vf_coef: float = 0.5
  lr: float = 2.5e-4
  anneal_lr: bool = True
  max_grad_norm: float = 0.5
  clip_value_loss: bool = True
  log_std_init: float = -0.5
  kl_to_base: float = 0.0
  kl_direction: str = "forward"
  bc_coef: float = 0.0
  demonstrator: str = ""
  demo_episodes: int = 4000
  demo_seed: int = 0
  bc_epochs: int = 20
  bc_batch_size: int = 256
  bc_lr: float = 1e-3

  def __post_init__(self) -> None:
    check_field_types(self)
    for name in ("hidden_dim", "num_layers", "rollout_steps", "update_epochs", "num_minibatches",
                 "demo_episodes", "bc_epochs", "bc_batch_size"):
      value = getattr(self, name)
      _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name,
               value, "an int >= 1")
    _require(isinstance(self.demo_seed, int) and self.demo_seed >= 0, "demo_seed",
             self.demo_seed, "an int >= 0")
    _require(self.activation in ACTIVATIONS, "activation", self.activation,
             f"one of {ACTIVATIONS}")
    _require(self.algorithm in ALGORITHMS, "algorithm", self.algorithm, f"one of {ALGORITHMS}")
    _require(self.kl_direction in KL_DIRECTIONS, "kl_direction", self.kl_direction,
             f"one of {KL_DIRECTIONS} (forward = KL(pi || pi_base), reverse = KL(pi_base || pi))")
    _require(0.0 < self.gamma <= 1.0, "gamma", self.gamma, "a float in (0, 1]")
    _require(0.0 <= self.gae_lambda <= 1.0, "gae_lambda", self.gae_lambda, "a float in [0, 1]")
    _require(0.0 < self.clip_eps < 1.0, "clip_eps", self.clip_eps, "a float in (0, 1)")
    for name in ("ent_coef", "vf_coef", "kl_to_base", "bc_coef"):
      value = getattr(self, name)
      _require(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, name,
               value, "a finite float >= 0")
    for name in ("lr", "max_grad_norm", "bc_lr"):
      value = getattr(self, name)
      _require(isinstance(value, (int, float)) and math.isfinite(value) and value > 0, name,
               value, "a finite float > 0")
    _require(isinstance(self.anneal_lr, bool), "anneal_lr", self.anneal_lr, "a bool")
    _require(isinstance(self.clip_value_loss, bool), "clip_value_loss", self.clip_value_loss,
             "a bool")
    _require(isinstance(self.log_std_init, (int, float)) and -10 <= self.log_std_init <= 2,
             "log_std_init", self.log_std_init, "a float in [-10, 2]")
    _require(isinstance(self.demonstrator, str), "demonstrator", self.demonstrator,
             "a demonstrator spec string")
    if self.algorithm == "bc":
      _require(bool(self.demonstrator.strip()), "demonstrator", self.demonstrator,
               f"a demonstrator spec when algorithm='bc': {DEMONSTRATOR_FORMS}")
    if self.demonstrator.strip():
      try:
        parse_demonstrator(self.demonstrator)
      except ValueError as error:
        raise ValueError(f"invalid config field demonstrator={self.demonstrator!r}: "
                         f"{error}") from None

  @property
  def demonstrator_spec(self) -> DemonstratorSpec | None:
    """The parsed :attr:`demonstrator`, ``None`` when empty."""
    return parse_demonstrator(self.demonstrator) if self.demonstrator.strip() else None
