"""Evaluation of a (possibly faulted) agent of any kind: episodes in, :class:`Trajectories` out.

``evaluate`` is pure and vmappable over ``params``, ``key`` and the evaluation arguments, so
every (fault x severity x seed x depth x selection) condition of a sweep can run in one compiled
call. It uses only the agent interface (:meth:`mbrl_drift.agents.base.Agent.act`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

import envs
from mbrl_drift.agents.base import Agent, EvalArgs, Params, eval_args
from mbrl_drift.trajectories import Trajectories


def episode_limit(env_params: Any) -> int:
  """The (static) time limit of an environment's episodes, read on the host."""
  return int(env_params.max_steps)


def evaluate(agent: Agent, params: Params, env: envs.Environment, env_params: Any,
             key: jax.Array, num_episodes: int, args: EvalArgs | None = None,
             max_steps: int | None = None, record_obs: bool = True) -> Trajectories:
  """Runs ``num_episodes`` independent episodes of an agent's evaluation policy.

  Each episode starts from ``env.reset`` (random starts where the env params ask for them) and
  runs until it ends or ``max_steps`` steps pass; later steps are padding.

  Args:
    agent: the agent (static).
    params: its parameters (may be faulted).
    env: the environment (static).
    env_params: its parameters (traced; vmappable).
    key: PRNG key.
    num_episodes: ``N``, static.
    args: :class:`~mbrl_drift.agents.base.EvalArgs` (traced): depth, selection rule, epsilon,
      temperature. Default: the agent's training depth and its first (greedy) selection.
    max_steps: ``T``, static episode cap; ``env_params.max_steps`` when ``None`` (which then
      must be concrete).
    record_obs: keep every observation; when False ``obs`` holds the first one only,
      ``[N, 1, obs_dim]`` (large sweeps need only states, actions and outcomes).

  Returns:
    :class:`Trajectories` with ``N`` episodes of ``T`` steps.
  """
  if args is None:
    args = eval_args(depth=agent.eval_axes.depth_default)
  if max_steps is None:
    max_steps = episode_limit(env_params)

  def policy(key_act: jax.Array, obs: jax.Array, state: Any) -> tuple[jax.Array, jax.Array]:
    del state
    out = agent.act(params, key_act, obs, args)
    return out.action, out.nonfinite

  return run_episodes(key, env, env_params, policy, num_episodes, max_steps, record_obs)


def run_episodes(key: jax.Array, env: envs.Environment, env_params: Any,
                 policy: Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, jax.Array]],
                 num_episodes: int, max_steps: int, record_obs: bool = True) -> Trajectories:
  """Runs ``num_episodes`` independent episodes of any policy function (not jitted itself).

  Each episode starts from ``env.reset`` and steps without auto-reset until it terminates or
  truncates; later steps are padding (state, observation and position repeat, action and
  reward are zero). Vmapped over episodes, ``lax.scan`` over steps.

  Args:
    key: PRNG key.
    env: the environment; ``state_index(state)`` and ``position(state)`` are recorded when it
      has them (``-1`` and zeros otherwise).
    env_params: its parameters.
    policy: ``policy(key, obs [obs_dim], state) -> (action, nonfinite [] bool)``.
    num_episodes: ``N``, static.
    max_steps: ``T``, static number of scanned steps.
    record_obs: keep every observation (else only the first, ``[N, 1, obs_dim]``).

  Returns:
    :class:`Trajectories` with ``N`` episodes of ``T`` steps.
  """
  has_state_index = hasattr(env, "state_index")
  has_position = hasattr(env, "position")

  def describe(state):
    index = env.state_index(state) if has_state_index else jnp.int32(-1)
    position = (env.position(state).astype(jnp.float32) if has_position
                else jnp.zeros((2,), jnp.float32))
    return jnp.asarray(index, jnp.int32), position

  def episode(key_episode: jax.Array) -> Trajectories:
    key_reset, key_run = jax.random.split(key_episode)
    obs_0, state_0 = env.reset(key_reset, env_params)
    obs_0 = jnp.ravel(obs_0).astype(jnp.float32)
    index_0, position_0 = describe(state_0)

    def step(carry, key_t):
      state, obs, done, reached_goal, terminated_any, nonfinite = carry
      key_action, key_env = jax.random.split(key_t)
      action, bad = policy(key_action, obs, state)
      obs_next, state_next, reward, terminated, truncated, info = env.step_env(
          key_env, state, action, env_params)
      obs_next = jnp.ravel(obs_next).astype(jnp.float32)
      valid = ~done
      goal = info.get("reached_goal", jnp.int32(-1))
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, old)
      state_next = keep(state_next, state)
      obs_next = jnp.where(valid, obs_next, obs)
      index, position = describe(state_next)
      carry = (state_next, obs_next, done | terminated | truncated,
               jnp.where(valid & (goal >= 0), goal, reached_goal),
               terminated_any | (valid & terminated),
               nonfinite | (valid & bad))
      outputs = (obs_next, jnp.where(valid, action, jnp.zeros_like(action)),
                 jnp.where(valid, reward, 0.0).astype(jnp.float32), valid, index, position)
      return carry, outputs

    init = (state_0, obs_0, jnp.bool_(False), jnp.int32(-1), jnp.bool_(False), jnp.bool_(False))
    (_, _, _, reached_goal, terminated, nonfinite), outputs = jax.lax.scan(
        step, init, jax.random.split(key_run, max_steps))
    obs, action, reward, valid, index, position = outputs
    obs = jnp.concatenate([obs_0[None], obs])
    return Trajectories(
        obs=obs if record_obs else obs[:1],
        action=action,
        reward=reward,
        valid=valid,
        length=jnp.sum(valid).astype(jnp.int32),
        episode_return=jnp.sum(reward),
        terminated=terminated,
        reached_goal=reached_goal,
        state_index=jnp.concatenate([index_0[None], index]),
        position=jnp.concatenate([position_0[None], position]),
        nonfinite=nonfinite,
    )

  return jax.vmap(episode)(jax.random.split(key, num_episodes))


def outcome_summary(trajectories: Trajectories, intended_goal: int | jax.Array,
                    num_goals: int = 0) -> dict[str, jax.Array]:
  """Headline outcomes of a batch of episodes (leading batch axes allowed).

  Returns:
    Flat dict: ``outcome/intended_success``, ``outcome/reach_goal_<k>`` for each goal,
    ``outcome/timeout`` (no goal reached), ``outcome/mean_return``, ``outcome/mean_length`` and
    ``outcome/nonfinite`` (share of episodes with a non-finite plan).
  """
  reached = trajectories.reached_goal
  summary = {
      "outcome/intended_success": jnp.mean(reached == intended_goal, axis=-1),
      "outcome/timeout": jnp.mean(reached < 0, axis=-1),
      "outcome/mean_return": jnp.mean(trajectories.episode_return, axis=-1),
      "outcome/mean_length": jnp.mean(trajectories.length.astype(jnp.float32), axis=-1),
      "outcome/nonfinite": jnp.mean(trajectories.nonfinite, axis=-1),
  }
  for k in range(num_goals):
    summary[f"outcome/reach_goal_{k}"] = jnp.mean(reached == k, axis=-1)
  return summary
