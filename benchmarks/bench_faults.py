"""Fault-sweep evaluation speed: every condition in one compiled call vs a Python loop over them.

A trained ``GoalGrid-FourRooms`` agent (a small run trained into a temporary directory with
``mbrl_drift.runs.train_run``, or an existing run given with ``--run``) is evaluated under 4 weight
faults x 8 severities, 100 greedy episodes per condition:

* **one call**: ``mbrl_drift.fault_evaluation.evaluate_conditions``, every condition in one
  compiled call (``jax.lax.map`` over batches of ``batch_size`` vmapped conditions). Rows for its
  default batch size (16) and for batches of 1 (the conditions one after the other inside the
  compiled call, which separates vectorisation from host dispatch); ``--batch-sizes`` adds more.
* **Python loop** (the baseline): one jitted single-condition function, ``(params, faults,
  fault_index, severity, ...) -> trajectories``, compiled once and called once per condition
  with the fault index and severity as array arguments. It draws its random numbers as
  ``evaluate_conditions`` does, so both sides evaluate the same episodes; the script checks that
  their outcomes agree.

Compilation is excluded from the timings and reported on its own: the first call of each row
(compile plus one execution: the whole sweep, or one condition for the loop) and the compile
time it implies. Rows are then measured in interleaved rounds and each keeps its fastest round.

``--plan-depth horizon`` evaluates with the exhaustive planning tree cut to the evaluated horizon
instead of the agent's ``max_horizon`` (same actions, much less work per condition).

Usage::

  python benchmarks/bench_faults.py                       # ~10 minutes on 2 loaded cores
  python benchmarks/bench_faults.py --plan-depth horizon --batch-sizes 16 32 1 --rounds 3
  python benchmarks/bench_faults.py --run runs/four_rooms --seeds 1 --episodes 20
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_agent import ENV_NAME, bench_config, machine_description, timed  # noqa: E402
from mbrl_drift import faults as faults_lib  # noqa: E402
from mbrl_drift.evaluate import evaluate, outcome_summary  # noqa: E402
from mbrl_drift.fault_evaluation import evaluate_conditions, parse_faults  # noqa: E402
from mbrl_drift.agents.base import EvalArgs  # noqa: E402
from mbrl_drift.agents.mpc.planner import SELECTION_MODES  # noqa: E402
from mbrl_drift.runs import TrainedRun, load_run, train_run  # noqa: E402
from mbrl_drift.trajectories import Trajectories  # noqa: E402

DEFAULT_FAULTS = (
    "value:gaussian(scale=0.5)",
    "world_model/dynamics:gaussian(scale=0.5)",
    "value:signflip()",
    "world_model/*:ablate()",
)


def first_seeds(run: TrainedRun, num_seeds: int) -> TrainedRun:
  """``run`` restricted to its first ``num_seeds`` seeds."""
  if not 1 <= num_seeds <= run.num_seeds:
    raise ValueError(f"--seeds={num_seeds}: the run has {run.num_seeds} seed(s); choose 1 to "
                     f"{run.num_seeds}")
  return dataclasses.replace(run, state=jax.tree.map(lambda x: x[:num_seeds], run.state),
                             header={**run.header, "num_seeds": num_seeds})


def with_plan_depth(run: TrainedRun, depth: int) -> TrainedRun:
  """``run`` whose agent builds its exhaustive planning tree to ``depth`` (its ``max_horizon``).

  The planner scores every sequence of ``max_horizon`` actions and reads the requested horizon
  off that tree, so a depth equal to the evaluated horizon gives the same actions at a fraction
  of the cost (what evaluating at a single horizon needs).
  """
  agent = run.trainer.agent
  agent = dataclasses.replace(agent, config=dataclasses.replace(agent.config, max_horizon=depth))
  return dataclasses.replace(run, trainer=run.trainer._replace(agent=agent))


def make_condition_fn(run: TrainedRun, num_episodes: int) -> Callable[..., Any]:
  """The baseline's jitted single-condition evaluation (compiled once for every condition).

  Its random numbers follow ``evaluate_conditions`` (one key per seed, folded with 1 and the
  fault index for the fault and with 2 for the episodes), so a condition evaluates the same
  episodes on both sides.

  Args:
    run: the trained run.
    num_episodes: ``N`` episodes per condition.

  Returns:
    ``condition(params, faults, fault_index, severity, seed, key, horizon, mode, epsilon,
    temperature) -> (Trajectories [N, ...], nonfinite_params [])``; ``params`` is batched over
    seeds, ``faults`` a list of weight faults (a pytree argument), the rest arrays.
  """
  agent, env, env_params = run.trainer.agent, run.trainer.env, run.trainer.env_params
  max_steps = int(env_params.max_steps)

  def condition(params, faults, fault_index, severity, seed, key, horizon, mode, epsilon,
                temperature):
    key_seed = jax.random.fold_in(key, seed)
    key_fault = jax.random.fold_in(jax.random.fold_in(key_seed, 1), fault_index)
    key_eval = jax.random.fold_in(key_seed, 2)
    seed_params = jax.tree.map(lambda x: x[seed], params)
    branches = [lambda p, f=f: f(key_fault, p, severity) for f in faults]
    seed_params = jax.lax.switch(fault_index, branches, seed_params)
    trajectories = evaluate(agent, seed_params, env, env_params, key_eval, num_episodes,
                            EvalArgs(horizon, mode, epsilon, temperature),
                            max_steps=max_steps, record_obs=False)
    return trajectories, faults_lib.count_nonfinite(seed_params)

  return jax.jit(condition)


def condition_args(run: TrainedRun, faults: list[Any], fault_index: int, severity: float,
                   seed: int, key: jax.Array) -> tuple[Any, ...]:
  """Positional arguments of the single-condition function for one greedy condition (always
  the same types and positions, so every call reuses the one compilation)."""
  agent_config = run.trainer.agent.config
  return (run.params, faults, jnp.int32(fault_index), jnp.float32(severity), jnp.int32(seed), key,
          jnp.int32(agent_config.horizon), jnp.int32(SELECTION_MODES["greedy"]),
          jnp.float32(0.1), jnp.float32(agent_config.boltzmann_temperature))


def python_loop(condition_fn: Callable[..., Any], run: TrainedRun, faults: list[Any],
                severities: np.ndarray, num_episodes: int, key: jax.Array
                ) -> tuple[Trajectories, np.ndarray]:
  """Evaluates every (fault, severity, seed) condition with one call each.

  Returns:
    ``(trajectories [F, S, seeds, N, ...], nonfinite [F, S, seeds])`` as numpy arrays.
  """
  results = []
  for fault_index in range(len(faults)):
    for severity in severities:
      for seed in range(run.num_seeds):
        results.append(jax.device_get(condition_fn(
            *condition_args(run, faults, fault_index, severity, seed, key))))
  shape = (len(faults), len(severities), run.num_seeds)
  trajectories = jax.tree.map(lambda *xs: np.stack(xs).reshape(shape + xs[0].shape),
                              *[r[0] for r in results])
  nonfinite = np.asarray([r[1] for r in results]).reshape(shape)
  return trajectories, nonfinite


def get_run(args: argparse.Namespace, workdir: str) -> TrainedRun:
  """The run given with ``--run``, or a small one trained into ``workdir``."""
  if args.run:
    return first_seeds(load_run(args.run), args.seeds)
  config = dataclasses.replace(bench_config(args.train_steps), eval_episodes=16)
  out_dir = os.path.join(workdir, "run")
  print(f"training {ENV_NAME} for {config.total_steps} env steps ({args.seeds} seed(s)) into a "
        f"temporary directory", file=sys.stderr, flush=True)
  summary = train_run(config, args.seeds, out_dir, progress=False)
  print(f"  trained in {summary['wall_time_s']:.0f}s (compile included); intended-goal success "
        f"{summary['final_eval']['outcome/intended_success']}", file=sys.stderr, flush=True)
  return load_run(out_dir)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run", help="a trained run directory (default: train a small run)")
  parser.add_argument("--seeds", type=int, default=1,
                      help="seeds evaluated (the first ones of the run; default: 1)")
  parser.add_argument("--train-steps", type=int, default=4000,
                      help="environment steps of the run trained without --run (default: 4000)")
  parser.add_argument("--faults", nargs="+", default=list(DEFAULT_FAULTS),
                      help="weight-fault specs (default: 4 faults on value and world model)")
  parser.add_argument("--num-severities", type=int, default=8,
                      help="severities evenly spaced in [0, 1] (default: 8)")
  parser.add_argument("--episodes", type=int, default=100,
                      help="episodes per condition and seed (default: 100)")
  parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 1],
                      help="batch sizes of evaluate_conditions (default: 16 1; 16 is its "
                      "default, 1 evaluates the conditions one after the other)")
  parser.add_argument("--plan-depth", choices=["max", "horizon"], default="max",
                      help="depth of the exhaustive planning tree: the agent's max_horizon, as "
                      "trained (default), or the evaluated horizon")
  parser.add_argument("--rounds", type=int, default=1,
                      help="interleaved measurement rounds after the first calls; each row "
                      "keeps its fastest (default: 1)")
  args = parser.parse_args(argv)

  print(machine_description(), flush=True)
  with tempfile.TemporaryDirectory(prefix="bench_faults_") as workdir:
    run = get_run(args, workdir)
  if args.plan_depth == "horizon":
    run = with_plan_depth(run, run.trainer.agent.config.horizon)
  faults = parse_faults(run, args.faults)
  for spec, fault in zip(args.faults, faults):
    if not isinstance(fault, faults_lib.Fault) or "reference" in fault.settings:
      raise ValueError(f"--faults: {spec!r} is not supported by the Python-loop baseline; use "
                       "weight faults without reference parameters (not act_*, swap, "
                       "interpolate)")
  severities = np.linspace(0.0, 1.0, args.num_severities).astype(np.float32)
  num_conditions = len(faults) * len(severities) * run.num_seeds
  batch_sizes = args.batch_sizes
  key = jax.random.key(0)
  print(f"{ENV_NAME} agent, {len(faults)} faults x {len(severities)} severities x "
        f"{run.num_seeds} seed(s) = {num_conditions} conditions, {args.episodes} greedy episodes "
        f"each (at most {int(run.trainer.env_params.max_steps)} steps), planner "
        f"{run.trainer.agent.config.planner} at horizon {run.trainer.agent.config.horizon} "
        f"(tree depth {run.trainer.agent.config.max_horizon})", flush=True)

  def one_call(batch_size: int) -> Callable[[], Any]:
    return lambda: evaluate_conditions(run, faults, severities, num_episodes=args.episodes,
                                       key=key, batch_size=batch_size)

  condition_fn = make_condition_fn(run, args.episodes)
  loop = lambda: python_loop(condition_fn, run, faults, severities, args.episodes, key)
  rows: list[dict[str, Any]] = []
  for batch_size in batch_sizes:
    rows.append({"name": f"evaluate_conditions, one call (batch_size={batch_size})",
                 "run": one_call(batch_size)})
  rows.append({"name": "Python loop: jitted single condition, one call per condition",
               "run": loop})

  # First calls: compilation plus one execution.
  for row in rows[:-1]:
    row["result"], row["first"] = timed(row["run"])
    print(f"  {row['name']}: first call {row['first']:.1f}s", file=sys.stderr, flush=True)
  _, loop_first = timed(lambda: jax.block_until_ready(
      condition_fn(*condition_args(run, faults, 0, 0.5, 0, key))))
  rows[-1]["first"] = loop_first
  print(f"  Python loop: first call {loop_first:.1f}s", file=sys.stderr, flush=True)

  for round_index in range(args.rounds):
    for row in rows:
      row["result"], seconds = timed(row["run"])
      row["best"] = min(row.get("best", float("inf")), seconds)
    print(f"  round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)

  # Both sides must have evaluated the same episodes.
  reference = rows[0]["result"].outcomes()
  loop_trajectories, loop_nonfinite = rows[-1]["result"]
  loop_outcomes = outcome_summary(loop_trajectories, rows[0]["result"].intended_goal,
                                  rows[0]["result"].num_goals)
  worst = {}
  for row in rows[1:-1]:
    for name, value in row["result"].outcomes().items():
      worst[name] = max(worst.get(name, 0.0), float(np.max(np.abs(value - reference[name]))))
  for name, value in loop_outcomes.items():
    difference = np.abs(np.asarray(value) - reference[name][:, :, 0, 0])
    worst[name] = max(worst.get(name, 0.0), float(np.max(difference)))

  baseline = rows[-1]["best"]
  episodes = num_conditions * args.episodes
  print(f"\n{num_conditions} conditions x {args.episodes} episodes = {episodes:,} episodes per "
        "sweep")
  print("| implementation | sweep (s) | conditions/s | episodes/s | vs Python loop "
        "| first call (s) | compile, estimated (s) |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  for row in rows:
    # The first call ran the whole sweep, or (the loop) one condition, after compiling.
    executed = baseline / num_conditions if row is rows[-1] else row["best"]
    print(f"| {row['name']} | {row['best']:.2f} | {num_conditions / row['best']:.2f} | "
          f"{episodes / row['best']:,.0f} | {baseline / row['best']:.2f}x | {row['first']:.1f} | "
          f"{max(row['first'] - executed, 0.0):.1f} |")
  print("largest difference between implementations, over conditions: "
        + ", ".join(f"{name.split('/', 1)[1]} {value:.3g}" for name, value in worst.items()))

  success = reference["outcome/intended_success"][:, :, 0, 0].mean(axis=-1)
  print("\nintended-goal success (mean over seeds) by severity "
        + " ".join(f"{s:.2f}" for s in severities))
  for label, values in zip(rows[0]["result"].fault_labels, success):
    print(f"  {label}: " + " ".join(f"{v:.2f}" for v in values))
  print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
