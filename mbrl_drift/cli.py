"""Command-line interface: ``mbrl-drift {train,envs} ...``.

Every field of :class:`~mbrl_drift.config.TrainConfig` is a flag of ``train``
(``--batch-size 64``), and every field of the agent config is an ``--agent-`` flag
(``--agent-horizon 3``). Input errors print one line and exit with status 2; set
``MBRL_DRIFT_DEBUG=1`` for the full traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, Sequence

from mbrl_drift.config import AgentConfig, TrainConfig


def _parse_bool(text: str) -> bool:
  lowered = text.lower()
  if lowered in ("1", "true", "yes", "on"):
    return True
  if lowered in ("0", "false", "no", "off"):
    return False
  raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _add_config_flags(parser: argparse.ArgumentParser, cls: type, prefix: str,
                      skip: set[str]) -> None:
  defaults = cls()
  for field in dataclasses.fields(cls):
    if field.name in skip:
      continue
    default = getattr(defaults, field.name)
    kind = {bool: _parse_bool, int: int, float: float, str: str}.get(type(default))
    if kind is None:
      continue
    parser.add_argument(f"--{prefix}{field.name.replace('_', '-')}", type=kind, default=None,
                        dest=f"{prefix.replace('-', '_')}{field.name}",
                        help=f"(default {default!r})")


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
  values = vars(args)
  agent = {f.name: values[f"agent_{f.name}"] for f in dataclasses.fields(AgentConfig)
           if values.get(f"agent_{f.name}") is not None}
  train = {f.name: values[f.name] for f in dataclasses.fields(TrainConfig)
           if f.name not in ("agent", "env_kwargs") and values.get(f.name) is not None}
  return TrainConfig(agent=AgentConfig(**agent), **train)


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


def _cmd_train(args: argparse.Namespace) -> int:
  from mbrl_drift.runs import enable_compilation_cache, train_run

  enable_compilation_cache()
  config = _config_from_args(args)
  summary = train_run(config, num_seeds=args.seeds, out_dir=args.out, seed=args.seed,
                      resume=args.resume, progress=not args.quiet, log=print)
  print(_format_summary(summary))
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


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="mbrl-drift",
      description="Train planning agents, break their components, and measure how they fail.")
  commands = parser.add_subparsers(dest="command", required=True)

  train = commands.add_parser("train", help="train a planning agent (many seeds at once)")
  train.add_argument("--seeds", type=int, default=4, help="seeds trained together (default 4)")
  train.add_argument("--steps", type=int, default=None, dest="total_steps",
                     help="environment steps per seed (same as --total-steps)")
  train.add_argument("--out", required=True, help="run directory")
  train.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
  train.add_argument("--resume", action="store_true", help="continue the run in --out")
  train.add_argument("--quiet", action="store_true", help="no progress bar")
  _add_config_flags(train, TrainConfig, "", skip={"agent", "env_kwargs", "total_steps"})
  train.add_argument("--total-steps", type=int, default=None, dest="total_steps",
                     help="environment steps per seed")
  _add_config_flags(train, AgentConfig, "agent-", skip=set())
  train.set_defaults(handler=_cmd_train)

  envs_cmd = commands.add_parser("envs", help="list the registered environments")
  envs_cmd.set_defaults(handler=_cmd_envs)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``mbrl-drift`` command."""
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return args.handler(args)
  except ValueError as error:  # configuration and input errors: one clear line, exit code 2
    if os.environ.get("MBRL_DRIFT_DEBUG"):
      raise
    print(f"mbrl-drift: error: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
