"""Command-line interface: ``mbrl-drift {train,pretrain,agents,envs,faults,evaluate,sweep,report}``.

``--agent NAME`` picks a registered agent (``mbrl-drift agents`` lists them). Every field of
:class:`~mbrl_drift.config.TrainConfig` is a flag of ``train`` (``--batch-size 64``;
``training_faults`` is the repeatable ``--train-fault SPEC``), and every field of the chosen
agent's config is an ``--agent-`` flag (``--agent-horizon 3``). Input errors print one line and
exit with status 2; set ``MBRL_DRIFT_DEBUG=1`` for the full traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from mbrl_drift import agents
from mbrl_drift.config import TrainConfig


def _parse_bool(text: str) -> bool:
  lowered = text.lower()
  if lowered in ("1", "true", "yes", "on"):
    return True
  if lowered in ("0", "false", "no", "off"):
    return False
  raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _add_config_flags(parser: argparse.ArgumentParser, cls: type, prefix: str,
                      skip: set[str]) -> None:
  for field in dataclasses.fields(cls):  # defaults read off the fields: validation imports JAX
    if field.name in skip or field.default is dataclasses.MISSING:
      continue
    skip.add(field.name)  # one flag per name, also across several agents' configs
    default = field.default
    kind = {bool: _parse_bool, int: int, float: float, str: str}.get(type(default))
    if kind is None:
      continue
    parser.add_argument(f"--{prefix}{field.name.replace('_', '-')}", type=kind, default=None,
                        dest=f"{prefix.replace('-', '_')}{field.name}",
                        help=f"(default: the env's preset, else {default!r})")


def _env_arg(text: str) -> tuple[str, Any]:
  name, sep, raw = text.partition("=")
  if not sep or not name.strip():
    raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
  for kind in (int, float):
    try:
      return name.strip(), kind(raw)
    except ValueError:
      pass
  lowered = raw.strip().lower()
  if lowered in ("true", "false"):
    return name.strip(), lowered == "true"
  return name.strip(), raw


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
  """The environment's preset (or the plain defaults) with the given flags applied."""
  from mbrl_drift.presets import starting_config

  values = vars(args)
  agent_kind = args.agent or "planner"
  definition = agents.get(agent_kind)
  own_fields = {f.name for f in dataclasses.fields(definition.config_type)}
  given = {name[len("agent_"):]: value for name, value in values.items()
           if name.startswith("agent_") and value is not None}
  foreign = sorted(set(given) - own_fields)
  if foreign:
    raise ValueError(f"--agent-{foreign[0].replace('_', '-')} is not a setting of the "
                     f"{agent_kind!r} agent; its settings: "
                     f"{', '.join('--agent-' + n.replace('_', '-') for n in sorted(own_fields))}")
  train = {f.name: values[f.name] for f in dataclasses.fields(TrainConfig)
           if f.name not in ("agent", "env_kwargs", "agent_kind")
           and values.get(f.name) is not None}
  base = starting_config(train.get("env", TrainConfig.env), use_preset=not args.no_preset,
                         agent_kind=agent_kind)
  if args.freeze:
    train["freeze"] = tuple(p.strip() for p in args.freeze.split(",") if p.strip())
  return dataclasses.replace(base, agent=dataclasses.replace(base.agent, **given),
                             env_kwargs=tuple(args.env_arg or base.env_kwargs), **train)


def _format_summary(summary: dict[str, Any]) -> str:
  lines = [f"run: {summary['run_dir']}",
           f"env: {summary['env']}  seeds: {summary['num_seeds']}  "
           f"env steps per seed: {summary['env_steps_per_seed']}  "
           f"wall time: {summary['wall_time_s']:.1f}s",
           "final greedy evaluation (per seed):"]
  for name, values in summary["final_eval"].items():
    formatted = " ".join(f"{v:8.3f}" for v in values)
    lines.append(f"  {name:<28} {formatted}")
  return "\n".join(lines)


def _resumed_config(args: argparse.Namespace, stored: TrainConfig,
                    record: dict[str, Any]) -> TrainConfig:
  """The stored config of the run being resumed; a flag that contradicts it is an error."""
  if args.agent is not None and args.agent != stored.agent_kind:
    raise ValueError(f"--resume continues the stored {stored.agent_kind!r} run in {args.out}; "
                     f"--agent {args.agent} contradicts it (drop the flag)")
  values = vars(args)
  given = {name: value for name, value in values.items() if value is not None}
  agent_given = {name[len("agent_"):]: v for name, v in given.items() if name.startswith("agent_")}
  train_given = {f.name: tuple(given[f.name]) if isinstance(given[f.name], list) else given[f.name]
                 for f in dataclasses.fields(TrainConfig)
                 if f.name in given and f.name not in ("agent", "agent_kind", "env_kwargs")}
  if args.freeze:
    train_given["freeze"] = tuple(p.strip() for p in args.freeze.split(",") if p.strip())
  if args.env_arg:
    train_given["env_kwargs"] = tuple(args.env_arg)
  differences = [f"--{name.replace('_', '-')} {value!r} (stored: {getattr(stored, name)!r})"
                 for name, value in train_given.items() if getattr(stored, name) != value]
  differences += [f"--agent-{name.replace('_', '-')} {value!r} (stored: "
                  f"{getattr(stored.agent, name, None)!r})"
                  for name, value in agent_given.items()
                  if getattr(stored.agent, name, object()) != value]
  for flag, stored_value in (("seeds", record["num_seeds"]), ("seed", record.get("seed", 0))):
    if values.get(flag) is not None and values[flag] != stored_value:
      differences.append(f"--{flag} {values[flag]} (stored: {stored_value})")
  if differences:
    raise ValueError(f"--resume continues the run stored in {args.out}; these flags contradict "
                     f"it: {'; '.join(differences)} (drop them to resume, or train into another "
                     f"--out)")
  return stored


def _cmd_train(args: argparse.Namespace) -> int:
  from mbrl_drift.runs import enable_compilation_cache, read_run_record, train_run

  enable_compilation_cache()
  if args.resume and (Path(args.out) / "config.json").exists():
    # Continue the stored run: its config, seeds and base seed.
    stored, record = read_run_record(args.out)
    config = _resumed_config(args, stored, record)
    seeds, seed = record["num_seeds"], int(record.get("seed", 0))
  else:
    config = _config_from_args(args)
    seeds = 4 if args.seeds is None else args.seeds
    seed = 0 if args.seed is None else args.seed
  summary = train_run(config, num_seeds=seeds, out_dir=args.out, seed=seed,
                      resume=args.resume, progress=not args.quiet, log=print)
  print(_format_summary(summary))
  return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
  """Behaviour cloning of a demonstrator into a policy agent's run directory (a base)."""
  from mbrl_drift.presets import starting_config
  from mbrl_drift.runs import enable_compilation_cache, train_run

  enable_compilation_cache()
  base = starting_config(args.env, use_preset=True, agent_kind="policy")
  agent_changes = {name[len("agent_"):]: value for name, value in vars(args).items()
                   if name.startswith("agent_") and value is not None}
  agent_changes.update(algorithm="bc", demonstrator=args.demonstrator)
  config = dataclasses.replace(base, agent=dataclasses.replace(base.agent, **agent_changes),
                               env_kwargs=tuple(args.env_arg or base.env_kwargs))
  summary = train_run(config, num_seeds=args.seeds, out_dir=args.out, seed=args.seed,
                      resume=args.resume, progress=not args.quiet, log=print)
  print(_format_summary(summary))
  return 0


def _cmd_agents(args: argparse.Namespace) -> int:
  for name in agents.names():
    definition = agents.get(name)
    print(f"{name:<10} {definition.description}")
  return 0


def _cmd_envs(args: argparse.Namespace) -> int:
  import envs

  for name in envs.names():
    env, params = envs.make(name)
    action_space = env.action_space(params)
    kind = (f"{action_space.n} discrete actions" if isinstance(action_space, envs.Discrete)
            else f"continuous actions {tuple(action_space.shape)}")
    obs_shape = tuple(env.observation_space(params).shape)
    print(f"{name:<24} {envs.gym_id(name):<36} obs {str(obs_shape):<8} {kind}")
  return 0


def _parse_list(text: str, kind: type, flag: str) -> list:
  try:
    return [kind(item) for item in text.split(",") if item.strip()]
  except ValueError:
    raise ValueError(f"{flag}: expected comma-separated {kind.__name__} values, got {text!r}")


def _seed_iqm(row: dict[str, Any]) -> str:
  """Interquartile mean of intended success over seeds with its range, or with a bootstrap
  interval from :data:`~mbrl_drift.fault_evaluation.MIN_SEEDS_FOR_INTERVAL` seeds up."""
  import jax

  from mbrl_drift.fault_evaluation import seed_aggregates

  stats = seed_aggregates("s", row["outcome/intended_success/per_seed"], jax.random.key(0))
  if "seeds/s_iqm_ci_low" in stats:
    return (f"{stats['seeds/s_iqm']:.3f} [{stats['seeds/s_iqm_ci_low']:.3f}, "
            f"{stats['seeds/s_iqm_ci_high']:.3f}]")
  return f"{stats['seeds/s_iqm']:.3f} ({stats['seeds/s_min']:.2f}..{stats['seeds/s_max']:.2f})"


def _format_conditions(rows: list[dict[str, Any]], goal_names: Sequence[str],
                       intended_goal: int) -> str:
  """The headline table: outcomes (means over seeds), coherence and failure label per condition."""
  other_goals = [k for k in range(len(goal_names)) if k != intended_goal]
  with_behaviour = bool(rows) and "behaviour" in rows[0]
  header = (f"{'fault':<44} {'sev':>6} {'H':>2} {'policy':<9} {'success':>7} "
            f"{'IQM over seeds (range)':>23} "
            + "".join(f"{'->' + goal_names[k]:>6} " for k in other_goals)
            + f"{'timeout':>7} {'return':>7} {'nonfinite':>9}")
  if with_behaviour:
    header += f" {'C':>5} {'goal*':>5} {'label':<10}"
  lines = [header, "-" * len(header)]
  for row in rows:
    fault = row["fault"] if len(row["fault"]) <= 44 else row["fault"][:41] + "..."
    nonfinite = (f"{row['nonfinite/episodes']}ep/{row['nonfinite/params']}p"
                 if row["nonfinite/episodes"] or row["nonfinite/params"] else "0")
    horizon = "-" if row["horizon"] is None else row["horizon"]
    line = (f"{fault:<44} {row['severity']:>6.3g} {horizon:>2} {row['policy']:<9} "
            f"{row['outcome/intended_success']:>7.3f} {_seed_iqm(row):>23} "
            + "".join(f"{row[f'outcome/reach_goal_{k}']:>6.3f} " for k in other_goals)
            + f"{row['outcome/timeout']:>7.3f} {row['outcome/mean_return']:>7.3f} {nonfinite:>9}")
    if with_behaviour:
      behaviour = row["behaviour"]
      inferred = int(behaviour["goal/inferred_goal"])
      line += (f" {behaviour['goal/coherence']:>5.2f} "
               f"{goal_names[inferred] if 0 <= inferred < len(goal_names) else '-':>5} "
               f"{row['label']:<10}")
    lines.append(line)
  legend = ("success: share of episodes ending at the intended goal (mean over seeds; IQM: "
            "interquartile mean over seeds, Agarwal et al. 2021, with the range of the seeds, or "
            "a 95% percentile-bootstrap interval from 10 seeds up); ->X: share ending at goal "
            "X; C: goal-directedness (MEG coherence, 0 aimless .. 1 optimal for some goal); "
            "goal*: goal inferred from behaviour; label: failure label from the metrics")
  return "\n".join(lines + ["", legend])


def _format_health(rows: list[dict[str, Any]], goal_names: Sequence[str]) -> str:
  """Component health per condition (means over seeds)."""
  header = (f"{'fault':<44} {'sev':>6} {'H':>2} {'wm_err_1':>9} {'rew_err_1':>9} "
            f"{'V_mae':>6} {'V~V*':>5} {'V_goal':>6} {'plan_opt':>8}")
  lines = ["component health (held-out intact episodes; means over seeds)", header,
           "-" * len(header)]
  for row in rows:
    fault = row["fault"] if len(row["fault"]) <= 44 else row["fault"][:41] + "..."
    horizon = "-" if row["horizon"] is None else row["horizon"]
    prefix = f"{fault:<44} {row['severity']:>6.3g} {horizon:>2} "
    health = row["health"]
    if health is None:
      lines.append(prefix + "(activation fault: parameters unchanged)")
      continue
    implied = int(health.get("health/value_implied_goal", -1))
    goal = goal_names[implied] if 0 <= implied < len(goal_names) else "-"
    lines.append(prefix + f"{health.get('health/latent_error_1', float('nan')):>9.4f} "
                 f"{health.get('health/reward_error_1', float('nan')):>9.4f} "
                 f"{health.get('health/value_abs_error', float('nan')):>6.3f} "
                 f"{health.get('health/value_rank_corr_intended', float('nan')):>5.2f} "
                 f"{goal:>6} {health.get('health/planner_optimal_share', float('nan')):>8.3f}")
  lines.append("wm_err_1 / rew_err_1: one-step latent and reward prediction errors; V_mae: |V - "
               "Monte-Carlo return|; V~V*: rank correlation with the exact optimal value of the "
               "intended goal; V_goal: goal whose V* the value matches best; plan_opt: share of "
               "states where the planner picks an optimal action")
  return "\n".join(lines)


def _cmd_faults(args: argparse.Namespace) -> int:
  from mbrl_drift.faults import describe_faults, describe_training_faults

  print("evaluation-time faults (mbrl-drift evaluate --fault SPEC):\n")
  print(describe_faults())
  print("\ntraining-time faults (mbrl-drift train --train-fault SPEC):\n")
  print(describe_training_faults())
  return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
  import jax

  from mbrl_drift.checkpoint import atomic_write_json
  from rich.console import Console

  from mbrl_drift.fault_evaluation import (FaultRequest, condition_health, evaluate_faults,
                                           num_progress_steps, stable_fault_id)
  from mbrl_drift.progress import progress_reporter
  from mbrl_drift.runs import enable_compilation_cache, load_run

  enable_compilation_cache()
  run = load_run(args.run)
  specs = list(args.fault or [])
  severities = _parse_list(args.severity, float, "--severity")
  horizons = _parse_list(args.horizon, int, "--horizon") if args.horizon else None
  policies = [p.strip() for p in args.policy.split(",") if p.strip()] if args.policy else None
  key = jax.random.key(args.seed)
  if args.match_drop is not None:  # matched damage: one calibrated severity per fault
    requests = [FaultRequest(spec, matched_drops=(args.match_drop,)) for spec in specs]
  else:
    requests = [FaultRequest(spec, severities=tuple(severities)) for spec in specs]
  requests = requests or [FaultRequest("intact")]
  with progress_reporter(num_progress_steps(requests), "evaluating", unit="steps",
                         console=Console(stderr=True)) as progress:
    evaluation = evaluate_faults(run, requests, horizons, policies, args.episodes, key,
                                 progress=progress)
  calibration = {spec: result for (spec, _), result in evaluation.calibrations.items()}
  for spec, result in calibration.items():
    print(f"calibrated {spec}: severity {result.severity:.4g} gives a success drop of "
          f"{result.drop:.3f} (target {args.match_drop}, reached: {result.reached})")
  # The intact agent once (severity 0 of the first fault), then every fault's own conditions.
  first = evaluation.records[0].fault
  rows = [dict(r.row, fault="intact") if r.severity == 0.0 else r.row
          for r in evaluation.records if r.severity != 0.0 or r.fault == first]
  labels = specs or ["intact"]
  faults = [evaluation.faults[spec] for spec in labels]
  env = run.trainer.env
  intended = int(getattr(run.trainer.env_params, "intended_goal", -1))
  print(f"run {args.run}: {run.config.env}, {run.num_seeds} seeds, {args.episodes} episodes per "
        f"seed and condition (outcomes are means over seeds)")
  goal_names = list(getattr(env, "goal_names", [str(k) for k in
                                                range(int(getattr(env, "num_goals", 0)))]))
  print(_format_conditions(rows, goal_names, intended))
  health_rows = []
  if args.health:
    conditions = sorted({(r["fault"], r["severity"], r["horizon"]) for r in rows},
                        key=lambda c: (labels.index(c[0]) if c[0] in labels else -1, c[1],
                                       c[2] or 0))
    for label, severity, horizon in conditions:
      spec = labels[0] if label == "intact" else label
      fault = faults[labels.index(spec)] if label != "intact" else None
      health_rows += condition_health(run, [fault], [severity],
                                      None if horizon is None else [horizon], key=key,
                                      fault_labels=[label], fault_ids=[stable_fault_id(spec)])
    print()
    print(_format_health(health_rows, goal_names))
  if args.json:
    atomic_write_json(args.json, {
        "run": str(args.run), "env": run.config.env, "episodes": args.episodes,
        "calibration": {spec: dataclasses.asdict(result) if dataclasses.is_dataclass(result)
                        else str(result) for spec, result in calibration.items()},
        "conditions": rows, "health": health_rows})
    print(f"wrote {args.json}")
  return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
  from mbrl_drift import sweep
  from mbrl_drift.runs import enable_compilation_cache

  enable_compilation_cache()
  spec = sweep.SweepSpec.from_file(args.config)
  out = args.out or os.path.join("runs", spec.name)
  summary = sweep.run_sweep(spec, out, runner=args.runner, workers=args.workers,
                            address=args.address, log=print,
                            progress=False if args.quiet else None)
  print(f"sweep {spec.name!r}: {summary.completed} trials completed, {summary.skipped} already "
        f"done, {summary.wall_time_s:.1f}s; results in {summary.sweep_dir}")
  if not args.no_report:
    return _write_report(summary.sweep_dir)
  return 0


def _write_report(sweep_dir: Any) -> int:
  from mbrl_drift import report, sweep

  with sweep.ResultsStore.open_readonly(sweep_dir) as store:
    records, name = sweep.relabel(store.records()), store.spec().name
  if not records:
    print(f"{sweep_dir}: no finished trials yet, no report written")
    return 1
  paths = report.write_report(sweep_dir, records, title=f"Sweep {name!r}")
  rows = report.headline_table(records)
  print(report.format_markdown_table(rows, list(rows[0]) if rows else []))
  print(f"report: {paths.markdown} (HTML: {paths.html})")
  return 0


def _cmd_report(args: argparse.Namespace) -> int:
  return _write_report(args.sweep_dir)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="mbrl-drift",
      description="Train agents, break their components, and measure how they fail.")
  commands = parser.add_subparsers(dest="command", required=True)

  train = commands.add_parser("train", help="train an agent (many seeds at once)")
  train.add_argument("--agent", default=None, choices=agents.names(),
                     help="the agent to train (default: planner; see `mbrl-drift agents`)")
  train.add_argument("--seeds", type=int, default=None,
                     help="seeds trained together (default 4)")
  train.add_argument("--steps", type=int, default=None, dest="total_steps",
                     help="environment steps per seed (same as --total-steps)")
  train.add_argument("--out", required=True, help="run directory")
  train.add_argument("--seed", type=int, default=None, help="base seed (default 0)")
  train.add_argument("--resume", action="store_true",
                     help="continue the run stored in --out with its stored config, seeds and "
                          "base seed (flags that contradict it are an error)")
  train.add_argument("--quiet", action="store_true", help="no progress bar")
  train.add_argument("--no-preset", action="store_true",
                     help="start from the plain TrainConfig defaults instead of the env's tuned "
                          "preset (mbrl_drift/presets.py); flags apply on top of either")
  train.add_argument("--env-arg", type=_env_arg, action="append", metavar="NAME=VALUE",
                     help="environment constructor argument, repeatable (e.g. intended_goal=1)")
  train.add_argument("--init-from", default=None, metavar="RUN",
                     help="start from a trained run's parameters (fine-tuning)")
  train.add_argument("--freeze", default=None, metavar="PATHS",
                     help="comma-separated component paths kept fixed during training")
  train.add_argument("--train-fault", action="append", dest="training_faults", metavar="SPEC",
                     help="training-time fault spec, repeatable (see `mbrl-drift faults`), e.g. "
                          "'value:target_noise(scale=0.5, start_step=2000)'")
  _add_config_flags(train, TrainConfig, "",
                    skip={"agent", "env_kwargs", "total_steps", "agent_kind", "init_from"})
  train.add_argument("--total-steps", type=int, default=None, dest="total_steps",
                     help="environment steps per seed")
  agent_flags: set[str] = set()
  for name in agents.names():
    _add_config_flags(train, agents.get(name).config_type, "agent-", skip=agent_flags)
  train.set_defaults(handler=_cmd_train)

  pretrain = commands.add_parser(
      "pretrain", help="clone a demonstrator into a policy agent (a base for fine-tuning)",
      description="Behaviour cloning: trains the policy agent (--agent policy) to imitate a "
                  "demonstrator and writes an ordinary run directory, the base that "
                  "`mbrl-drift train --agent policy --init-from RUN` fine-tunes.")
  pretrain.add_argument("--env", default="GoalGrid-FourRooms", help="environment")
  pretrain.add_argument("--demonstrator", required=True, metavar="SPEC",
                        help="'goal A', 'goal mixture 0.7 A / 0.3 B [beta=50 epsilon=0.1 "
                             "avoid_vases]', 'run RUN_DIR [seed=I] [selection=greedy|sample]' "
                             "or 'npz FILE.npz' (observations, actions)")
  pretrain.add_argument("--out", required=True, help="run directory of the base")
  pretrain.add_argument("--seeds", type=int, default=4, help="seeds (default 4)")
  pretrain.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
  pretrain.add_argument("--env-arg", type=_env_arg, action="append", metavar="NAME=VALUE",
                        help="environment constructor argument, repeatable")
  pretrain.add_argument("--resume", action="store_true", help="continue the run in --out")
  pretrain.add_argument("--quiet", action="store_true", help="no progress display")
  _add_config_flags(pretrain, agents.get("policy").config_type, "agent-",
                    skip={"algorithm", "demonstrator"})
  pretrain.set_defaults(handler=_cmd_pretrain)

  agents_cmd = commands.add_parser("agents", help="list the registered agents")
  agents_cmd.set_defaults(handler=_cmd_agents)

  envs_cmd = commands.add_parser("envs", help="list the registered environments")
  envs_cmd.set_defaults(handler=_cmd_envs)

  faults_cmd = commands.add_parser(
      "faults", help="list every fault (evaluation and training time) with its parameters")
  faults_cmd.set_defaults(handler=_cmd_faults)

  evaluate_cmd = commands.add_parser(
      "evaluate", help="evaluate a trained run under faults, severities, horizons and policies")
  evaluate_cmd.add_argument("--run", required=True, help="run directory (from `train`)")
  evaluate_cmd.add_argument("--fault", action="append", metavar="SPEC",
                            help="fault spec, repeatable (see `mbrl-drift faults`), e.g. "
                                 "'value:gaussian(scale=0.5)'")
  evaluate_cmd.add_argument("--severity", default="0,0.1,0.3,1",
                            help="comma-separated severities (default 0,0.1,0.3,1)")
  evaluate_cmd.add_argument("--horizon", default=None,
                            help="comma-separated planning horizons (default: training horizon)")
  evaluate_cmd.add_argument("--episodes", type=int, default=100, help="episodes per seed")
  evaluate_cmd.add_argument("--policy", default=None,
                            help="action selections, comma-separated (the planner: greedy, "
                                 "epsilon, boltzmann; a policy: greedy, sample); default: greedy")
  evaluate_cmd.add_argument("--match-drop", type=float, default=None,
                            help="calibrate each fault's severity to this drop in intended-goal "
                                 "success (matched damage) instead of --severity")
  evaluate_cmd.add_argument("--seed", type=int, default=0, help="evaluation seed")
  evaluate_cmd.add_argument("--health", action="store_true",
                            help="also report component health (world-model errors, value "
                                 "calibration, value-implied goal, planner optimality)")
  evaluate_cmd.add_argument("--json", default=None, help="write the results as JSON here")
  evaluate_cmd.set_defaults(handler=_cmd_evaluate)

  sweep_cmd = commands.add_parser(
      "sweep", help="run (or resume) a sweep file: train once, break many times; writes a report")
  sweep_cmd.add_argument("config", help="sweep file (TOML; see mbrl_drift.sweep.spec)")
  sweep_cmd.add_argument("--out", default=None, help="sweep directory (default runs/<name>)")
  sweep_cmd.add_argument("--runner", default="local", choices=["local", "ray"],
                         help="local processes (default) or a Ray cluster")
  sweep_cmd.add_argument("--address", default=None,
                         help="Ray cluster address (default: start a local Ray instance)")
  sweep_cmd.add_argument("--workers", type=int, default=None,
                         help="parallel jobs (default: one per core)")
  sweep_cmd.add_argument("--no-report", action="store_true", help="do not write the report")
  sweep_cmd.add_argument("--quiet", action="store_true",
                         help="plain progress lines even in a terminal (no live display)")
  sweep_cmd.set_defaults(handler=_cmd_sweep)

  report_cmd = commands.add_parser("report", help="write a sweep's Markdown and HTML report")
  report_cmd.add_argument("sweep_dir", help="sweep directory")
  report_cmd.set_defaults(handler=_cmd_report)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``mbrl-drift`` command."""
  parser = build_parser()
  args = parser.parse_args(argv)
  from mbrl_drift.checkpoint import CheckpointError
  from mbrl_drift.sweep.runner import SweepError
  from mbrl_drift.sweep.store import StoreError

  try:
    return args.handler(args)
  except (ValueError, StoreError, CheckpointError, SweepError) as error:
    # configuration and input errors: one clear line, exit code 2
    if os.environ.get("MBRL_DRIFT_DEBUG"):
      raise
    print(f"mbrl-drift: error: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
