"""Proximal policy optimisation in one jittable run (purejaxrl style; Lu et al. 2022).

``make_train(config)`` returns a :class:`~mbrl_drift.agents.base.Trainer` whose ``train(key)``
is the whole run: ``num_chunks`` chunks of iterations, each iteration a rollout of
``rollout_steps`` steps in ``num_envs`` auto-resetting environments followed by
``update_epochs`` passes of ``num_minibatches`` minibatch updates, all inside ``lax.scan``, so
``jax.jit(jax.vmap(trainer.train))(keys)`` trains many seeds at once.

Losses (per minibatch of transitions, mean over it):

* actor: the clipped surrogate ``-min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` with
  ``rho = pi(a|s) / pi_old(a|s)`` and advantages normalised per minibatch (Schulman et al. 2017,
  eq. 7), minus ``ent_coef`` times the entropy;
* critic: ``vf_coef * 0.5 * max((V - G)^2, (V_clip - G)^2)`` with
  ``V_clip = V_old + clip(V - V_old, -eps, eps)`` (purejaxrl; plain squared error without
  ``clip_value_loss``), ``G = A + V_old`` the GAE(lambda) return (Schulman et al. 2016);
* fine-tuning from a base (``TrainConfig.init_from``): ``kl_to_base * KL`` to the frozen
  ``base/actor``, computed exactly (categorical: a sum over actions; Gaussian: closed form) at the
  minibatch's states, forward ``KL(pi || pi_base)`` by default (``kl_direction``), and
  ``bc_coef`` times a behaviour-cloning cross-entropy on demonstrations (:func:`bc_anchor`).

Advantages cut at episode ends and bootstrap correctly: after a termination the next value is 0;
after a time-limit truncation it is the critic's value of ``info["final_observation"]``.

Reward faults whose target addresses ``critic`` corrupt the rewards of the critic's returns;
those addressing ``actor`` corrupt the rewards of the actor's advantages; target faults corrupt
the critic's returns. Every fault is gated by ``env_steps`` (the steps taken so far).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mbrl_drift import faults
from mbrl_drift.agents.base import EnvSpec, Params, Trainer, whole_run
from mbrl_drift.agents.policy.agent import ACTOR, BASE_ACTOR, CRITIC, PolicyAgent, build
from mbrl_drift.agents.policy.demonstrators import (Demonstrations, base_run_demonstrator,
                                                    make_demonstrations)
from mbrl_drift.agents.policy.training import Updater, adam, check_freeze, initial_params
from mbrl_drift.faults.training import TrainingHooks

#: Episodes in the running window of ``episode/recent_mean_return``.
RECENT_EPISODES = 100


@struct.dataclass
class TrainState:
  """Everything a PPO run needs to continue exactly where it stopped (one seed).

  Attributes:
    params: agent parameters, one subtree per component.
    opt_states: ``"actor"`` / ``"critic"`` -> optimiser state, plus the fault transforms' states
      under ``"faults/gradient"`` and ``"faults/update"``.
    env_state: ``[E]`` batched environment state.
    obs: ``[E, obs_dim]`` current observations.
    key: PRNG key of the run.
    env_steps: int32 ``[]`` environment steps taken (all parallel environments together).
    running_return: ``[E]`` return so far of each environment's current episode.
    recent_returns: ``[100]`` returns of the last 100 completed episodes (NaN: not yet).
    episodes: int32 ``[]`` episodes completed.
  """

  params: Params
  opt_states: dict[str, Any]
  env_state: Any
  obs: jax.Array
  key: jax.Array
  env_steps: jax.Array
  running_return: jax.Array
  recent_returns: jax.Array
  episodes: jax.Array


class Transition(NamedTuple):
  """One step of the rollout (``[T, E, ...]`` when stacked).

  Attributes:
    obs: ``[obs_dim]`` observation the action was taken in.
    action: int32 ``[]`` or pre-squash ``[d]`` action.
    log_prob: ``log pi_old(a|s)``.
    value: ``V_old(s)``.
    reward: the environment's reward.
    terminated: the episode ended by termination.
    truncated: the episode ended by the time limit (and did not terminate).
    bootstrap_value: ``V_old`` of the observation this transition reached (before auto-reset).
    reached_goal: int32 goal entered (``-1`` none or no goals).
  """

  obs: jax.Array
  action: jax.Array
  log_prob: jax.Array
  value: jax.Array
  reward: jax.Array
  terminated: jax.Array
  truncated: jax.Array
  bootstrap_value: jax.Array
  reached_goal: jax.Array


# ---------------------------------------------------------------------------------------------
# Loss pieces (pure, one sequence or one example; vmap for batches)
# ---------------------------------------------------------------------------------------------


def gae(reward_t: jax.Array, value_t: jax.Array, bootstrap_value_t: jax.Array,
        terminated_t: jax.Array, truncated_t: jax.Array, gamma: float, gae_lambda: float
        ) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimation over one environment's rollout (Schulman et al. 2016).

  ``delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)`` where ``s'_t`` is the state
  transition ``t`` reached (the final observation of an episode that ended; a truncated episode
  is bootstrapped from it, a terminated one is not), and
  ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}`` with ``A_T = 0`` past the rollout.

  Args:
    reward_t: ``[T]`` rewards.
    value_t: ``[T]`` ``V(s_t)``.
    bootstrap_value_t: ``[T]`` ``V(s'_t)``.
    terminated_t: ``[T]`` bool.
    truncated_t: ``[T]`` bool (time limit; ignored where ``terminated_t``).
    gamma: discount.
    gae_lambda: GAE lambda.

  Returns:
    ``(advantages [T], returns [T])`` with ``returns = advantages + value_t``.
  """
  terminated = terminated_t.astype(jnp.float32)
  done = jnp.logical_or(terminated_t, truncated_t).astype(jnp.float32)
  delta = reward_t + gamma * (1.0 - terminated) * bootstrap_value_t - value_t

  def backward(advantage_tp1, inputs):
    delta_t, done_t = inputs
    advantage_t = delta_t + gamma * gae_lambda * (1.0 - done_t) * advantage_tp1
    return advantage_t, advantage_t

  _, advantages = jax.lax.scan(backward, jnp.zeros((), delta.dtype), (delta, done), reverse=True)
  return advantages, advantages + value_t


def clipped_surrogate(ratio: jax.Array, advantage: jax.Array, clip_eps: float) -> jax.Array:
  """PPO's clipped surrogate loss ``-min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` (Schulman et
  al. 2017, eq. 7), elementwise."""
  return -jnp.minimum(ratio * advantage,
                      jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage)


def value_loss(value: jax.Array, old_value: jax.Array, target: jax.Array, clip_eps: float,
               clip: bool = True) -> jax.Array:
  """``0.5 * max((V - G)^2, (V_old + clip(V - V_old, -eps, eps) - G)^2)`` elementwise (plain
  ``0.5 * (V - G)^2`` without ``clip``)."""
  squared = (value - target) ** 2
  if not clip:
    return 0.5 * squared
  clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
  return 0.5 * jnp.maximum(squared, (clipped - target) ** 2)


# ---------------------------------------------------------------------------------------------
# Behaviour-cloning anchor
# ---------------------------------------------------------------------------------------------


def bc_anchor(config: Any, agent: PolicyAgent) -> Demonstrations | None:
  """The demonstrations of the fine-tuning anchor (``bc_coef > 0``), or ``None`` to distil the
  base policy at the visited states instead.

  In order: the run's own ``demonstrator``; the base run's demonstrator, regenerated from its
  stored ``config.json`` (``init_from``) with the base's environment, episodes and seed (the
  same pairs it was cloned from); otherwise ``None``.

  Raises:
    ValueError: ``bc_coef > 0`` with neither a demonstrator nor a base.
  """
  from mbrl_drift.train import make_env

  c = config.agent
  if c.bc_coef == 0:
    return None
  if c.demonstrator.strip():
    env, env_params = make_env(config)
    return make_demonstrations(c.demonstrator_spec, env, env_params, agent.spec,
                               jax.random.key(c.demo_seed), c.demo_episodes, c.gamma)
  if not config.init_from:
    raise ValueError(f"invalid config field bc_coef={c.bc_coef!r}: expected 0 for a run with "
                     f"neither a demonstrator nor init_from (nothing to clone)")
  found = base_run_demonstrator(config.init_from)
  if found is None:
    warnings.warn(f"base run {config.init_from!r} has no readable demonstrator; the "
                  f"behaviour-cloning anchor distils base/actor at the visited states instead")
    return None
  base_config, spec = found
  env, env_params = make_env(base_config)
  base_spec = EnvSpec.from_env(env, env_params)
  if base_spec.obs_dim != agent.spec.obs_dim or base_spec.action_dim != agent.spec.action_dim:
    raise ValueError(f"base run {config.init_from!r} acts in {base_config.env}, whose spaces "
                     f"differ from {config.env}'s")
  return make_demonstrations(spec, env, env_params, agent.spec,
                             jax.random.key(base_config.agent.demo_seed),
                             base_config.agent.demo_episodes, c.gamma)


def demo_nll(agent: PolicyAgent, dist: jax.Array, action: jax.Array) -> jax.Array:
  """Negative log-likelihood of a demonstrated action under one actor output: cross-entropy
  (discrete) or the Gaussian NLL of ``u = atanh(a)`` (continuous, ``a`` in ``[-1, 1]``)."""
  if agent.spec.discrete:
    return -agent.log_prob(dist, action)
  return -agent.log_prob(dist, jnp.arctanh(jnp.clip(action, -0.999, 0.999)))


# ---------------------------------------------------------------------------------------------
# make_train
# ---------------------------------------------------------------------------------------------


def _check_signal_faults(hooks: TrainingHooks) -> None:
  for fault in hooks.reward_faults:
    if not (fault.applies_to(ACTOR) or fault.applies_to(CRITIC)):
      raise ValueError(f"reward fault {fault.name} targets {fault.target!r}, which addresses "
                       f"none of the policy agent's reward consumers ('actor', 'critic')")
  for fault in hooks.target_faults:
    if not fault.applies_to(CRITIC):
      raise ValueError(f"target fault {fault.name} targets {fault.target!r}; the policy agent's "
                       f"value targets belong to 'critic'")


def combined_hooks(config: Any, agent: PolicyAgent, hooks: TrainingHooks) -> TrainingHooks:
  """The config's training faults, the given hooks, then the config's freeze (applied last, so
  nothing moves a frozen component)."""
  return faults.combine_hooks(
      *(faults.parse_training_fault_spec(spec) for spec in config.training_faults), hooks,
      check_freeze(config, agent))


def make_train(config: Any, hooks: TrainingHooks = TrainingHooks()) -> Trainer:
  """Builds the pure functions of one PPO run.

  Args:
    config: the run's :class:`~mbrl_drift.config.TrainConfig` (``agent`` a ``PolicyConfig``).
    hooks: further training-time fault hooks, applied after those of ``config.training_faults``
      (and before ``config.freeze``).

  Returns:
    A :class:`~mbrl_drift.agents.base.Trainer`; ``init(key, params=None)`` starts from fresh
    parameters or from a base run's (one seed), ``run_chunk`` runs ``iterations_per_chunk``
    PPO iterations.

  Raises:
    ValueError: sizes that do not divide, faults that address nothing of this agent.
  """
  from mbrl_drift.train import make_env

  c = config.agent
  env, env_params = make_env(config)
  agent = build(config, EnvSpec.from_env(env, env_params))
  hooks = combined_hooks(config, agent, hooks)
  _check_signal_faults(hooks)

  num_envs, rollout_steps = config.num_envs, c.rollout_steps
  batch_size = num_envs * rollout_steps
  if batch_size % c.num_minibatches:
    raise ValueError(f"invalid config field num_minibatches={c.num_minibatches!r}: expected a "
                     f"divisor of num_envs * rollout_steps = {batch_size}")
  minibatch_size = batch_size // c.num_minibatches
  iterations = config.total_steps // batch_size
  if iterations < config.num_chunks:
    raise ValueError(f"invalid config field total_steps={config.total_steps!r}: expected at "
                     f"least num_envs * rollout_steps * num_chunks = "
                     f"{batch_size * config.num_chunks}")
  iterations_per_chunk = iterations // config.num_chunks
  updates_per_iteration = c.update_epochs * c.num_minibatches
  num_updates = iterations_per_chunk * config.num_chunks * updates_per_iteration
  learning_rate = (optax.linear_schedule(c.lr, 0.0, num_updates) if c.anneal_lr else c.lr)
  updater = Updater(agent, {ACTOR: adam(learning_rate, c.max_grad_norm),
                            CRITIC: adam(learning_rate, c.max_grad_norm)}, hooks, batch_size)
  reward_faults_for = {loss: tuple(f for f in hooks.reward_faults if f.applies_to(loss))
                       for loss in (ACTOR, CRITIC)}
  target_faults = hooks.target_faults
  goal_rewards_available = all(hasattr(env_params, name)
                               for name in ("intended_goal", "goal_reward"))
  num_goals = getattr(env, "num_goals", 0)

  demos = bc_anchor(config, agent)
  distil_base = c.bc_coef > 0 and demos is None
  if distil_base and not agent.has_base:
    raise ValueError(f"invalid config field bc_coef={c.bc_coef!r}: no demonstrations and no base")
  if demos is not None:
    demo_obs, demo_action = jnp.asarray(demos.obs), jnp.asarray(demos.action)
    demo_batch = min(c.bc_batch_size, demos.size)

  batched_reset = jax.vmap(env.reset, in_axes=(0, None))
  batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
  actor_outputs = jax.vmap(agent.actor_output, in_axes=(None, 0, None))
  values = jax.vmap(agent.value, in_axes=(None, 0))

  # -- initialisation -------------------------------------------------------------------------

  def init(key: jax.Array, params: Params | None = None) -> TrainState:
    key, key_params, key_reset = jax.random.split(key, 3)
    params = initial_params(agent, key_params, params)
    obs, env_state = batched_reset(jax.random.split(key_reset, num_envs), env_params)
    return TrainState(
        params=params, opt_states=updater.init(params), env_state=env_state,
        obs=obs.reshape(num_envs, -1).astype(jnp.float32), key=key, env_steps=jnp.int32(0),
        running_return=jnp.zeros((num_envs,)),
        recent_returns=jnp.full((RECENT_EPISODES,), jnp.nan), episodes=jnp.int32(0))

  # -- rollout ----------------------------------------------------------------------------------

  def env_step(state: TrainState, key: jax.Array):
    key_act, key_env = jax.random.split(key)
    dist = actor_outputs(state.params, state.obs, ACTOR)
    action, env_action, log_prob, nonfinite = jax.vmap(agent.sample)(
        jax.random.split(key_act, num_envs), dist)
    obs_next, env_state, reward, terminated, truncated, info = batched_step(
        jax.random.split(key_env, num_envs), state.env_state, env_action, env_params)
    obs_next = obs_next.reshape(num_envs, -1).astype(jnp.float32)
    final_obs = info["final_observation"].reshape(num_envs, -1).astype(jnp.float32)
    # One critic call for V(s_t) and V(s'_t) (the final observation, before any auto-reset).
    value, bootstrap_value = jnp.split(
        values(state.params, jnp.concatenate([state.obs, final_obs])), 2)
    reward = reward.astype(jnp.float32)
    done = jnp.logical_or(terminated, truncated)
    episode_return = state.running_return + reward
    # The returns of finished episodes go into the window in environment order.
    slots = jnp.where(done, (state.episodes + jnp.cumsum(done) - 1) % RECENT_EPISODES,
                      RECENT_EPISODES)
    recent = state.recent_returns.at[slots].set(episode_return, mode="drop")
    transition = Transition(
        obs=state.obs, action=action, log_prob=log_prob, value=value, reward=reward,
        terminated=terminated, truncated=truncated & ~terminated,
        bootstrap_value=bootstrap_value,
        reached_goal=info.get("reached_goal", jnp.full((num_envs,), -1, jnp.int32)))
    state = state.replace(
        env_state=env_state, obs=obs_next, running_return=jnp.where(done, 0.0, episode_return),
        recent_returns=recent, episodes=state.episodes + jnp.sum(done).astype(jnp.int32))
    stats = (jnp.sum(jnp.where(done, episode_return, 0.0)), jnp.sum(done).astype(jnp.float32),
             jnp.sum(nonfinite).astype(jnp.float32))
    return state, (transition, stats)

  # -- advantages -------------------------------------------------------------------------------

  def corrupt_rewards(key: jax.Array, env_steps: jax.Array, traj: Transition, loss: str):
    rewards = traj.reward
    goal_rewards = None
    if goal_rewards_available and num_goals:
      reached = traj.reached_goal
      intended = jax.nn.one_hot(env_params.intended_goal, num_goals)
      goal_rewards = rewards[..., None] + env_params.goal_reward * (
          jax.nn.one_hot(reached, num_goals) - (reached >= 0)[..., None] * intended)
    for key_fault, fault in zip(jax.random.split(key, max(1, len(reward_faults_for[loss]))),
                                reward_faults_for[loss]):
      rewards = fault(key_fault, env_steps, rewards,
                      goal_rewards if fault.kind == "swap" else None)
    return rewards

  batched_gae = jax.vmap(lambda r, v, b, te, tr: gae(r, v, b, te, tr, c.gamma, c.gae_lambda),
                         in_axes=1, out_axes=1)

  def advantages_and_returns(key: jax.Array, env_steps: jax.Array, traj: Transition):
    key_actor, key_critic, key_target = jax.random.split(key, 3)
    reward_actor = corrupt_rewards(key_actor, env_steps, traj, ACTOR)
    advantages, returns = batched_gae(reward_actor, traj.value, traj.bootstrap_value,
                                      traj.terminated, traj.truncated)
    if reward_faults_for[CRITIC] != reward_faults_for[ACTOR]:
      reward_critic = corrupt_rewards(key_critic, env_steps, traj, CRITIC)
      _, returns = batched_gae(reward_critic, traj.value, traj.bootstrap_value,
                               traj.terminated, traj.truncated)
    for key_fault, fault in zip(jax.random.split(key_target, max(1, len(target_faults))),
                                target_faults):
      returns = fault(key_fault, env_steps, returns)
    return advantages, returns

  # -- losses -----------------------------------------------------------------------------------

  def loss_fn(params: Params, batch: dict[str, jax.Array], key: jax.Array):
    dist = actor_outputs(params, batch["obs"], ACTOR)
    log_prob = jax.vmap(agent.log_prob)(dist, batch["action"])
    log_ratio = log_prob - batch["log_prob"]
    ratio = jnp.exp(log_ratio)
    advantage = batch["advantage"]
    advantage = (advantage - jnp.mean(advantage)) / (jnp.std(advantage) + 1e-8)
    actor_loss = jnp.mean(clipped_surrogate(ratio, advantage, c.clip_eps))
    entropy = jnp.mean(jax.vmap(agent.entropy)(dist))
    value = values(params, batch["obs"])
    critic_loss = jnp.mean(value_loss(value, batch["value"], batch["return"], c.clip_eps,
                                      c.clip_value_loss))
    total = actor_loss - c.ent_coef * entropy + c.vf_coef * critic_loss
    metrics = {
        "loss/actor": actor_loss, "loss/critic": critic_loss, "loss/entropy": entropy,
        "train/approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "train/clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > c.clip_eps).astype(jnp.float32)),
    }
    if agent.has_base:
      base_dist = jax.lax.stop_gradient(actor_outputs(params, batch["obs"], BASE_ACTOR))
      forward = jnp.mean(jax.vmap(agent.kl)(dist, base_dist))
      reverse = jnp.mean(jax.vmap(agent.kl)(base_dist, dist))
      metrics["kl/to_base"] = forward
      metrics["kl/base_to_policy"] = reverse
      if c.kl_to_base > 0:
        total += c.kl_to_base * (forward if c.kl_direction == "forward" else reverse)
    if demos is not None:
      index = jax.random.randint(key, (demo_batch,), 0, demos.size)
      demo_dist = actor_outputs(params, demo_obs[index], ACTOR)
      bc_loss = jnp.mean(jax.vmap(lambda d, a: demo_nll(agent, d, a))(demo_dist,
                                                                     demo_action[index]))
      metrics["loss/bc"] = bc_loss
      total += c.bc_coef * bc_loss
    elif distil_base:
      # Cross-entropy H(pi_base, pi) = KL(pi_base || pi) + H(pi_base) at the visited states.
      bc_loss = reverse + jnp.mean(jax.vmap(agent.entropy)(base_dist))
      metrics["loss/bc"] = bc_loss
      total += c.bc_coef * bc_loss
    return total, metrics

  # -- one iteration: rollout, advantages, epochs of minibatch updates --------------------------

  def iteration(state: TrainState, _):
    key, key_rollout, key_adv, key_epochs = jax.random.split(state.key, 4)
    state, (traj, (return_sum, count, nonfinite)) = jax.lax.scan(
        env_step, state.replace(key=key), jax.random.split(key_rollout, rollout_steps))
    env_steps = state.env_steps + batch_size
    advantages, returns = advantages_and_returns(key_adv, env_steps, traj)
    data = {"obs": traj.obs, "action": traj.action, "log_prob": traj.log_prob,
            "value": traj.value, "advantage": advantages, "return": returns}
    data = jax.tree.map(lambda x: x.reshape(batch_size, *x.shape[2:]), data)

    def minibatch_update(carry, inputs):
      params, opt_states = carry
      batch, key_loss, index = inputs
      grads, metrics = jax.grad(loss_fn, has_aux=True)(params, batch, key_loss)
      reset_step = jnp.where(index == 0, env_steps, -1)
      params, opt_states = updater.update(params, grads, opt_states, env_steps, reset_step)
      metrics["grad_norm/total"] = optax.tree.norm(grads)
      return (params, opt_states), metrics

    def epoch(carry, inputs):
      key_epoch, epoch_index = inputs
      key_perm, key_losses = jax.random.split(key_epoch)
      permutation = jax.random.permutation(key_perm, batch_size)
      minibatches = jax.tree.map(
          lambda x: x[permutation].reshape(c.num_minibatches, minibatch_size, *x.shape[1:]),
          data)
      indices = epoch_index * c.num_minibatches + jnp.arange(c.num_minibatches)
      return jax.lax.scan(minibatch_update, carry,
                          (minibatches, jax.random.split(key_losses, c.num_minibatches),
                           indices))

    (params, opt_states), metrics = jax.lax.scan(
        epoch, (state.params, state.opt_states),
        (jax.random.split(key_epochs, c.update_epochs), jnp.arange(c.update_epochs)))
    state = state.replace(params=params, opt_states=opt_states, env_steps=env_steps)
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics.update({"episode/return_sum": jnp.sum(return_sum), "episode/count": jnp.sum(count),
                    "train/nonfinite_actions": jnp.sum(nonfinite)})
    return state, metrics

  def run_chunk(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
    state, metrics = jax.lax.scan(iteration, state, None, length=iterations_per_chunk)
    count = jnp.sum(metrics.pop("episode/count"))
    return_sum = jnp.sum(metrics.pop("episode/return_sum"))
    nonfinite = jnp.sum(metrics.pop("train/nonfinite_actions"))
    summary = {name: jnp.mean(value) for name, value in metrics.items()}
    recent_count = jnp.sum(jnp.isfinite(state.recent_returns))
    summary.update({
        "episode/mean_return": jnp.where(count > 0, return_sum / jnp.maximum(count, 1.0),
                                         jnp.nan),
        "episode/completed": count,
        "episode/recent_mean_return": jnp.where(
            recent_count > 0,
            jnp.sum(jnp.nan_to_num(state.recent_returns)) / jnp.maximum(recent_count, 1),
            jnp.nan),
        "train/env_steps": state.env_steps.astype(jnp.float32),
        "train/nonfinite_actions": nonfinite,
    })
    return state, summary

  return Trainer(config=config, agent=agent, env=env, env_params=env_params, init=init,
                 run_chunk=run_chunk, train=whole_run(init, run_chunk, config.num_chunks), iterations_per_chunk=iterations_per_chunk)


__all__ = ["TrainState", "Transition", "bc_anchor", "clipped_surrogate", "gae", "make_train",
           "value_loss"]
