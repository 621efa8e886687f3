"""Agent training speed: the whole run as one jitted ``lax.scan`` vs the usual host loops.

Three measurements on ``GoalGrid-FourRooms`` with ``TrainConfig()`` (default agent and update
settings) at a smaller step budget, the same on both sides of every ratio:

(a) **Scanned run vs Python-driven loop.** ``jax.jit(trainer.train)``, the whole run in one call,
    against the same agent driven by a Python loop: each iteration steps the gymnasium-registered
    environment on the host, calls a jitted vmapped planner (``mbrl_drift.planner.act``) for the
    actions and a jitted learner that writes the transition into the replay buffer
    (``mbrl_drift.buffer``) and performs ``updates_per_iteration`` gradient updates. The Python
    loop is timed on windows in which every iteration learns; the scanned run computes the
    updates at every iteration too (and discards them before ``learning_starts``), so both sides
    do the same work per environment step. Two host environments are measured:
    ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")`` (the environments stepped
    in one jitted call) and ``gymnasium.vector.SyncVectorEnv`` of ``gymnasium.make`` single envs.
(b) **8 seeds vmapped vs 8 sequential runs.** ``jax.jit(jax.vmap(trainer.train))`` on 8 keys
    against 8 calls of the compiled single-seed ``jax.jit(trainer.train)``.
(c) **Compile time, cold vs persistent cache.** A fresh subprocess lowers and compiles
    ``jax.jit(trainer.train)`` with ``mbrl_drift.runs.enable_compilation_cache`` pointing at a new
    empty directory (cold), then a second fresh subprocess does the same with that directory
    filled (warm).

Compilation is excluded from (a) and (b) and reported on its own. Measurements are interleaved
in rounds and each row keeps its fastest round, so load from other processes hits every row
alike.

Usage::

  python benchmarks/bench_agent.py                    # ~6 minutes on 2 loaded cores
  python benchmarks/bench_agent.py --skip seeds compile --total-steps 1000
  python benchmarks/bench_agent.py --check-update     # the loop's update matches train.py
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402  (after the path fix, so the script runs from a checkout)
from mbrl_drift import buffer as replay  # noqa: E402
from mbrl_drift.agents.base import get_path, set_path  # noqa: E402
from mbrl_drift.config import TrainConfig  # noqa: E402
from mbrl_drift.agents.mpc.planner import EPSILON, act  # noqa: E402
from mbrl_drift.agents.mpc.train import (Trainer, component_optimiser, make_train,  # noqa: E402
                              n_step_targets)

ENV_NAME = "GoalGrid-FourRooms"


def machine_description() -> str:
  """CPU model, cores, load average and library versions, for the report header."""
  model = platform.processor() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  load = " ".join(f"{x:.1f}" for x in os.getloadavg())
  return (f"CPU: {model} ({os.cpu_count()} cores), load average {load}; jax {jax.__version__} on "
          f"{jax.devices()[0].platform}; gymnasium {gymnasium.__version__}; numpy "
          f"{np.__version__}; python {platform.python_version()}")


def bench_config(total_steps: int) -> TrainConfig:
  """``TrainConfig()`` with ``total_steps`` environment steps (learning starts by mid-run)."""
  default = TrainConfig()
  return dataclasses.replace(default, total_steps=total_steps,
                             learning_starts=min(default.learning_starts, total_steps // 2))


@dataclasses.dataclass
class Row:
  """One measured row: best rate over the rounds (``None`` until measured)."""

  name: str
  env_steps: int = 0
  best_seconds: float = float("inf")
  compile_seconds: float | None = None

  def record(self, env_steps: int, seconds: float) -> None:
    """Keeps the window with the highest rate."""
    if not self.env_steps or env_steps / seconds > self.steps_per_second:
      self.env_steps, self.best_seconds = env_steps, seconds

  @property
  def steps_per_second(self) -> float:
    return self.env_steps / self.best_seconds


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# (a) The Python-driven loop
# ---------------------------------------------------------------------------------------------


class LearnerState(NamedTuple):
  """What the host loop keeps on the device between iterations."""

  params: Any
  target_value: Any
  opt_states: dict[str, Any]
  buffer: replay.ReplayBuffer
  key: jax.Array


def make_update(trainer: Trainer) -> Callable[[LearnerState, jax.Array], LearnerState]:
  """One gradient update of world model and value, as in ``mbrl_drift.train``.

  ``make_train`` keeps its update step inside the scanned iteration, so this benchmark carries a
  copy of it (the fault hooks left out, which are the identity by default): sample
  ``batch_size`` sequences, TD-MPC-style consistency, reward, termination, reconstruction and
  n-step value losses (Hansen et al. 2022), one clipped Adam step per component and a Polyak
  update of the target value. Keep it in step with ``mbrl_drift/train.py``.

  Args:
    trainer: the trainer whose configuration and agent to use.

  Returns:
    ``update(state, key) -> state`` (pure; jit it).
  """
  config, agent = trainer.config, trainer.agent
  agent_config = agent.config
  unroll, n_step, gamma = config.unroll_steps, config.n_step, agent_config.gamma
  rho_powers = config.rho ** jnp.arange(unroll, dtype=jnp.float32)
  optimisers = {path: component_optimiser(config, path) for path in agent.component_paths}

  def sequence_loss(params, target_value, sequence):
    obs, next_obs, reward = sequence["obs"], sequence["next_obs"], sequence["reward"]
    terminated, truncated = sequence["terminated"], sequence["truncated"]
    done = jnp.logical_or(terminated, truncated).astype(jnp.float32)
    mask = jnp.concatenate([jnp.ones((1,)), jnp.cumprod(1.0 - done)[:-1]])
    weight = rho_powers * mask[:unroll]
    action_inputs = jax.vmap(agent.action_input)(sequence["action"][:unroll])
    encode = jax.vmap(lambda o: agent.encode(params, o))
    next_latent_target = jax.lax.stop_gradient(encode(next_obs[:unroll]))

    def unroll_step(z_k, action_input_k):
      z_kp1, reward_k, termination_logit_k = agent.transition(params, z_k, action_input_k)
      return z_kp1, (z_k, z_kp1, reward_k, termination_logit_k)

    z_0 = agent.encode(params, obs[0])
    _, (z_unrolled, z_predicted, reward_pred, termination_logit) = jax.lax.scan(
        unroll_step, z_0, action_inputs)
    consistency = jnp.mean((z_predicted - next_latent_target) ** 2, axis=-1)
    termination_error = optax.sigmoid_binary_cross_entropy(
        termination_logit, terminated[:unroll].astype(jnp.float32))
    total = (config.consistency_coef * jnp.sum(weight * consistency)
             + config.reward_coef * jnp.sum(weight * (reward_pred - reward[:unroll]) ** 2)
             + config.termination_coef * jnp.sum(weight * termination_error))
    if agent_config.use_decoder:
      reconstruction = jax.vmap(lambda z: agent.decode(params, z))(z_unrolled)
      total += config.decoder_coef * jnp.sum(
          weight * jnp.mean((reconstruction - obs[:unroll]) ** 2, -1))
    bootstrap_latent = jax.lax.stop_gradient(encode(next_obs))
    bootstrap_value = jax.vmap(lambda z: agent.value({"value": target_value}, z))(bootstrap_latent)
    targets = n_step_targets(reward, terminated, truncated, bootstrap_value, n_step, gamma,
                             unroll + 1)
    latents = jnp.concatenate([z_0[None], z_predicted])
    if not agent_config.value_gradients_to_encoder:
      latents = jax.lax.stop_gradient(latents)
    value_pred = jax.vmap(lambda z: agent.value(params, z))(latents)
    value_weight = jnp.concatenate([jnp.ones((1,)), rho_powers]) * mask[:unroll + 1]
    total += config.value_coef * jnp.sum(value_weight * (value_pred - targets) ** 2)
    if agent_config.use_actor:
      actor_latent = jax.lax.stop_gradient(encode(obs[:unroll]))
      actor_out = jax.vmap(lambda z: agent.actor_output(params, z))(actor_latent)
      if agent.spec.discrete:
        actor_error = optax.softmax_cross_entropy_with_integer_labels(
            actor_out, sequence["action"][:unroll])
      else:
        actor_error = jnp.mean((actor_out - sequence["action"][:unroll]) ** 2, -1)
      total += jnp.sum(weight * actor_error)
    return total

  def batch_loss(params, target_value, batch):
    losses = jax.vmap(sequence_loss, in_axes=(None, None, 0))(params, target_value, batch)
    return jnp.mean(losses)

  def update(state: LearnerState, key: jax.Array) -> LearnerState:
    # train.py splits the update key into (sample, loss); the loss key only feeds fault hooks.
    key_sample, _ = jax.random.split(key)
    batch = replay.sample_sequences(state.buffer, key_sample, config.batch_size,
                                    config.sequence_length)
    grads = jax.grad(batch_loss)(state.params, state.target_value, batch)
    opt_states, updates = dict(state.opt_states), {}
    for path, optimiser in optimisers.items():
      component_updates, opt_states[path] = optimiser.update(
          get_path(grads, path), opt_states[path], get_path(state.params, path))
      updates = set_path(updates, path, component_updates)
    params = optax.apply_updates(state.params, updates)
    target_value = optax.incremental_update(params["value"], state.target_value,
                                            config.target_tau)
    return state._replace(params=params, target_value=target_value, opt_states=opt_states)

  return update


def make_gym_env(kind: str, num_envs: int) -> gymnasium.vector.VectorEnv:
  """The training environment (random starts, as ``make_train`` sets) through gymnasium.

  Args:
    kind: ``"make_vec"`` (the registered vector entry point: one jitted call steps every
      environment) or ``"sync"`` (``SyncVectorEnv`` of ``gymnasium.make`` single envs).
    num_envs: ``E``.
  """
  env_id = envs.gym_id(ENV_NAME)
  env_params = {"random_start": True}
  if kind == "make_vec":
    return gymnasium.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                              env_params=env_params)
  if kind == "sync":
    return gymnasium.vector.SyncVectorEnv(
        [functools.partial(gymnasium.make, env_id, env_params=env_params)] * num_envs,
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
  raise ValueError(f"kind={kind!r}: expected 'make_vec' or 'sync'")


def _transition_extras(obs_next: np.ndarray, done: np.ndarray, info: dict[str, Any]
                       ) -> tuple[np.ndarray, np.ndarray]:
  """``(next_obs [E, d], reached_goal [E])`` from a same-step auto-resetting vector env's info."""
  next_obs = obs_next.reshape(len(done), -1).astype(np.float32)
  reached = np.full(len(done), -1, np.int32)
  if "reached_goal" in info:
    reached = np.where(info["_reached_goal"], info["reached_goal"], reached)
  if done.any():
    next_obs = next_obs.copy()
    for i in np.flatnonzero(done):
      next_obs[i] = np.ravel(info["final_obs"][i])
    final = info["final_info"]
    reached = np.where(final["_reached_goal"], final["reached_goal"], reached)
  return next_obs, reached.astype(np.int32)


class HostFunctions(NamedTuple):
  """The jitted device functions of the Python-driven loop (built once, shared by its envs).

  Attributes:
    policy: ``(params, key, obs [E, d], epsilon) -> (key, action [E], planner_action [E])``:
      the vmapped ``act`` with the behaviour policy of ``make_train`` (epsilon-greedy planning
      at the training horizon).
    learn: ``(state, obs, action, reward, terminated, truncated, next_obs, reached_goal,
      do_update) -> state``: ``buffer.add`` of one vectorised step, then (when the static
      ``do_update`` is True) ``updates_per_iteration`` updates; ``state`` is donated so the
      buffer is written in place.
  """

  policy: Callable[..., Any]
  learn: Callable[..., LearnerState]


def make_host_functions(trainer: Trainer) -> HostFunctions:
  """Builds :class:`HostFunctions` for ``trainer``'s configuration."""
  config, agent = trainer.config, trainer.agent
  num_envs, horizon = config.num_envs, agent.config.horizon
  acting_agent = dataclasses.replace(
      agent, config=dataclasses.replace(agent.config, max_horizon=horizon))
  update = make_update(trainer)

  def policy(params, key, obs, epsilon):
    key, key_act = jax.random.split(key)
    plan = jax.vmap(lambda k, o: act(acting_agent, params, k, o, horizon, EPSILON, epsilon))(
        jax.random.split(key_act, num_envs), obs)
    return key, plan.action, plan.planner_action

  def learn(state, obs, action, reward, terminated, truncated, next_obs, reached_goal,
            do_update):
    buffer = replay.add(state.buffer, obs, action, reward, terminated, truncated, next_obs,
                        reached_goal)
    state = state._replace(buffer=buffer)
    if do_update:
      key, key_update = jax.random.split(state.key)
      state = state._replace(key=key)
      for key_u in jax.random.split(key_update, config.updates_per_iteration):
        state = update(state, key_u)
    return state

  return HostFunctions(policy=jax.jit(policy),
                       learn=jax.jit(learn, donate_argnums=0, static_argnames="do_update"))


class HostLoop:
  """The agent trained by a Python loop around a gymnasium vector environment.

  Each iteration: ``functions.policy`` -> ``vec_env.step`` on the host (numpy in and out) ->
  ``functions.learn``.
  """

  def __init__(self, trainer: Trainer, functions: HostFunctions,
               vec_env: gymnasium.vector.VectorEnv, key: jax.Array):
    config, agent = trainer.config, trainer.agent
    self.config, self.functions, self.vec_env = config, functions, vec_env
    num_envs = config.num_envs
    key_params, self.key = jax.random.split(key)
    params = agent.init(key_params)
    action_shape = () if agent.spec.discrete else (agent.spec.action_dim,)
    self.state = LearnerState(
        params=params, target_value=jax.tree.map(jnp.copy, params["value"]),  # own buffers
        opt_states={path: component_optimiser(config, path).init(get_path(params, path))
                    for path in agent.component_paths},
        buffer=replay.init_buffer(config.buffer_steps, num_envs, agent.spec.obs_dim, action_shape,
                                  jnp.int32 if agent.spec.discrete else jnp.float32),
        key=jax.random.fold_in(key, 1))
    obs, _ = vec_env.reset(seed=0)
    self.obs = obs.reshape(num_envs, -1).astype(np.float32)
    self.env_steps = 0
    self.decay_steps = max(1.0, config.epsilon_decay_fraction * config.total_steps)

  def epsilon(self) -> float:
    config = self.config
    if self.env_steps < config.learning_starts:
      return 1.0
    progress = min(self.env_steps / self.decay_steps, 1.0)
    return config.epsilon_start + progress * (config.epsilon_end - config.epsilon_start)

  def run(self, num_env_steps: int, do_update: bool = True) -> int:
    """Runs ``ceil(num_env_steps / E)`` iterations; returns the environment steps taken."""
    num_envs = self.config.num_envs
    iterations = -(-num_env_steps // num_envs)
    for _ in range(iterations):
      self.key, action, planner_action = self.functions.policy(
          self.state.params, self.key, self.obs, np.float32(self.epsilon()))
      obs_next, reward, terminated, truncated, info = self.vec_env.step(np.asarray(action))
      done = np.logical_or(terminated, truncated)
      next_obs, reached_goal = _transition_extras(obs_next, done, info)
      self.state = self.functions.learn(
          self.state, self.obs, planner_action, reward.astype(np.float32), terminated, truncated,
          next_obs, reached_goal, do_update=do_update)
      self.obs = obs_next.reshape(num_envs, -1).astype(np.float32)
      self.env_steps += num_envs
    jax.block_until_ready(self.state)
    return iterations * num_envs


def check_update(total_steps: int = 320) -> tuple[float, float]:
  """Checks :func:`make_update` against the library: largest parameter difference.

  Runs one chunk of ``total_steps`` environment steps twice from the same key: with
  ``trainer.run_chunk``, and with a scan that repeats its iteration (vmapped epsilon-greedy
  ``act``, ``env.step``, ``buffer.add``, then ``updates_per_iteration`` gated updates) using
  :func:`make_update`. Both must give the same parameters.

  Returns:
    ``(difference, movement)``: the largest absolute difference between the two final parameter
    trees, and the largest change of the library's parameters from their initial values (which
    shows that updates happened).
  """
  config = dataclasses.replace(bench_config(total_steps), num_chunks=1)
  trainer = make_train(config)
  agent, env, env_params = trainer.agent, trainer.env, trainer.env_params
  acting_agent = dataclasses.replace(
      agent, config=dataclasses.replace(agent.config, max_horizon=agent.config.horizon))
  update = make_update(trainer)
  num_envs = config.num_envs
  decay_steps = max(1.0, config.epsilon_decay_fraction * config.total_steps)
  batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

  def iteration(state, _):
    key, key_act, key_env, key_update = jax.random.split(state.key, 4)
    progress = jnp.clip(state.env_steps / decay_steps, 0.0, 1.0)
    epsilon = config.epsilon_start + progress * (config.epsilon_end - config.epsilon_start)
    epsilon = jnp.where(state.env_steps < config.learning_starts, 1.0, epsilon)
    plan = jax.vmap(lambda k, o: act(acting_agent, state.params, k, o, agent.config.horizon,
                                     EPSILON, epsilon))(
        jax.random.split(key_act, num_envs), state.obs)
    obs_next, env_state, reward, terminated, truncated, info = batched_step(
        jax.random.split(key_env, num_envs), state.env_state, plan.action, env_params)
    buffer = replay.add(state.buffer, state.obs, plan.planner_action, reward.astype(jnp.float32),
                        terminated, truncated,
                        info["final_observation"].reshape(num_envs, -1).astype(jnp.float32),
                        info["reached_goal"])
    state = state.replace(buffer=buffer, env_state=env_state, key=key,
                          obs=obs_next.reshape(num_envs, -1).astype(jnp.float32),
                          env_steps=state.env_steps + num_envs)
    learning = ((state.env_steps >= config.learning_starts)
                & (buffer.size >= config.sequence_length))
    for key_u in jax.random.split(key_update, config.updates_per_iteration):
      learner = update(LearnerState(state.params, state.target_value, state.opt_states,
                                    state.buffer, state.key), key_u)
      updated = state.replace(params=learner.params, target_value=learner.target_value,
                              opt_states=learner.opt_states)
      state = jax.tree.map(lambda new, old: jnp.where(learning, new, old), updated, state)
    return state, None

  key = jax.random.key(3)
  copied = jax.jit(lambda k: jax.lax.scan(iteration, trainer.init(k), None,
                                          length=config.iterations)[0])(key)
  library = jax.jit(lambda k: trainer.run_chunk(trainer.init(k))[0])(key)
  initial = jax.jit(trainer.init)(key)

  def largest_difference(a, b):
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)))

  return (largest_difference(copied.params, library.params),
          largest_difference(library.params, initial.params))


def bench_host_loop(trainer: Trainer, scanned: Callable, rounds: int, window: int
                    ) -> list[Row]:
  """(a): the scanned run vs Python loops over two gymnasium vector environments.

  Returns:
    Rows: the scanned run, the Python loop over ``make_vec``, over ``SyncVectorEnv``, and (for
    context) the ``make_vec`` loop acting without updates.
  """
  config = trainer.config
  key = jax.random.key(0)
  functions = make_host_functions(trainer)
  runs: list[tuple[Row, Callable[[], int]]] = [(
      Row("jax.jit(trainer.train): whole run in one call"),
      lambda: (jax.block_until_ready(scanned(key)), config.total_steps)[1])]
  loops = []
  for kind, label in (("make_vec", "Python loop, gymnasium.make_vec (vector_entry_point)"),
                      ("sync", "Python loop, SyncVectorEnv of gymnasium.make")):
    loop = HostLoop(trainer, functions, make_gym_env(kind, config.num_envs), key)
    # The random-action phase fills the buffer; one learning iteration follows. The first loop's
    # warm-up compiles the policy and both variants of the learner.
    _, seconds = timed(lambda: (loop.run(config.learning_starts, do_update=False), loop.run(1)))
    row = Row(label, compile_seconds=seconds if not loops else None)
    print(f"  {label}: warm-up {seconds:.1f}s", file=sys.stderr, flush=True)
    loops.append(loop)
    runs.append((row, functools.partial(loop.run, window)))
  runs.append((Row("Python loop, gymnasium.make_vec, acting only (no updates)"),
               functools.partial(loops[0].run, window, do_update=False)))
  for round_index in range(rounds):
    for row, run in runs:
      steps, seconds = timed(run)
      row.record(steps, seconds)
    print(f"  round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
  for loop in loops:
    loop.vec_env.close()
  return [row for row, _ in runs]


# ---------------------------------------------------------------------------------------------
# (b) Seeds: vmap vs sequential
# ---------------------------------------------------------------------------------------------


def bench_seeds(trainer: Trainer, scanned: Callable, num_seeds: int, rounds: int
                ) -> tuple[Row, Row]:
  """(b): ``num_seeds`` seeds in one vmapped call vs as many calls of the single-seed run."""
  keys = jax.random.split(jax.random.key(1), num_seeds)
  vmapped, compile_seconds = timed(lambda: jax.jit(jax.vmap(trainer.train)).lower(keys).compile())
  env_steps = num_seeds * trainer.config.total_steps
  vmapped_row = Row(f"jax.jit(jax.vmap(trainer.train)): {num_seeds} seeds in one call",
                    compile_seconds=compile_seconds)
  sequential_row = Row(f"jax.jit(trainer.train) called {num_seeds} times")
  jax.block_until_ready(vmapped(keys))  # warm-up execution
  for round_index in range(rounds):
    _, seconds = timed(lambda: jax.block_until_ready(vmapped(keys)))
    vmapped_row.record(env_steps, seconds)

    def sequential():
      for key in keys:
        jax.block_until_ready(scanned(key))

    _, seconds = timed(sequential)
    sequential_row.record(env_steps, seconds)
    print(f"  seeds round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
  return vmapped_row, sequential_row


# ---------------------------------------------------------------------------------------------
# (c) Compile time with and without the persistent cache
# ---------------------------------------------------------------------------------------------


def compile_probe(cache_dir: str, total_steps: int) -> dict[str, float]:
  """Run in a fresh process: trace/lower and compile ``jax.jit(trainer.train)`` with the
  persistent compilation cache at ``cache_dir``; returns the times in seconds."""
  from mbrl_drift.runs import enable_compilation_cache

  enable_compilation_cache(cache_dir)
  trainer, build_seconds = timed(lambda: make_train(bench_config(total_steps)))
  lowered, lower_seconds = timed(lambda: jax.jit(trainer.train).lower(jax.random.key(0)))
  compiled, compile_seconds = timed(lowered.compile)
  _, run_seconds = timed(lambda: jax.block_until_ready(compiled(jax.random.key(0))))
  return {"build": build_seconds, "lower": lower_seconds, "compile": compile_seconds,
          "first_run": run_seconds}


def bench_compile(total_steps: int) -> tuple[dict[str, float], dict[str, float]]:
  """(c): the probe in two fresh subprocesses sharing a new cache directory (cold, then warm)."""
  results = []
  with tempfile.TemporaryDirectory(prefix="bench_agent_cache_") as cache_dir:
    for label in ("cold", "warm"):
      command = [sys.executable, os.path.abspath(__file__), "--compile-probe", cache_dir,
                 "--total-steps", str(total_steps)]
      start = time.perf_counter()
      out = subprocess.run(command, check=True, capture_output=True, text=True)
      result = json.loads(out.stdout.strip().splitlines()[-1])
      result["process"] = time.perf_counter() - start
      results.append(result)
      print(f"  compile probe ({label}) done", file=sys.stderr, flush=True)
  return results[0], results[1]


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def format_rows(rows: list[Row], baseline: Row, ratio_label: str) -> str:
  lines = [f"| implementation | env steps timed | env-steps/s | {ratio_label} | compile (s) |",
           "|---|---:|---:|---:|---:|"]
  for row in rows:
    compile_s = f"{row.compile_seconds:.1f}" if row.compile_seconds is not None else "-"
    lines.append(f"| {row.name} | {row.env_steps:,} | {row.steps_per_second:,.0f} | "
                 f"{row.steps_per_second / baseline.steps_per_second:.1f}x | {compile_s} |")
  return "\n".join(lines)


def format_compile(cold: dict[str, float], warm: dict[str, float]) -> str:
  lines = ["| | cold cache | warm cache | cold / warm |", "|---|---:|---:|---:|"]
  for name, label in (("lower", "trace + lower (s)"), ("compile", "XLA compile (s)"),
                      ("first_run", "first run (s)"), ("process", "whole process (s)")):
    lines.append(f"| {label} | {cold[name]:.2f} | {warm[name]:.2f} | "
                 f"{cold[name] / warm[name]:.1f}x |")
  cold_total, warm_total = (r["lower"] + r["compile"] for r in (cold, warm))
  lines.append(f"| trace + lower + compile (s) | {cold_total:.2f} | {warm_total:.2f} | "
               f"{cold_total / warm_total:.1f}x |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--total-steps", type=int, default=2000,
                      help="environment steps per training run (default: 2000; TrainConfig's "
                      "own default is 16000)")
  parser.add_argument("--window", type=int, default=2000,
                      help="environment steps per timed window of the Python loops "
                      "(default: 2000)")
  parser.add_argument("--rounds", type=int, default=3,
                      help="interleaved rounds of (a); each row keeps its fastest (default: 3)")
  parser.add_argument("--seed-rounds", type=int, default=2,
                      help="interleaved rounds of (b) (default: 2)")
  parser.add_argument("--num-seeds", type=int, default=8, help="seeds in (b) (default: 8)")
  parser.add_argument("--skip", nargs="*", default=[], choices=["loop", "seeds", "compile"],
                      help="measurements to leave out")
  parser.add_argument("--check-update", action="store_true",
                      help="only check that the loop's copied update step matches "
                      "mbrl_drift.train (one 320-step chunk both ways; ~1 minute)")
  parser.add_argument("--compile-probe", metavar="CACHE_DIR", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.compile_probe:
    print(json.dumps(compile_probe(args.compile_probe, args.total_steps)))
    return
  if args.check_update:
    difference, movement = check_update()
    print(f"largest parameter difference, copied update vs trainer.run_chunk: {difference:.3g} "
          f"(largest change from the initial parameters: {movement:.3g})")
    if difference != 0.0 or movement == 0.0:
      sys.exit(1)
    return

  config = bench_config(args.total_steps)
  print(machine_description(), flush=True)
  print(f"{ENV_NAME}, TrainConfig() with total_steps={config.total_steps}, learning_starts="
        f"{config.learning_starts}: {config.num_envs} envs, {config.updates_per_iteration} "
        f"updates per iteration of batch {config.batch_size}, {config.agent.planner} planner at "
        f"horizon {config.agent.horizon}", flush=True)
  trainer = make_train(config)
  scanned, compile_seconds = timed(
      lambda: jax.jit(trainer.train).lower(jax.random.key(0)).compile())
  jax.block_until_ready(scanned(jax.random.key(0)))  # warm-up execution
  print(f"  compiled jax.jit(trainer.train) in {compile_seconds:.1f}s", file=sys.stderr,
        flush=True)

  if "loop" not in args.skip:
    rows = bench_host_loop(trainer, scanned, args.rounds, args.window)
    rows[0].compile_seconds = compile_seconds
    print("\n(a) scanned run vs Python-driven loops (compile column of the first loop: its "
          "warm-up, which compiles the policy and the learner)")
    print(format_rows(rows, rows[1], "vs Python loop (make_vec)"))
  if "seeds" not in args.skip:
    vmapped_row, sequential_row = bench_seeds(trainer, scanned, args.num_seeds,
                                              args.seed_rounds)
    sequential_row.compile_seconds = compile_seconds
    print(f"\n(b) {args.num_seeds} seeds")
    print(format_rows([vmapped_row, sequential_row], sequential_row, "vs sequential"))
    print(f"wall time, {args.num_seeds} seeds: vmapped {vmapped_row.best_seconds:.1f}s, "
          f"sequential {sequential_row.best_seconds:.1f}s "
          f"({sequential_row.best_seconds / vmapped_row.best_seconds:.1f}x)")
  if "compile" not in args.skip:
    cold, warm = bench_compile(args.total_steps)
    print("\n(c) jax.jit(trainer.train): fresh process, persistent compilation cache")
    print(format_compile(cold, warm))
  print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
