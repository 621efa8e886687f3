"""Policy-agent training speed: PPO vs a PureJaxRL reference, and vs the planner.

Three measurements, each side of every ratio in the same process and rounds:

(a) **CartPole time to solve.** The policy agent's CartPole preset (PPO, 2x64 tanh networks,
    4 environments x 128 steps, 4 epochs x 4 minibatches, 262k steps;
    ``agents.get("policy").presets()``), the same agent at the reference's 500k steps, and a
    PureJaxRL-style PPO written here after ``purejaxrl/ppo.py`` (Lu et al. 2022; one
    ``ActorCritic`` module, one optimiser, no truncation bootstrap) with the same settings on the
    same ``envs.CartPole`` for ``--reference-steps`` steps. Each is compiled cold (no persistent
    cache), then run, with each of ``--seed-counts`` seeds vmapped (default 1 and 8). Reported: compile and run
    seconds, and for every seed the environment steps at which the mean return of its last 100
    completed episodes first reaches 475. Then the wall time of a fresh process that imports,
    builds, compiles and trains one seed (the preset; the reference at its budget).
(b) **Steps per second vs the planner.** Environment steps per second of training, compiled
    cold then run, of the policy agent's FourRooms preset and of the planner's
    (``mbrl_drift.agents.mpc``, ``presets.PRESETS["GoalGrid-FourRooms"]``), both at
    ``--fourrooms-steps`` steps; reported with their ratio.

Compilation is timed on its own (``jit(...).lower(...).compile()``); run times exclude it. Each
timed run is repeated ``--repeats`` times and keeps its fastest, so load from other processes
hits every row alike.

Usage::

  python benchmarks/bench_policy.py --skip cartpole               # end-to-end, planner ratio
  python benchmarks/bench_policy.py --skip end-to-end planner --seed-counts 1
  python benchmarks/bench_policy.py --skip end-to-end planner --seed-counts 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, NamedTuple

# XLA's multi-threaded Eigen pool on CPU sometimes wedges while running vmapped programs (the
# process sleeps forever in block_until_ready; also reported in PyAutoFit #1528/#1530). Every
# row here runs with it off, so the comparison stays fair.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402  (after the path fix, so the script runs from a checkout)
from mbrl_drift import agents  # noqa: E402
from mbrl_drift.config import TrainConfig  # noqa: E402
from mbrl_drift.train import make_train  # noqa: E402
from bench_agent import machine_description  # noqa: E402  (the script's directory is on the path)

SOLVED_RETURN = 475.0

# Asynchronous CPU dispatch is the other suspect of those hangs (jax-ml/jax#25861).
jax.config.update("jax_cpu_enable_async_dispatch", False)


# ---------------------------------------------------------------------------------------------
# The PureJaxRL reference (purejaxrl/ppo.py, CartPole settings)
# ---------------------------------------------------------------------------------------------


class ActorCritic(nn.Module):
  action_dim: int

  @nn.compact
  def __call__(self, x):
    dense = lambda n, scale: nn.Dense(n, kernel_init=nn.initializers.orthogonal(scale),
                                      bias_init=nn.initializers.zeros)
    a = nn.tanh(dense(64, np.sqrt(2))(x))
    a = nn.tanh(dense(64, np.sqrt(2))(a))
    logits = dense(self.action_dim, 0.01)(a)
    v = nn.tanh(dense(64, np.sqrt(2))(x))
    v = nn.tanh(dense(64, np.sqrt(2))(v))
    return logits, jnp.squeeze(dense(1, 1.0)(v), axis=-1)


class RefTransition(NamedTuple):
  done: jax.Array
  action: jax.Array
  value: jax.Array
  reward: jax.Array
  log_prob: jax.Array
  obs: jax.Array
  episode_return: jax.Array


def reference_make_train(total_steps: int, num_envs: int = 4, num_steps: int = 128,
                         update_epochs: int = 4, num_minibatches: int = 4, lr: float = 2.5e-4,
                         gamma: float = 0.99, gae_lambda: float = 0.95, clip_eps: float = 0.2,
                         ent_coef: float = 0.01, vf_coef: float = 0.5,
                         max_grad_norm: float = 0.5) -> Callable:
  """PureJaxRL's PPO ``make_train`` for CartPole; ``train(key)`` returns per-update returns of
  finished episodes (``[U, T, E]``, NaN where none finished)."""
  env, env_params = envs.make("CartPole")
  num_updates = total_steps // num_steps // num_envs
  minibatch_size = num_envs * num_steps // num_minibatches
  network = ActorCritic(env.num_actions)

  def schedule(count):
    return lr * (1.0 - (count // (num_minibatches * update_epochs)) / num_updates)

  def train(key):
    key, key_init, key_reset = jax.random.split(key, 3)
    params = network.init(key_init, jnp.zeros((4,)))
    tx = optax.chain(optax.clip_by_global_norm(max_grad_norm),
                     optax.adam(learning_rate=schedule, eps=1e-5))
    opt_state = tx.init(params)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(key_reset, num_envs), env_params)

    def update_step(runner, _):
      def env_step(runner, _):
        params, opt_state, env_state, obs, returns, key = runner
        key, key_action, key_step = jax.random.split(key, 3)
        logits, value = network.apply(params, obs)
        action = jax.random.categorical(key_action, logits)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
        obs_next, env_state, reward, terminated, truncated, _ = jax.vmap(
            env.step, in_axes=(0, 0, 0, None))(jax.random.split(key_step, num_envs), env_state,
                                               action, env_params)
        done = terminated | truncated
        returns = returns + reward
        transition = RefTransition(done, action, value, reward, log_prob, obs,
                                   jnp.where(done, returns, jnp.nan))
        return (params, opt_state, env_state, obs_next, jnp.where(done, 0.0, returns), key), \
            transition

      runner, traj = jax.lax.scan(env_step, runner, None, num_steps)
      params, opt_state, env_state, obs, returns, key = runner
      _, last_value = network.apply(params, obs)

      def get_advantages(carry, transition):
        gae, next_value = carry
        delta = transition.reward + gamma * next_value * (1 - transition.done) - transition.value
        gae = delta + gamma * gae_lambda * (1 - transition.done) * gae
        return (gae, transition.value), gae

      _, advantages = jax.lax.scan(get_advantages, (jnp.zeros_like(last_value), last_value),
                                   traj, reverse=True, unroll=16)
      targets = advantages + traj.value

      def update_epoch(state, _):
        params, opt_state, key = state

        def update_minibatch(carry, batch):
          params, opt_state = carry
          traj_batch, gae, targets = batch

          def loss_fn(params):
            logits, value = network.apply(params, traj_batch.obs)
            log_p = jax.nn.log_softmax(logits)
            log_prob = jnp.take_along_axis(log_p, traj_batch.action[:, None], -1)[:, 0]
            value_clipped = traj_batch.value + jnp.clip(value - traj_batch.value, -clip_eps,
                                                        clip_eps)
            value_loss = 0.5 * jnp.maximum(jnp.square(value - targets),
                                           jnp.square(value_clipped - targets)).mean()
            ratio = jnp.exp(log_prob - traj_batch.log_prob)
            norm_gae = (gae - gae.mean()) / (gae.std() + 1e-8)
            actor_loss = -jnp.minimum(ratio * norm_gae,
                                      jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * norm_gae).mean()
            entropy = -jnp.sum(jnp.exp(log_p) * log_p, -1).mean()
            return actor_loss + vf_coef * value_loss - ent_coef * entropy

          grads = jax.grad(loss_fn)(params)
          updates, opt_state = tx.update(grads, opt_state, params)
          return (optax.apply_updates(params, updates), opt_state), None

        key, key_perm = jax.random.split(key)
        batch_size = minibatch_size * num_minibatches
        permutation = jax.random.permutation(key_perm, batch_size)
        batch = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]),
                             (traj, advantages, targets))
        minibatches = jax.tree.map(
            lambda x: jnp.take(x, permutation, axis=0).reshape((num_minibatches, -1)
                                                               + x.shape[1:]), batch)
        (params, opt_state), _ = jax.lax.scan(update_minibatch, (params, opt_state),
                                              minibatches)
        return (params, opt_state, key), None

      (params, opt_state, key), _ = jax.lax.scan(update_epoch, (params, opt_state, key), None,
                                                 update_epochs)
      return (params, opt_state, env_state, obs, returns, key), traj.episode_return

    runner = (params, opt_state, env_state, obs, jnp.zeros((num_envs,)), key)
    _, episode_returns = jax.lax.scan(update_step, runner, None, num_updates)
    return episode_returns

  return train


def first_solved_step(episode_returns: np.ndarray, steps_per_update: int) -> int | None:
  """Env steps at which the mean of the last 100 finished episodes first reaches 475, from
  ``[U, T, E]`` returns (NaN where no episode finished)."""
  recent: list[float] = []
  num_updates, num_steps, _ = episode_returns.shape
  for u in range(num_updates):
    for t in range(num_steps):
      for value in episode_returns[u, t]:
        if np.isfinite(value):
          recent.append(float(value))
          if len(recent) >= 100 and np.mean(recent[-100:]) >= SOLVED_RETURN:
            return (u * num_steps + t + 1) * steps_per_update // num_steps
  return None


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def timed_compile(fn: Callable, *args: Any) -> tuple[Callable, float]:
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def timed_run(compiled: Callable, args: tuple, repeats: int) -> tuple[Any, float]:
  best, out = float("inf"), None
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    best = min(best, time.perf_counter() - start)
  return out, best


def _policy_solved(metrics: dict[str, Any], seeds: int) -> list[int | None]:
  recent = np.asarray(metrics["episode/recent_mean_return"])
  env_steps = np.asarray(metrics["train/env_steps"])
  solved = []
  for s in range(seeds):
    hit = np.nonzero(recent[s] >= SOLVED_RETURN)[0]
    solved.append(int(env_steps[s, hit[0]]) if len(hit) else None)
  return solved


def cartpole_trainer(total_steps: int | None = None):
  """The policy agent's CartPole preset, one chunk per PPO iteration (so that the last-100
  mean is seen after every iteration); ``total_steps`` overrides the preset's."""
  preset = agents.get("policy").presets()["CartPole"]
  total_steps = total_steps or preset.total_steps
  steps_per_iteration = preset.num_envs * preset.agent.rollout_steps
  return make_train(dataclasses.replace(preset, total_steps=total_steps,
                                        num_chunks=total_steps // steps_per_iteration))


def cartpole(args: argparse.Namespace) -> dict[str, Any]:
  preset_trainer = cartpole_trainer()
  same_budget = (preset_trainer if preset_trainer.config.total_steps == args.reference_steps
                 else cartpole_trainer(args.reference_steps))
  reference = reference_make_train(args.reference_steps)
  steps_per_iteration = 4 * 128
  rows = [("policy preset", preset_trainer.config.total_steps, jax.vmap(preset_trainer.train)),
          ("purejaxrl", args.reference_steps, jax.vmap(reference))]
  if preset_trainer.config.total_steps != args.reference_steps:
    rows.insert(1, ("policy", args.reference_steps, jax.vmap(same_budget.train)))
  results: dict[str, Any] = {}
  for seeds in args.seed_counts:
    keys = jax.random.split(jax.random.key(0), seeds)
    for name, total_steps, train in rows:
      compiled, compile_s = timed_compile(train, keys)
      out, run_s = timed_run(compiled, (keys,), args.repeats)
      if name.startswith("policy"):
        solved = _policy_solved(out[1], seeds)
      else:
        returns = np.asarray(out)
        solved = [first_solved_step(returns[s], steps_per_iteration) for s in range(seeds)]
      results[f"{name} {total_steps} steps, {seeds} seeds"] = {
          "compile_s": round(compile_s, 2), "run_s": round(run_s, 2),
          "solved_at_steps": solved}
      print(f"CartPole {name:<13} {total_steps:>7} steps {seeds} seed(s): compile "
            f"{compile_s:5.2f}s  run {run_s:5.2f}s  first last-100 mean >= 475 at {solved}",
            flush=True)
  return results


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
  """Wall time of a fresh process that imports, builds, compiles and trains one seed."""
  import subprocess

  results = {}
  for name in ("policy", "purejaxrl"):
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      subprocess.run([sys.executable, os.path.abspath(__file__), "--one-run", name],
                     check=True, capture_output=True)
      times.append(time.perf_counter() - start)
    results[name] = round(min(times), 2)
    print(f"CartPole {name:<10} fresh process, 1 seed, import to trained: {min(times):5.2f}s "
          f"({'preset' if name == 'policy' else args.reference_steps} steps)", flush=True)
  return results


def one_run(name: str, reference_steps: int) -> None:
  key = jax.random.split(jax.random.key(0), 1)
  if name == "policy":
    jax.block_until_ready(jax.jit(jax.vmap(cartpole_trainer().train))(key))
  else:
    jax.block_until_ready(jax.jit(jax.vmap(reference_make_train(reference_steps)))(key))


def planner_ratio(args: argparse.Namespace) -> dict[str, Any]:
  from mbrl_drift.presets import PRESETS

  steps = args.fourrooms_steps
  policy_config = agents.get("policy").presets()["GoalGrid-FourRooms"]
  policy_config = dataclasses.replace(policy_config, total_steps=steps, num_chunks=1)
  planner_config = dataclasses.replace(PRESETS["GoalGrid-FourRooms"], total_steps=steps,
                                       num_chunks=1)
  key = jax.random.key(0)
  results: dict[str, Any] = {"total_steps": steps}
  for name, config in (("policy", policy_config), ("planner", planner_config)):
    trainer = make_train(config)
    compiled, compile_s = timed_compile(trainer.train, key)
    out, run_s = timed_run(compiled, (key,), args.repeats)
    env_steps = int(np.asarray(out[0].env_steps))
    results[name] = {"compile_s": round(compile_s, 2), "run_s": round(run_s, 3),
                     "env_steps": env_steps, "steps_per_s": round(env_steps / run_s)}
    print(f"FourRooms {name:<8}: compile {compile_s:5.2f}s  run {run_s:6.3f}s  "
          f"{env_steps / run_s:10.0f} env steps/s", flush=True)
  results["ratio_policy_over_planner"] = round(
      results["policy"]["steps_per_s"] / results["planner"]["steps_per_s"], 1)
  print(f"policy / planner env steps per second: {results['ratio_policy_over_planner']}x")
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--reference-steps", type=int, default=500_000,
                      help="CartPole steps of the PureJaxRL reference (and of the policy agent "
                           "at the same budget)")
  parser.add_argument("--fourrooms-steps", type=int, default=20_480)
  parser.add_argument("--seed-counts", type=int, nargs="+", default=[1, 8],
                      help="CartPole rows: seeds vmapped together, one set of rows per count "
                           "(run counts in separate processes where XLA's CPU runtime hangs on a "
                           "vmapped program compiled after others: see benchmarks/README.md)")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--skip", nargs="*", default=(),
                      choices=("cartpole", "end-to-end", "planner"))
  parser.add_argument("--json", default=None, help="also write the results to this file")
  parser.add_argument("--one-run", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one_run:
    one_run(args.one_run, args.reference_steps)
    return
  print(machine_description(), flush=True)
  results: dict[str, Any] = {"machine": machine_description()}
  if "cartpole" not in args.skip:
    results["cartpole"] = cartpole(args)
  if "end-to-end" not in args.skip:
    results["end_to_end"] = end_to_end(args)
  if "planner" not in args.skip:
    results["planner"] = planner_ratio(args)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
