"""Environment throughput: vmapped JAX environments vs gymnasium's CartPole, in one run.

JAX rows: ``jax.jit`` of a ``lax.scan`` over ``env.step`` (auto-reset included) with uniformly
random actions, ``jax.vmap``-ed over N parallel environments built with ``envs.make``.
Compilation is timed separately and excluded from throughput.

gymnasium rows (the baselines): ``gymnasium.make("CartPole-v1")`` stepped in a Python loop
(reset by hand at episode ends), ``gymnasium.vector.SyncVectorEnv`` of N such envs, and, for
context, gymnasium's own NumPy-vectorised ``CartPoleVectorEnv``
(``make_vec(..., vectorization_mode="vector_entry_point")``). gymnasium is given precomputed
random actions, so its rows exclude action sampling.

Each row reports env-steps/s (environment transitions per second, summed over the N parallel
environments; the best of ``--repeats`` interleaved windows) and the ratio to
``SyncVectorEnv`` with the same N.

Usage::

  python benchmarks/bench_envs.py                        # the default table, ~1 minute
  python benchmarks/bench_envs.py --num-envs 1 64 --seconds 0.2
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import sys
import time
from collections.abc import Callable

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402  (after the path fix, so the script runs from a checkout)

GYM_ID = "CartPole-v1"


@dataclasses.dataclass
class Runner:
  """One table row: ``run_once() -> env_steps`` performs a batch of steps."""

  implementation: str
  num_envs: int
  run_once: Callable[[], int]
  compile_seconds: float | None = None
  close: Callable[[], None] = lambda: None


@dataclasses.dataclass
class Row:
  implementation: str
  num_envs: int
  steps_per_second: float
  compile_seconds: float | None = None


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def measure(runners: list[Runner], min_seconds: float, repeats: int) -> list[Row]:
  """Best env-steps/s of each runner over ``repeats`` round-robin windows.

  Every round measures each runner for a window of at least ``min_seconds``; each row keeps
  its fastest window. Interleaving the rounds and keeping the best (as ``timeit`` does) filters
  out interference from other processes on a shared machine, so the ratios between rows stay
  meaningful.

  Args:
    runners: the rows to measure, already compiled / constructed.
    min_seconds: minimum length of one measurement window.
    repeats: number of rounds.

  Returns:
    One :class:`Row` per runner, in order.
  """
  best = [0.0] * len(runners)
  for _ in range(repeats):
    for i, runner in enumerate(runners):
      steps, start = 0, time.perf_counter()
      while (elapsed := time.perf_counter() - start) < min_seconds:
        steps += runner.run_once()
      best[i] = max(best[i], steps / elapsed)
  return [Row(r.implementation, r.num_envs, rate, r.compile_seconds)
          for r, rate in zip(runners, best)]


# ---------------------------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------------------------


def make_rollout(env, params, num_envs: int, num_steps: int):
  """A jitted ``(key, state) -> (key, state, total_reward)`` running ``num_steps`` steps.

  Args:
    env: an :class:`envs.core.Environment` with discrete actions.
    params: its parameters.
    num_envs: N, the vmapped batch.
    num_steps: scan length per call.

  Returns:
    The jitted rollout; ``state`` is batched ``[N, ...]``.
  """
  num_actions = env.num_actions
  step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

  def body(carry, _):
    key, state, total = carry
    key, key_action, key_step = jax.random.split(key, 3)
    actions = jax.random.randint(key_action, (num_envs,), 0, num_actions, dtype=jnp.int32)
    _, state, reward, _, _, _ = step(jax.random.split(key_step, num_envs), state, actions,
                                     params)
    return (key, state, total + reward.sum()), None

  @jax.jit
  def rollout(key, state):
    (key, state, total), _ = jax.lax.scan(body, (key, state, jnp.float32(0)), None, num_steps)
    return key, state, total

  return rollout


def jax_runner(name: str, num_envs: int) -> Runner:
  """A compiled vmapped rollout of the registered environment ``name``."""
  env, params = envs.make(name)
  num_steps = int(np.clip(2**17 // num_envs, 128, 8192))
  key = jax.random.key(0)
  _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(
      jax.random.split(key, num_envs), params)

  start = time.perf_counter()
  rollout = make_rollout(env, params, num_envs, num_steps).lower(key, state).compile()
  compile_seconds = time.perf_counter() - start

  carry = jax.block_until_ready(rollout(key, state))  # warm-up execution

  def run_once():
    nonlocal carry
    carry = jax.block_until_ready(rollout(carry[0], carry[1]))
    return num_envs * num_steps

  return Runner(f"jax {name}", num_envs, run_once, compile_seconds)


# ---------------------------------------------------------------------------------------------
# gymnasium baselines
# ---------------------------------------------------------------------------------------------


def gym_single_runner() -> Runner:
  """``gymnasium.make("CartPole-v1")`` stepped in a Python loop, reset at episode ends."""
  env = gymnasium.make(GYM_ID)
  env.reset(seed=0)
  actions = np.random.default_rng(0).integers(0, 2, 1000).tolist()

  def run_once():
    for action in actions:
      _, _, terminated, truncated, _ = env.step(action)
      if terminated or truncated:
        env.reset()
    return len(actions)

  return Runner("gymnasium single env", 1, run_once, close=env.close)


def gym_vector_runner(num_envs: int, mode: str) -> Runner:
  """gymnasium's ``SyncVectorEnv`` (``mode="sync"``) or NumPy ``CartPoleVectorEnv``."""
  if mode == "sync":
    vec = gymnasium.vector.SyncVectorEnv(
        [functools.partial(gymnasium.make, GYM_ID)] * num_envs)
    label = "gymnasium SyncVectorEnv"
  else:
    vec = gymnasium.make_vec(GYM_ID, num_envs=num_envs, vectorization_mode="vector_entry_point")
    label = "gymnasium CartPoleVectorEnv (NumPy)"
  vec.reset(seed=0)
  actions = np.random.default_rng(0).integers(0, 2, (64, num_envs))

  def run_once():
    for action in actions:
      vec.step(action)
    return actions.size

  return Runner(label, num_envs, run_once, close=vec.close)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def format_table(rows: list[Row]) -> str:
  sync = {r.num_envs: r.steps_per_second for r in rows
          if r.implementation == "gymnasium SyncVectorEnv"}
  lines = ["| implementation | envs | env-steps/s | vs SyncVectorEnv (same envs) | compile (s) |",
           "|---|---:|---:|---:|---:|"]
  for r in rows:
    ratio = f"{r.steps_per_second / sync[r.num_envs]:.1f}x" if r.num_envs in sync else "-"
    compile_s = f"{r.compile_seconds:.2f}" if r.compile_seconds is not None else "-"
    lines.append(f"| {r.implementation} | {r.num_envs} | {r.steps_per_second:,.0f} | {ratio} "
                 f"| {compile_s} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 64, 1024],
                      help="parallel environment counts (default: 1 64 1024)")
  parser.add_argument("--envs", nargs="+", default=["GoalGrid-FourRooms", "CartPole"],
                      help="registered JAX environments to measure")
  parser.add_argument("--seconds", type=float, default=0.4,
                      help="minimum seconds of one measurement window (default: 0.4)")
  parser.add_argument("--repeats", type=int, default=4,
                      help="round-robin measurement rounds; each row reports its fastest "
                      "window (default: 4)")
  args = parser.parse_args(argv)
  for name in args.envs:
    if name not in envs.names():
      raise ValueError(f"--envs: unknown environment {name!r}; valid: {envs.names()}")

  print(f"CPU: {_cpu_model()} ({os.cpu_count()} cores); jax {jax.__version__} on "
        f"{jax.devices()[0].platform}; gymnasium {gymnasium.__version__}; "
        f"numpy {np.__version__}; python {platform.python_version()}", flush=True)
  runners = [gym_single_runner()]
  runners += [gym_vector_runner(n, "sync") for n in args.num_envs]
  runners += [gym_vector_runner(n, "numpy") for n in args.num_envs]
  for name in args.envs:
    for n in args.num_envs:
      runners.append(jax_runner(name, n))
      print(f"  compiled jax {name} x{n}", file=sys.stderr, flush=True)
  rows = measure(runners, args.seconds, args.repeats)
  for runner in runners:
    runner.close()
  print(format_table(rows))


if __name__ == "__main__":
  main()
