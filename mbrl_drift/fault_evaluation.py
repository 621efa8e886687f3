"""Evaluation of a trained run under faults: every (fault, severity, horizon, policy, seed)
condition in one compiled call, and matched-damage calibration.

Conditions share their random numbers: every condition of a seed evaluates the same episode
starts and action noise, and a fault draws the same noise at every severity (only its magnitude
changes), so differences between conditions come from the faults alone.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import zlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mbrl_drift import faults as faults_lib
from mbrl_drift import metrics as metrics_lib
from mbrl_drift.agents.base import EvalArgs, eval_args
from mbrl_drift.evaluate import evaluate, outcome_summary
from mbrl_drift.runs import TrainedRun, load_run
from mbrl_drift.trajectories import Trajectories

AnyFault = Any  # faults.Fault | faults.ActivationFault | None (intact)


@dataclasses.dataclass(frozen=True)
class ConditionResults:
  """Outcomes of a grid of conditions.

  Axes of every array: ``[F, S, H, P, seeds, ...]`` for faults, severities, planning depths
  (horizons), action selections (policies) and seeds.

  Attributes:
    fault_labels: ``F`` fault specs (``"intact"`` for no fault).
    severities: ``[S]``, or ``[F, S]`` when every fault has its own row.
    severity_table: ``[F, S]`` the severity of every (fault, severity index).
    horizons: ``[H]`` planning depths on the agent's depth axis (``[0]`` for an agent without
      one; its rows then carry ``"horizon": None``).
    policies: ``P`` action-selection names.
    trajectories: :class:`Trajectories` without observations, ``[F, S, H, P, seeds, N, ...]``.
    nonfinite_params: ``[F, S, H, P, seeds]`` count of non-finite parameters after the fault.
    intended_goal: the run's intended goal (``-1`` without goals).
    num_goals: ``K``.
    has_depth: whether the agent has a depth axis.
    policy_tables: for a run with a fine-tuning base on a tabular environment, ``[F, S, H, P,
      seeds, 3, num_states, A]`` the action probabilities of the faulted agent, its base and the
      healthy fine-tuned agent on every tabular state (under the condition's selection rule);
      ``None`` otherwise.
  """

  fault_labels: tuple[str, ...]
  severities: np.ndarray
  severity_table: np.ndarray
  horizons: np.ndarray
  policies: tuple[str, ...]
  trajectories: Trajectories
  nonfinite_params: np.ndarray
  intended_goal: int
  num_goals: int
  has_depth: bool = True
  policy_tables: np.ndarray | None = None

  def outcomes(self) -> dict[str, np.ndarray]:
    """Flat ``"outcome/..."`` dict of ``[F, S, H, P, seeds]`` arrays (see ``outcome_summary``)."""
    summary = outcome_summary(self.trajectories, self.intended_goal, self.num_goals)
    return {name: np.asarray(value) for name, value in summary.items()}

  def rows(self, env: Any = None, env_params: Any = None, key: jax.Array | None = None,
           thresholds: metrics_lib.FailureThresholds | None = None) -> list[dict[str, Any]]:
    """One row per (fault, severity, horizon, policy).

    Outcomes are averaged over seeds (per-seed values under ``.../per_seed``), with non-finite
    counts. Given the environment of a goal world, each row also carries the behaviour metrics of
    :func:`mbrl_drift.metrics.seed_behaviour_metrics`: computed per seed (each seed its own
    rationality beta and place), aggregated over seeds with the per-seed values and their range,
    and a hierarchical bootstrap interval (seeds, then episodes) only from 10 seeds up; with a
    fine-tuning base, the policy comparisons of :func:`mbrl_drift.metrics.seed_policy_metrics`
    (JS distances, reversion coefficient). Then the failure label, judged against the severity-0
    (intact) row of the same fault, horizon and policy, its target, and each seed's own label.
    """
    outcomes = self.outcomes()
    with_behaviour = env is not None and (hasattr(env, "tabular") or hasattr(env, "num_goals"))
    context = (metrics_lib.tabular_context(env, env_params)
               if with_behaviour and hasattr(env, "tabular") else None)
    key = jax.random.key(0) if key is None else key
    rows = []
    healthy: dict[tuple[int, int, int], dict[str, Any]] = {}
    conditions = [(f, s, h, p) for f in range(len(self.fault_labels))
                  # severity 0 first: the healthy reference of the fault's other severities
                  for s in np.argsort(self.severity_table[f], kind="stable")
                  for h in range(len(self.horizons)) for p in range(len(self.policies))]
    for f, s, h, p in conditions:
      row: dict[str, Any] = {"fault": self.fault_labels[f],
                             "severity": float(self.severity_table[f, s]),
                             "horizon": int(self.horizons[h]) if self.has_depth else None,
                             "policy": self.policies[p]}
      for name, value in outcomes.items():
        per_seed = value[f, s, h, p]
        row[name] = float(np.mean(per_seed))
        row[name + "/per_seed"] = [float(v) for v in per_seed]
      row["nonfinite/params"] = int(np.max(self.nonfinite_params[f, s, h, p]))
      row["nonfinite/episodes"] = int(np.sum(np.asarray(self.trajectories.nonfinite[f, s, h, p])))
      if with_behaviour:
        per_seed = jax.tree.map(lambda x: x[f, s, h, p], self.trajectories)  # [seeds, N, ...]
        behaviour = dict(metrics_lib.seed_behaviour_metrics(key, per_seed, env, env_params,
                                                            context=context))
        if self.policy_tables is not None and context is not None:
          behaviour.update(_reversion_metrics(key, self.policy_tables[f, s, h, p], context))
        behaviour = _plain_values(behaviour)
        reference = healthy.setdefault((f, h, p), behaviour) if row["severity"] == 0.0 else (
            healthy.get((f, h, p)))
        label = metrics_lib.classify_failure(behaviour, thresholds, reference)
        seed_labels = [c.label for c in metrics_lib.classify_seeds(behaviour, thresholds,
                                                                   reference)]
        row["behaviour"] = behaviour
        row["label"] = label.label
        row["label_target"] = label.target
        row["label_reasons"] = list(label.reasons)
        row["label/per_seed"] = seed_labels
      rows.append(row)
    rows.sort(key=lambda r: (self.fault_labels.index(r["fault"]), r["severity"],
                             r["horizon"] or 0, self.policies.index(r["policy"])))
    return rows


def _reversion_metrics(key: jax.Array, tables: np.ndarray, context: Any) -> dict[str, Any]:
  """Policy comparisons of one condition, per seed and aggregated over seeds.

  Args:
    key: PRNG key (intervals over seeds, from 10 seeds up).
    tables: ``[seeds, 3, num_states, A]`` faulted, base and healthy fine-tuned policies.
    context: the environment's :class:`~mbrl_drift.metrics.TabularContext`.

  Returns:
    The keys of :func:`mbrl_drift.metrics.seed_policy_metrics`: ``reference/<name>`` JS
    distances (base, healthy, uniform, each goal's oracle), ``policy/entropy``,
    ``drift/kl_to_base``, ``reversion/coefficient`` and ``reversion/residual``.
  """
  tables = jnp.asarray(tables)
  weights = (~jnp.asarray(context.mdp.terminal)).astype(jnp.float32)
  return metrics_lib.seed_policy_metrics(key, tables[:, 0], tables[:, 1], tables[:, 2], weights,
                                         references=metrics_lib.reference_policies(context))


def _plain_values(metrics: dict[str, Any]) -> dict[str, Any]:
  """Arrays as plain Python values: scalars as numbers, per-seed arrays as lists."""
  out = {}
  for name, value in metrics.items():
    array = np.asarray(value)
    out[name] = array.item() if array.size == 1 and array.ndim == 0 else array.tolist()
  return out


def _reference_for_seed(fault: AnyFault, seed: jax.Array, seed_params: Any) -> AnyFault:
  """Selects seed ``seed`` of batched reference parameters (swap / interpolate faults).

  A reference leaf with one more axis than the run's parameter at the same path is batched over
  seeds (a whole trained run: seed ``i`` is paired with seed ``i``, a one-seed run with all);
  a leaf of the same shape is used as is.
  """
  if not isinstance(fault, faults_lib.Fault):
    return fault
  settings = dict(fault.settings)
  if "reference" in settings:
    shapes = {path: leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(seed_params)}

    def pick(path, leaf):
      leaf = jnp.asarray(leaf)
      expected = shapes.get(path)
      if expected is None or leaf.shape == expected:
        return leaf
      if leaf.shape[1:] != expected:
        raise ValueError(f"reference parameters of {fault.spec} at "
                         f"{jax.tree_util.keystr(path)} have shape {leaf.shape}; expected "
                         f"{expected}, or a leading seed axis before it")
      return leaf[jnp.minimum(seed, leaf.shape[0] - 1)]

    settings["reference"] = jax.tree_util.tree_map_with_path(pick, settings["reference"])
  if "faults" in settings:
    settings["faults"] = tuple(_reference_for_seed(f, seed, seed_params)
                               for f in settings["faults"])
  return fault.replace(settings=settings)


def parse_faults(run: TrainedRun, specs: Sequence[str]) -> list[AnyFault]:
  """Parses fault specs for a run: ``swap`` / ``interpolate`` load other runs' parameters,
  ``reinit`` uses the run's own initialiser; targets are checked against the run's components.

  Raises:
    ValueError: a malformed spec, an unknown fault or parameter, or a target that matches no
      component (each message lists the valid choices).
  """
  one_seed = jax.tree.map(lambda x: x[0], run.params)
  parsed = []
  for spec in specs:
    fault = faults_lib.parse_fault_spec(
        spec, load_reference=lambda path: load_run(path).params, init_params=run.trainer.agent.init)
    if isinstance(fault, faults_lib.ActivationFault):
      fault.validate(one_seed)
    else:
      fault.target_paths(one_seed)
      # Abstract evaluation surfaces what only a call can check (a delta fault's base, a
      # reference's structure) before anything compiles.
      jax.eval_shape(lambda p, f=fault: _reference_for_seed(f, jnp.int32(0), p)(
          jax.random.key(0), p, jnp.float32(1.0)), one_seed)
    parsed.append(fault)
  return parsed


def stable_fault_id(spec: str) -> int:
  """A 31-bit integer derived from a fault spec, stable across processes and Python versions
  (the ``fault_ids`` of :func:`evaluate_conditions`)."""
  return zlib.crc32(spec.encode()) & 0x7FFFFFFF


def _intended_goal(env_params: Any) -> int:
  return int(getattr(env_params, "intended_goal", -1))


def evaluate_conditions(run: TrainedRun, faults: Sequence[AnyFault],
                        severities: Sequence[float], horizons: Sequence[int] | None = None,
                        policies: Sequence[str] = ("greedy",), num_episodes: int = 100,
                        key: jax.Array | None = None, epsilon: float = 0.1,
                        temperature: float | None = None, fault_labels: Sequence[str] | None = None,
                        batch_size: int = 1, fault_ids: Sequence[int] | None = None
                        ) -> ConditionResults:
  """Evaluates every (fault, severity, horizon, policy, seed) condition of a trained run.

  All conditions run in one compiled call (``jax.lax.map`` over batches of ``batch_size``
  vmapped conditions, which bounds memory).

  Args:
    run: the trained run.
    faults: weight or activation faults; ``None`` stands for the intact agent.
    severities: ``[S]`` severities shared by every fault (0 is the identity for every fault),
      or ``[F, S]``, one row per fault (e.g. each fault's matched-damage severity).
    horizons: planning depths on the agent's depth axis (default: its training depth; ignored
      by agents without one).
    policies: action selections among the agent's ``eval_axes.selections`` (the planner:
      ``"greedy"``, ``"epsilon"``, ``"boltzmann"``; a policy agent: ``"greedy"``, ``"sample"``).
    num_episodes: episodes per condition and seed.
    key: PRNG key (default ``key(0)``).
    epsilon: exploration rate of ``"epsilon"``.
    temperature: temperature of stochastic selection (agent default when ``None``).
    fault_labels: display names (default: each fault's spec).
    batch_size: conditions vmapped together inside the compiled loop (1 is fastest on CPU;
      raise it on accelerators).
    fault_ids: ``F`` integers that seed each fault's random draws (default: the fault's
      position). Give stable ids (e.g. :func:`stable_fault_id` of the spec) so that a fault
      evaluated alone or among others draws the same noise.

  Returns:
    :class:`ConditionResults`.
  """
  agent, env, env_params = run.trainer.agent, run.trainer.env, run.trainer.env_params
  axes = agent.eval_axes
  if axes.depth_name is None:
    horizons = [0]
  else:
    horizons = [axes.depth_default] if horizons is None else [int(h) for h in horizons]
    for horizon in horizons:
      axes.check_depth(horizon)
  selections = [axes.selection_index(p) for p in policies]
  faults = list(faults)
  if fault_labels is None:
    fault_labels = ["intact" if f is None else f.spec for f in faults]
  key = jax.random.key(0) if key is None else key
  num_seeds = run.num_seeds
  max_steps = int(env_params.max_steps)
  agent = agent.for_depth(max(horizons))
  severity_table = np.asarray(severities, np.float32)
  if severity_table.ndim == 1:
    severity_table = np.broadcast_to(severity_table, (len(faults), severity_table.shape[0]))
  if severity_table.ndim != 2 or severity_table.shape[0] != len(faults):
    raise ValueError(f"severities must have shape [S] or [F, S] with F={len(faults)} faults; got "
                     f"{np.shape(severities)}")
  fault_ids = list(range(len(faults))) if fault_ids is None else [int(i) for i in fault_ids]
  if len(fault_ids) != len(faults):
    raise ValueError(f"got {len(fault_ids)} fault_ids for {len(faults)} faults")
  grid = np.array(list(itertools.product(range(len(faults)), range(severity_table.shape[1]),
                                         range(len(horizons)), range(len(policies)),
                                         range(num_seeds))), np.int32)
  if temperature is None:
    temperature = 0.0  # the agent's own default
  probe_obs = _reversion_probe_states(agent, env, env_params, run.params)
  trajectories, nonfinite, tables = _evaluate_grid(
      faults, run.params, env_params, jnp.asarray(grid), jnp.asarray(severity_table),
      jnp.asarray(fault_ids, jnp.int32),
      jnp.asarray(horizons, jnp.int32), jnp.asarray(selections, jnp.int32), key,
      jnp.float32(epsilon), jnp.float32(temperature), probe_obs, agent=agent, env=env,
      num_episodes=num_episodes, max_steps=max_steps, batch_size=batch_size)
  shape = (len(faults), severity_table.shape[1], len(horizons), len(policies), num_seeds)
  trajectories = jax.tree.map(lambda x: np.asarray(x).reshape(shape + x.shape[1:]), trajectories)
  return ConditionResults(
      fault_labels=tuple(fault_labels), severities=np.asarray(severities, np.float32),
      severity_table=np.array(severity_table),
      horizons=np.asarray(horizons, np.int32), policies=tuple(policies),
      trajectories=trajectories, nonfinite_params=np.asarray(nonfinite).reshape(shape),
      intended_goal=_intended_goal(env_params), num_goals=int(getattr(env, "num_goals", 0)),
      has_depth=axes.depth_name is not None,
      policy_tables=None if tables is None else np.asarray(tables).reshape(
          shape + tables.shape[1:]))


@functools.partial(jax.jit, static_argnames=("agent", "env", "num_episodes", "max_steps",
                                             "batch_size"))
def _evaluate_grid(faults: list[AnyFault], params: Any, env_params: Any, grid: jax.Array,
                   severities: jax.Array, fault_ids: jax.Array, horizons: jax.Array,
                   modes: jax.Array, key: jax.Array,
                   epsilon: jax.Array, temperature: jax.Array, probe_obs: jax.Array | None, *,
                   agent: Any, env: Any, num_episodes: int, max_steps: int, batch_size: int
                   ) -> tuple[Trajectories, jax.Array, jax.Array | None]:
  """Compiled body of :func:`evaluate_conditions`; ``grid`` rows are (fault, severity, horizon,
  policy, seed) indices. Faults are pytree arguments, so new severities, scales or reference
  checkpoints reuse the compilation. With ``probe_obs`` ``[num_states, obs_dim]``, each
  condition also returns the ``[3, num_states, A]`` action probabilities of the faulted agent,
  its base and the healthy agent."""
  activation_faults = [f if isinstance(f, faults_lib.ActivationFault) else None for f in faults]
  weight_faults = [f if isinstance(f, faults_lib.Fault) else None for f in faults]
  has_activation = any(f is not None for f in activation_faults)

  def condition(index: jax.Array) -> tuple[Trajectories, jax.Array]:
    fault_index, severity_index, horizon_index, policy_index, seed = (index[i] for i in range(5))
    severity = severities[fault_index, severity_index]
    key_seed = jax.random.fold_in(key, seed)
    key_fault = jax.random.fold_in(jax.random.fold_in(key_seed, 1), fault_ids[fault_index])
    key_eval = jax.random.fold_in(key_seed, 2)
    seed_params = jax.tree.map(lambda x: x[seed], params)

    def weight_branch(fault):
      if fault is None:
        return lambda p: p
      return lambda p: _reference_for_seed(fault, seed, p)(key_fault, p, severity)

    seed_params = jax.lax.switch(fault_index, [weight_branch(f) for f in weight_faults],
                                 seed_params)
    faulted_agent = agent
    if has_activation:
      def hook(path: str, output: jax.Array) -> jax.Array:
        branches = [(lambda o: o) if f is None else
                    (lambda o, f=f: f.apply_to(path, key_fault, o, severity))
                    for f in activation_faults]
        return jax.lax.switch(fault_index, branches, output)
      faulted_agent = agent.with_output_hook(hook)
    args = EvalArgs(depth=horizons[horizon_index], selection=modes[policy_index],
                    epsilon=epsilon, temperature=temperature)
    trajectories = evaluate(faulted_agent, seed_params, env, env_params, key_eval, num_episodes,
                            args, max_steps=max_steps, record_obs=False)
    tables = None
    if probe_obs is not None:
      healthy_params = jax.tree.map(lambda x: x[seed], params)
      keys = jax.random.split(jax.random.fold_in(key_seed, 3), probe_obs.shape[0])

      def table(acting_agent, agent_params):
        return jax.vmap(lambda k, o: acting_agent.act(agent_params, k, o, args).action_probs)(
            keys, probe_obs)

      tables = jnp.stack([table(faulted_agent, seed_params),
                          table(agent, faults_lib.with_base_components(healthy_params)),
                          table(agent, healthy_params)])
    return trajectories, faults_lib.count_nonfinite(seed_params), tables

  return jax.lax.map(condition, grid, batch_size=batch_size)


def _reversion_probe_states(agent: Any, env: Any, env_params: Any, params: Any
                            ) -> jax.Array | None:
  """Every tabular state's observation when the run has a fine-tuning base, a tabular
  environment and an agent that reports discrete action probabilities; else ``None``."""
  if not (agent.spec.discrete and hasattr(env, "tabular") and hasattr(env, "all_observations")
          and faults_lib.components_with_base(params)):
    return None
  probe = jnp.asarray(env.all_observations(env_params), jnp.float32)
  probe = probe.reshape(probe.shape[0], -1)
  one_seed = jax.tree.map(lambda x: x[0], params)
  out = jax.eval_shape(lambda o: agent.act(one_seed, jax.random.key(0), o,
                                           eval_args(agent.eval_axes.depth_default)), probe[0])
  return None if out.action_probs is None else probe


def calibrate_fault(run: TrainedRun, fault: AnyFault, target_drop: float, horizon: int | None = None,
                    policy: str = "greedy", num_episodes: int = 100, key: jax.Array | None = None,
                    metric: str = "outcome/intended_success", grid_size: int = 8,
                    num_rounds: int = 3, hi: float = 1.0, fault_id: int = 0
                    ) -> faults_lib.CalibrationResult:
  """Finds the severity at which ``fault`` lowers ``metric`` (mean over seeds) by ``target_drop``.

  Each round evaluates a grid of ``grid_size`` severities in one call of
  :func:`evaluate_conditions` (same episodes for every severity), then refines the bracket
  (see :func:`mbrl_drift.faults.calibrate_severity`). ``fault_id`` seeds the fault's random
  draws as in :func:`evaluate_conditions`, so a later evaluation with the same id and key sees
  the noise the severity was calibrated on.

  Returns:
    The :class:`~mbrl_drift.faults.CalibrationResult` (``reached`` is False when even the
    largest severity tried does not cause the drop).
  """
  def evaluate_fn(severities: jax.Array) -> jax.Array:
    results = evaluate_conditions(run, [fault], np.asarray(severities), [horizon] if horizon
                                  else None, [policy], num_episodes, key, fault_ids=[fault_id])
    return jnp.asarray(results.outcomes()[metric][0, :, 0, 0].mean(axis=-1))

  return faults_lib.calibrate_severity(evaluate_fn, target_drop, lo=0.0, hi=hi,
                                       num_rounds=num_rounds, grid_size=grid_size)


def _nanmean(values: Sequence[float]) -> float:
  finite = [v for v in values if not np.isnan(v)]
  return float(np.mean(finite)) if finite else float("nan")


def condition_health(run: TrainedRun, faults: Sequence[AnyFault], severities: Sequence[float],
                     horizons: Sequence[int] | None = None, num_episodes: int = 50,
                     key: jax.Array | None = None, fault_labels: Sequence[str] | None = None,
                     fault_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
  """Component health of the faulted agent for every (fault, severity, horizon).

  The held-out real transitions are greedy episodes of the intact agent (one batch per seed,
  recorded with observations); each faulted parameter set is the one
  :func:`evaluate_conditions` evaluates with the same ``key``. Activation faults change no
  parameters, so their world-model and value errors are those of the intact agent and are not
  reported (``"health": None``). ``fault_ids`` seed each fault's draws as in
  :func:`evaluate_conditions` (default: the fault's position).

  Returns:
    One dict per condition: ``fault``, ``severity``, ``horizon`` and ``health``, the
    :func:`mbrl_drift.metrics.component_health` scalars averaged over seeds.
  """
  agent, env, env_params = run.trainer.agent, run.trainer.env, run.trainer.env_params
  axes = agent.eval_axes
  if axes.depth_name is None:
    horizons = [None]
  else:
    horizons = [axes.depth_default] if horizons is None else [int(h) for h in horizons]
  agent = agent.for_depth(max(h or 0 for h in horizons))
  key = jax.random.key(0) if key is None else key
  faults = list(faults)
  if fault_labels is None:
    fault_labels = ["intact" if f is None else f.spec for f in faults]
  max_steps = int(env_params.max_steps)
  held_out = jax.jit(jax.vmap(lambda p, k: evaluate(
      agent, p, env, env_params, k, num_episodes, max_steps=max_steps)))(
          run.params, jax.random.split(jax.random.fold_in(key, 7), run.num_seeds))
  rows = []
  for f, fault in enumerate(faults):
    for severity in severities:
      for horizon in horizons:
        row: dict[str, Any] = {"fault": fault_labels[f], "severity": float(severity),
                               "horizon": horizon, "health": None}
        if not isinstance(fault, faults_lib.ActivationFault):
          per_seed = []
          for seed in range(run.num_seeds):
            params = jax.tree.map(lambda x: x[seed], run.params)
            if fault is not None:
              fault_id = f if fault_ids is None else int(fault_ids[f])
              key_fault = jax.random.fold_in(
                  jax.random.fold_in(jax.random.fold_in(key, seed), 1), fault_id)
              params = _reference_for_seed(fault, jnp.int32(seed), params)(
                  key_fault, params, jnp.float32(severity))
            episodes = jax.tree.map(lambda x: x[seed], held_out)
            health = metrics_lib.component_health(
                jax.random.fold_in(key, seed), agent, params, env, env_params, episodes,
                planner_horizon=horizon)
            per_seed.append({name: float(np.asarray(value)) for name, value in health.items()
                             if np.asarray(value).size == 1})
          row["health"] = {name: _nanmean([h[name] for h in per_seed]) for name in per_seed[0]}
        rows.append(row)
  return rows


# ---------------------------------------------------------------------------------------------
# The one pipeline: fault requests -> typed condition records (CLI, sweeps, pytest plugin)
# ---------------------------------------------------------------------------------------------

INTACT = "intact"
#: Below this many seeds an aggregate over seeds carries its per-seed values and range only, no
#: bootstrap interval (a bootstrap over 2 or 4 seeds is just their range).
MIN_SEEDS_FOR_INTERVAL = 10


@dataclasses.dataclass(frozen=True)
class FaultRequest:
  """What to evaluate of one fault.

  Attributes:
    spec: a fault spec (``"value:gaussian(scale=0.5)"``), or ``"intact"`` for the unbroken agent.
    severities: severities to evaluate (0, the intact agent, is always evaluated too).
    matched_drops: drops in intended-goal success to calibrate a severity for (matched damage).
  """

  spec: str
  severities: tuple[float, ...] = ()
  matched_drops: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class ConditionRecord:
  """One evaluated condition, the same for every front end.

  Attributes:
    fault: the fault spec (``"intact"`` for the unbroken agent).
    severity: the severity evaluated (the calibrated one for matched damage).
    horizon: the planning depth (``None`` for an agent without a depth axis).
    policy: the action selection.
    target_drop: the matched-damage target the severity was calibrated for, else ``None``.
    calibration: that calibration (:class:`~mbrl_drift.faults.CalibrationResult`), else ``None``.
    metrics: flat ``"group/name"`` dict: outcomes (means over seeds, with ``/per_seed`` lists),
      non-finite counts, the behaviour metrics and the aggregates over seeds
      (``seeds/<name>_iqm``, ``_min``, ``_max``; ``_ci_low`` / ``_ci_high`` from
      :data:`MIN_SEEDS_FOR_INTERVAL` seeds up).
    label: the failure label (``None`` without behaviour metrics).
    label_reasons: why.
    row: the :meth:`ConditionResults.rows` row it came from (for tables and JSON).
    position: ``(f, s, h, p)`` indices of its trajectories in the results.
  """

  fault: str
  severity: float
  horizon: int | None
  policy: str
  target_drop: float | None
  calibration: Any
  metrics: dict[str, Any]
  label: str | None
  label_reasons: tuple[str, ...]
  row: dict[str, Any]
  position: tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class FaultEvaluation:
  """Output of :func:`evaluate_faults`.

  Attributes:
    records: one :class:`ConditionRecord` per (fault, severity or matched drop, horizon,
      policy), each fault's severity 0 (its intact reference) included.
    results: the underlying :class:`ConditionResults` (trajectories of every condition).
    calibrations: ``(spec, target_drop) -> CalibrationResult`` of every matched drop.
    faults: spec -> the parsed fault (``None`` for ``"intact"``).
  """

  records: list[ConditionRecord]
  results: ConditionResults
  calibrations: dict[tuple[str, float], Any]
  faults: dict[str, Any]


def seed_aggregates(name: str, per_seed: Sequence[float], key: jax.Array) -> dict[str, float]:
  """Aggregates of one metric over seeds: IQM, range, and an interval from enough seeds.

  Args:
    name: the metric's short name (``"intended_success"``).
    per_seed: its value for each seed.
    key: PRNG key of the bootstrap.

  Returns:
    ``seeds/<name>_iqm``, ``_min`` and ``_max``; ``_ci_low`` / ``_ci_high`` (percentile
    bootstrap of the IQM over seeds, Agarwal et al. 2021) only with at least
    :data:`MIN_SEEDS_FOR_INTERVAL` seeds.
  """
  values = np.asarray(per_seed, np.float32)
  out = {f"seeds/{name}_iqm": float(metrics_lib.interquartile_mean(values)),
         f"seeds/{name}_min": float(np.min(values)), f"seeds/{name}_max": float(np.max(values))}
  if values.shape[0] >= MIN_SEEDS_FOR_INTERVAL:
    interval = metrics_lib.iqm_ci(key, values)
    out[f"seeds/{name}_iqm_ci_low"] = float(interval.low)
    out[f"seeds/{name}_iqm_ci_high"] = float(interval.high)
  return out


def record_metrics(row: dict[str, Any], key: jax.Array) -> dict[str, Any]:
  """The flat metrics of a :meth:`ConditionResults.rows` row, merged in the one order every
  front end uses: outcomes and non-finite counts, then behaviour, then the aggregates over
  seeds of :func:`seed_aggregates` (``key`` seeds their bootstrap)."""
  metrics = {name: value for name, value in row.items()
             if name.startswith(("outcome/", "nonfinite/"))}
  metrics.update(row.get("behaviour") or {})
  for name in ("outcome/intended_success", "outcome/mean_return"):
    metrics.update(seed_aggregates(name.split("/", 1)[1], row[name + "/per_seed"], key))
  return metrics


def evaluate_faults(run: TrainedRun, requests: Sequence[FaultRequest],
                    horizons: Sequence[int] | None = None, policies: Sequence[str] | None = None,
                    episodes: int = 100, key: jax.Array | None = None, *,
                    calibration_episodes: int | None = None,
                    known_calibrations: dict[tuple[str, float], Any] | None = None,
                    thresholds: metrics_lib.FailureThresholds | None = None,
                    resolve_spec: Any = None, progress: Any = None) -> FaultEvaluation:
  """Evaluates a trained run under faults: parse, calibrate, evaluate, label, one record each.

  Every front end (``mbrl-drift evaluate``, the sweep runner, the pytest plugin) calls this,
  so they agree: a fault draws its noise from its stable id (:func:`stable_fault_id` of its
  spec) in calibration and in evaluation alike, every condition of a seed shares its episode
  starts and random numbers, and metrics merge in one order (:func:`record_metrics`).

  Args:
    run: the trained run.
    requests: the faults with their severities and matched drops (``"intact"`` allowed).
    horizons: planning depths (default: the agent's training depth; ignored without a depth
      axis). Matched damage is calibrated at the first.
    policies: action selections (default: the agent's first, greedy). Matched damage is
      calibrated with the first.
    episodes: episodes per condition and seed.
    key: PRNG key (default ``key(0)``).
    calibration_episodes: episodes per seed of each calibration step (default ``episodes``).
    known_calibrations: ``(spec, drop) -> calibration`` already known (e.g. stored by a sweep;
      anything with a ``severity``): not calibrated again.
    thresholds: failure-label thresholds (defaults when ``None``).
    resolve_spec: ``spec -> spec`` applied before parsing (e.g. a sweep's ``run=@name``).
    progress: a :class:`~mbrl_drift.progress.ProgressReporter` told of each calibration and of
      the evaluation (one unit each; :func:`num_progress_steps` counts them), or ``None``.

  Returns:
    A :class:`FaultEvaluation`.

  Raises:
    ValueError: a malformed fault spec, a target the agent does not have, a horizon or policy
      the agent does not support (each message lists the valid choices).
  """
  key = jax.random.key(0) if key is None else key
  axes = run.trainer.agent.eval_axes
  policies = list(policies) if policies else [axes.selections[0]]
  depths = None if axes.depth_name is None else (
      list(horizons) if horizons else [axes.depth_default])
  specs = list(dict.fromkeys(r.spec for r in requests))
  specs.sort(key=lambda s: s != INTACT)
  resolve = resolve_spec or (lambda spec: spec)
  parsed = {s: None if s == INTACT else parse_faults(run, [resolve(s)])[0] for s in specs}

  calibrations = dict(known_calibrations or {})
  for request in requests:
    for drop in request.matched_drops:
      if (request.spec, drop) in calibrations:
        continue
      if progress is not None:
        progress.status("faults", f"calibrating {request.spec} to a success drop of {drop:g}")
      result = calibrate_fault(
          run, parsed[request.spec], drop, horizon=None if depths is None else depths[0],
          policy=policies[0], num_episodes=calibration_episodes or episodes, key=key,
          fault_id=stable_fault_id(request.spec))
      calibrations[(request.spec, drop)] = result
      if progress is not None:
        progress.done("faults", f"calibrated {request.spec}: severity {result.severity:.4g} "
                                f"gives a drop of {result.drop:.3f} (target {drop:g}, reached: "
                                f"{bool(result.reached)})", advance=1)

  as_float32 = lambda value: float(np.float32(value))
  wanted: dict[str, list[tuple[float, float | None]]] = {s: [(0.0, None)] for s in specs}
  for request in requests:
    wanted[request.spec] += [(as_float32(s), None) for s in request.severities]
    wanted[request.spec] += [(as_float32(calibrations[(request.spec, d)].severity), d)
                             for d in request.matched_drops]
  severity_rows = {s: sorted({severity for severity, _ in wanted[s]}) for s in specs}
  width = max(len(r) for r in severity_rows.values())
  table = [r + [r[-1]] * (width - len(r)) for r in severity_rows.values()]
  if progress is not None:
    count = len(specs) * width * len(depths or [0]) * len(policies) * run.num_seeds
    progress.status("faults", f"evaluating {count} conditions x {episodes} episodes")
  results = evaluate_conditions(run, [parsed[s] for s in specs], table, depths, policies,
                                episodes, key, fault_labels=specs,
                                fault_ids=[stable_fault_id(s) for s in specs])
  rows = results.rows(run.trainer.env, run.trainer.env_params, key=jax.random.fold_in(key, 11),
                      thresholds=thresholds)
  by_condition = {(r["fault"], r["severity"], r["horizon"], r["policy"]): r for r in rows}
  horizon_values = [None] if depths is None else depths
  records = []
  for f, spec in enumerate(specs):
    for severity, drop in dict.fromkeys(wanted[spec]):
      s = severity_rows[spec].index(severity)
      for h, horizon in enumerate(horizon_values):
        for p, policy in enumerate(policies):
          row = by_condition[(spec, severity, horizon, policy)]
          records.append(ConditionRecord(
              fault=spec, severity=severity, horizon=horizon, policy=policy, target_drop=drop,
              calibration=None if drop is None else calibrations[(spec, drop)],
              metrics=record_metrics(row, jax.random.fold_in(key, 13)),
              label=row.get("label"), label_reasons=tuple(row.get("label_reasons", ())),
              row=row, position=(f, s, h, p)))
  if progress is not None:
    progress.done("faults", f"evaluated {len(records)} conditions", advance=1)
  return FaultEvaluation(records=records, results=results, calibrations=calibrations,
                         faults=parsed)


def num_progress_steps(requests: Sequence[FaultRequest],
                       known_calibrations: dict[tuple[str, float], Any] | None = None) -> int:
  """The units :func:`evaluate_faults` reports: one per calibration to run, one evaluation."""
  known = known_calibrations or {}
  points = {(r.spec, d) for r in requests for d in r.matched_drops}
  return len(points - set(known)) + 1
