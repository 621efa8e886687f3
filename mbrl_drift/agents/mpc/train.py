"""Joint training of the planner's world model and value function in one jittable run.

``make_train(config)`` returns a :class:`Trainer` whose ``train(key)`` performs the whole run
(environment steps, replay, updates, target network) inside ``lax.scan``, so
``jax.jit(jax.vmap(trainer.train))(keys)`` trains many seeds in one call (purejaxrl style,
Lu et al. 2022). The host sees chunk boundaries only through ``init`` + ``run_chunk``, which the
CLI uses for progress, evaluation and checkpoints.

Losses (per sampled sequence of ``U + n`` real transitions, weights ``rho^k``, masked after an
episode ends; Hansen et al. 2022, TD-MPC):

* latent consistency ``|| d(z_k, a_k) - sg(enc(o_{k+1})) ||^2`` along a ``U``-step model unroll,
* reward ``(r(z_k, a_k) - r_k)^2`` and termination cross-entropy along the unroll,
* optional reconstruction ``|| dec(z_k) - o_k ||^2``,
* value ``(V(z_k) - G_k)^2`` on the unrolled latents with n-step targets
  ``G_k = sum_{i<n} gamma^i r_{k+i} + gamma^n V_target(enc(o_{k+n}))`` (no bootstrap after a
  termination, bootstrap from the final observation after a time-limit truncation).

Each component has its own optimiser state; by default the value loss does not train the world
model (``AgentConfig.value_gradients_to_encoder``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

import envs
from mbrl_drift import buffer as replay
from mbrl_drift import faults
from mbrl_drift.agents.base import EnvSpec, Params, Trainer, get_path, set_path, whole_run
from mbrl_drift.agents.mpc.agent import PlannerAgent
from mbrl_drift.agents.mpc.planner import EPSILON, GREEDY, act
from mbrl_drift.config import TrainConfig
from mbrl_drift.faults.training import TrainingHooks
from mbrl_drift.train import make_env

class HeldExploration(NamedTuple):
  """Per-environment state of temporally-extended epsilon-greedy exploration.

  Attributes:
    action: ``[E]`` int32 or ``[E, d]`` float32 planner-space random action being repeated.
    steps_left: ``[E]`` int32 further steps it is held for (0: the planner acts).
  """

  action: jax.Array
  steps_left: jax.Array


@struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly where it stopped (one seed).

  Attributes:
    params: agent parameters, one subtree per component.
    target_value: Polyak-averaged copy of ``params["value"]``.
    opt_states: component path -> optimiser state (plus the states of gradient and update
      fault transforms under ``"faults/gradient"`` and ``"faults/update"``).
    buffer: replay buffer.
    env_state: ``[E]`` batched environment state.
    obs: ``[E, obs_dim]`` current observations.
    key: PRNG key of the run.
    env_steps: int32 ``[]`` environment steps taken (all parallel environments together).
    running_return: ``[E]`` return of each environment's current episode.
    exploration: :class:`HeldExploration` when ``config.exploration_repeat > 1``, else ``None``.
  """

  params: Params
  target_value: Params
  opt_states: dict[str, Any]
  buffer: replay.ReplayBuffer
  env_state: Any
  obs: jax.Array
  key: jax.Array
  env_steps: jax.Array
  running_return: jax.Array
  exploration: HeldExploration | None = None


# Keys of the fault transforms' states in ``TrainState.opt_states``.
GRADIENT_FAULTS, UPDATE_FAULTS = "faults/gradient", "faults/update"


def make_agent(config: TrainConfig, env: envs.Environment, env_params: Any) -> PlannerAgent:
  return PlannerAgent(config=config.agent, spec=EnvSpec.from_env(env, env_params))


def component_optimiser(config: TrainConfig, path: str) -> optax.GradientTransformation:
  """The optimiser of one component: Adam at its group's learning rate after global-norm
  clipping of that component's gradients. The rate decays linearly to
  ``config.final_lr_fraction`` of itself over ``config.learning_updates`` updates."""
  if path.startswith("world_model/"):
    learning_rate = config.world_model_lr
  elif path == "actor":
    learning_rate = config.actor_lr
  else:
    learning_rate = config.value_lr
  if config.final_lr_fraction != 1.0:
    learning_rate = optax.linear_schedule(learning_rate, learning_rate * config.final_lr_fraction,
                                          config.learning_updates)
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate))


def n_step_targets(reward: jax.Array, terminated: jax.Array, truncated: jax.Array,
                   bootstrap_value: jax.Array, n_step: int, gamma: float, num_targets: int
                   ) -> jax.Array:
  """n-step return targets from the first ``num_targets`` positions of a sequence.

  Args:
    reward: ``[S]`` rewards ``r_t``.
    terminated: ``[S]`` bool, transition ``t`` ended the episode by termination.
    truncated: ``[S]`` bool, transition ``t`` ended the episode by the time limit.
    bootstrap_value: ``[S]`` value of the observation reached by transition ``t``.
    n_step: steps before bootstrapping.
    gamma: discount.
    num_targets: positions ``k = 0 .. num_targets - 1``; needs ``S >= num_targets - 1 + n_step``.

  Returns:
    ``[num_targets]`` targets ``G_k`` (Sutton & Barto 2018, eq. 7.1, cut at episode ends).
  """
  done = jnp.logical_or(terminated, truncated).astype(jnp.float32)
  # A step that both terminates and hits the time limit (gymnasium's convention) is terminal.
  cut_by_time_limit = jnp.logical_and(truncated, ~terminated).astype(jnp.float32)
  targets = jnp.zeros((num_targets,))
  alive = jnp.ones((num_targets,))
  for i in range(n_step):
    index = jnp.arange(num_targets) + i
    last = float(i == n_step - 1)
    bootstrap_weight = cut_by_time_limit[index] + (1.0 - done[index]) * last
    targets += alive * gamma**i * (reward[index] + gamma * bootstrap_weight * bootstrap_value[index])
    alive = alive * (1.0 - done[index])
  return targets


def make_train(config: TrainConfig, hooks: TrainingHooks = TrainingHooks()) -> Trainer:
  """Builds the pure functions of one training run.

  Args:
    config: the run's configuration; its ``training_faults`` specs are parsed into hooks.
    hooks: further training-time fault hooks (identity by default), applied after those of
      ``config.training_faults``.

  Returns:
    A :class:`Trainer`; ``jax.jit(jax.vmap(trainer.train))(keys)`` trains one seed per key.
  """
  hooks = faults.combine_hooks(
      *(faults.parse_training_fault_spec(spec) for spec in config.training_faults), hooks)
  env, env_params = make_env(config)
  agent = make_agent(config, env, env_params)
  agent_config = agent.config
  paths = agent.component_paths
  resets = {path: (step, severity) for path, step, severity in hooks.optimizer_resets}
  unknown = set(resets) - set(paths)
  if unknown:
    raise ValueError(f"optimizer_resets name unknown component(s) {sorted(unknown)}; "
                     f"components are {list(paths)}")
  optimisers = {}
  for path in paths:
    optimiser = optax.with_extra_args_support(component_optimiser(config, path))
    if path in resets:
      step, severity = resets[path]
      optimiser = faults.reset_optimizer_state(optimiser, start_step=step, severity=severity)
    optimisers[path] = optimiser
  gradient_faults = optax.chain(optax.identity(), *hooks.gradient_transforms)
  update_faults = optax.chain(optax.identity(), *hooks.update_transforms)
  reward_faults_for = {
      loss: tuple(f for f in hooks.reward_faults if f.applies_to(loss))
      for loss in ("world_model/reward", "value")}
  goal_rewards_available = all(hasattr(env_params, name)
                               for name in ("intended_goal", "goal_reward"))
  num_goals = getattr(env, "num_goals", 0)

  # Acting during training plans at the training horizon only: the exhaustive tree is built to
  # max_horizon, which exists for evaluation-time horizon sweeps and would multiply the cost.
  acting_agent = agent.with_max_horizon(agent_config.horizon)
  num_envs = config.num_envs
  unroll, n_step, gamma = config.unroll_steps, config.n_step, agent_config.gamma
  sequence_length = config.sequence_length
  iterations_per_chunk = config.iterations // config.num_chunks
  decay_steps = max(1.0, config.epsilon_decay_fraction * config.total_steps)
  batched_reset = jax.vmap(env.reset, in_axes=(0, None))
  batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

  # -- initialisation -------------------------------------------------------------------------

  def init(key: jax.Array, params: Params | None = None) -> TrainState:
    key, key_params, key_reset = jax.random.split(key, 3)
    if params is None:
      params = agent.init(key_params)
    obs, env_state = batched_reset(jax.random.split(key_reset, num_envs), env_params)
    action_shape = () if agent.spec.discrete else (agent.spec.action_dim,)
    action_dtype = jnp.int32 if agent.spec.discrete else jnp.float32
    return TrainState(
        params=params,
        target_value=params["value"],
        opt_states={
            **{path: optimisers[path].init(get_path(params, path)) for path in paths},
            GRADIENT_FAULTS: gradient_faults.init(params),
            UPDATE_FAULTS: update_faults.init(params),
        },
        buffer=replay.init_buffer(config.buffer_steps, num_envs, agent.spec.obs_dim,
                                  action_shape, action_dtype),
        env_state=env_state,
        obs=obs.reshape(num_envs, -1).astype(jnp.float32),
        key=key,
        env_steps=jnp.int32(0),
        running_return=jnp.zeros((num_envs,)),
        exploration=(HeldExploration(action=jnp.zeros((num_envs, *action_shape), action_dtype),
                                     steps_left=jnp.zeros((num_envs,), jnp.int32))
                     if config.exploration_repeat > 1 else None),
    )

  # -- losses ---------------------------------------------------------------------------------

  rho_powers = config.rho ** jnp.arange(unroll, dtype=jnp.float32)

  def sequence_loss(params: Params, target_value: Params, sequence: dict[str, jax.Array],
                    key: jax.Array, env_steps: jax.Array
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss of one sequence ``[S, ...]``."""
    obs, next_obs = sequence["obs"], sequence["next_obs"]
    reward, terminated, truncated = (sequence["reward"], sequence["terminated"],
                                     sequence["truncated"])
    value_reward = sequence["value_reward"]
    done = jnp.logical_or(terminated, truncated).astype(jnp.float32)
    # mask[k]: transition k belongs to the episode the sequence starts in.
    mask = jnp.concatenate([jnp.ones((1,)), jnp.cumprod(1.0 - done)[:-1]])
    weight = rho_powers * mask[:unroll]
    action_inputs = jax.vmap(agent.action_input)(sequence["action"][:unroll])

    encode = jax.vmap(lambda o: agent.encode(params, o))
    # Latents of every next observation: consistency targets (first U) and bootstrap latents.
    next_latents = jax.lax.stop_gradient(encode(next_obs))
    next_latent_target = next_latents[:unroll]

    def unroll_step(z_k, inputs):
      action_input_k = inputs
      z_kp1, reward_k, termination_logit_k = agent.transition(params, z_k, action_input_k)
      return z_kp1, (z_k, z_kp1, reward_k, termination_logit_k)

    z_0 = agent.encode(params, obs[0])
    _, (z_unrolled, z_predicted, reward_pred, termination_logit) = jax.lax.scan(
        unroll_step, z_0, action_inputs)
    consistency = jnp.mean((z_predicted - next_latent_target) ** 2, axis=-1)
    reward_error = (reward_pred - reward[:unroll]) ** 2
    termination_error = optax.sigmoid_binary_cross_entropy(
        termination_logit, terminated[:unroll].astype(jnp.float32))
    losses = {
        "consistency": jnp.sum(weight * consistency),
        "reward": jnp.sum(weight * reward_error),
        "termination": jnp.sum(weight * termination_error),
    }
    total = (config.consistency_coef * losses["consistency"]
             + config.reward_coef * losses["reward"]
             + config.termination_coef * losses["termination"])
    if agent_config.use_decoder:
      reconstruction = jax.vmap(lambda z: agent.decode(params, z))(z_unrolled)
      losses["decoder"] = jnp.sum(weight * jnp.mean((reconstruction - obs[:unroll]) ** 2, -1))
      total += config.decoder_coef * losses["decoder"]

    # Value: n-step targets on the unrolled latents z_0 .. z_U.
    bootstrap_value = jax.vmap(lambda z: agent.value({"value": target_value}, z))(next_latents)
    targets = n_step_targets(value_reward, terminated, truncated, bootstrap_value, n_step, gamma,
                             unroll + 1)
    for key_fault, fault in zip(jax.random.split(key, max(1, len(hooks.target_faults))),
                                hooks.target_faults):
      targets = fault(key_fault, env_steps, targets)
    latents = jnp.concatenate([z_0[None], z_predicted])
    if not agent_config.value_gradients_to_encoder:
      latents = jax.lax.stop_gradient(latents)
    value_pred = jax.vmap(lambda z: agent.value(params, z))(latents)
    value_weight = jnp.concatenate([jnp.ones((1,)), rho_powers]) * mask[:unroll + 1]
    losses["value"] = jnp.sum(value_weight * (value_pred - targets) ** 2)
    total += config.value_coef * losses["value"]

    if agent_config.use_actor:
      actor_latent = jax.lax.stop_gradient(encode(obs[:unroll]))
      actor_out = jax.vmap(lambda z: agent.actor_output(params, z))(actor_latent)
      if agent.spec.discrete:
        actor_error = optax.softmax_cross_entropy_with_integer_labels(
            actor_out, sequence["action"][:unroll])
      else:
        actor_error = jnp.mean((actor_out - sequence["action"][:unroll]) ** 2, -1)
      losses["actor"] = jnp.sum(weight * actor_error)
      total += losses["actor"]
    return total, {f"loss/{name}": value for name, value in losses.items()}

  def corrupt_rewards(key, env_steps, batch, loss):
    rewards = batch["reward"]
    if not reward_faults_for[loss]:
      return rewards
    goal_rewards = None
    if goal_rewards_available:  # what each goal's reward would have been for these transitions
      reached = batch["reached_goal"]
      intended = jax.nn.one_hot(env_params.intended_goal, num_goals)
      goal_rewards = rewards[..., None] + env_params.goal_reward * (
          jax.nn.one_hot(reached, num_goals) - (reached >= 0)[..., None] * intended)
    for key_fault, fault in zip(jax.random.split(key, len(reward_faults_for[loss])),
                                reward_faults_for[loss]):
      rewards = fault(key_fault, env_steps, rewards,
                      goal_rewards if fault.kind == "swap" else None)
    return rewards

  def batch_loss(params, target_value, batch, key, env_steps):
    key_model, key_value, key_target = jax.random.split(key, 3)
    batch = {**batch,
             "reward": corrupt_rewards(key_model, env_steps, batch, "world_model/reward"),
             "value_reward": corrupt_rewards(key_value, env_steps, batch, "value")}
    keys = jax.random.split(key_target, config.batch_size)
    losses, metrics = jax.vmap(sequence_loss, in_axes=(None, None, 0, 0, None))(
        params, target_value, batch, keys, env_steps)
    return jnp.mean(losses), jax.tree.map(jnp.mean, metrics)

  def update(state: TrainState, key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    key_sample, key_loss = jax.random.split(key)
    batch = replay.sample_sequences(state.buffer, key_sample, config.batch_size, sequence_length)
    grads, metrics = jax.grad(batch_loss, has_aux=True)(
        state.params, state.target_value, batch, key_loss, state.env_steps)
    steps = state.env_steps
    opt_states = dict(state.opt_states)
    grads, opt_states[GRADIENT_FAULTS] = gradient_faults.update(
        grads, opt_states[GRADIENT_FAULTS], state.params, step=steps)
    updates = {}
    for path in paths:
      component_updates, opt_states[path] = optimisers[path].update(
          get_path(grads, path), opt_states[path], get_path(state.params, path), step=steps)
      updates = set_path(updates, path, component_updates)
    updates, opt_states[UPDATE_FAULTS] = update_faults.update(
        updates, opt_states[UPDATE_FAULTS], state.params, step=steps)
    params = optax.apply_updates(state.params, updates)
    target_value = optax.incremental_update(params["value"], state.target_value,
                                            config.target_tau)
    metrics["grad_norm/total"] = optax.tree.norm(grads)
    return state.replace(params=params, opt_states=opt_states, target_value=target_value), metrics

  # -- behaviour policy -----------------------------------------------------------------------

  def held_exploration_actions(key: jax.Array, exploration: HeldExploration,
                               planner_action: jax.Array, epsilon: jax.Array
                               ) -> tuple[jax.Array, HeldExploration]:
    """Temporally-extended epsilon-greedy (Dabney et al. 2021, fixed duration).

    An environment whose held action has run out starts, with probability ``epsilon``, a
    uniformly random action that it then repeats for ``exploration_repeat`` steps; otherwise it
    takes the planner's action.

    Returns:
      ``(planner-space actions [E(, d)], exploration state after this step)``.
    """
    key_start, key_draw = jax.random.split(key)
    if agent.spec.discrete:
      fresh = jax.random.randint(key_draw, (num_envs,), 0, agent.spec.action_dim)
      per_env = lambda mask: mask
    else:
      fresh = jax.random.uniform(key_draw, (num_envs, agent.spec.action_dim),
                                 minval=-1.0, maxval=1.0)
      per_env = lambda mask: mask[:, None]
    idle = exploration.steps_left == 0
    start = idle & (jax.random.uniform(key_start, (num_envs,)) < epsilon)
    held_action = jnp.where(per_env(start), fresh, exploration.action)
    exploring = per_env(~idle | start)
    action = jnp.where(exploring, held_action, planner_action).astype(planner_action.dtype)
    steps_left = jnp.where(start, config.exploration_repeat - 1,
                           jnp.maximum(exploration.steps_left - 1, 0))
    return action, HeldExploration(action=held_action, steps_left=steps_left)

  # -- one vectorised environment step plus its updates ----------------------------------------

  def iteration(state: TrainState, _):
    key, key_act, key_env, key_update = jax.random.split(state.key, 4)
    progress = jnp.clip(state.env_steps / decay_steps, 0.0, 1.0)
    epsilon = config.epsilon_start + progress * (config.epsilon_end - config.epsilon_start)
    epsilon = jnp.where(state.env_steps < config.learning_starts, 1.0, epsilon)
    plan_batch = jax.vmap(act, in_axes=(None, None, 0, 0, None, None, None))
    if config.exploration_repeat == 1:
      plan = plan_batch(acting_agent, state.params, jax.random.split(key_act, num_envs),
                        state.obs, agent_config.horizon, EPSILON, epsilon)
      planner_action, env_action, exploration = plan.planner_action, plan.action, None
    else:
      key_act, key_explore = jax.random.split(key_act)
      plan = plan_batch(acting_agent, state.params, jax.random.split(key_act, num_envs),
                        state.obs, agent_config.horizon, GREEDY, 0.0)
      planner_action, exploration = held_exploration_actions(
          key_explore, state.exploration, plan.planner_action, epsilon)
      env_action = jax.vmap(acting_agent.to_env_action)(planner_action)
    obs_next, env_state, reward, terminated, truncated, info = batched_step(
        jax.random.split(key_env, num_envs), state.env_state, env_action, env_params)
    obs_next = obs_next.reshape(num_envs, -1).astype(jnp.float32)
    final_obs = info["final_observation"].reshape(num_envs, -1).astype(jnp.float32)
    reached_goal = info.get("reached_goal", jnp.full((num_envs,), -1, jnp.int32))
    buffer = replay.add(state.buffer, state.obs, planner_action, reward.astype(jnp.float32),
                        terminated, truncated, final_obs, reached_goal)
    done = jnp.logical_or(terminated, truncated)
    episode_return = state.running_return + reward
    if exploration is not None:  # a held action never carries over into the next episode
      exploration = exploration._replace(
          steps_left=jnp.where(done, 0, exploration.steps_left))
    state = state.replace(
        buffer=buffer, env_state=env_state, obs=obs_next, key=key,
        env_steps=state.env_steps + num_envs,
        running_return=jnp.where(done, 0.0, episode_return), exploration=exploration)

    learning = (state.env_steps >= config.learning_starts) & (buffer.size >= sequence_length)
    def gated_update(state, key_u):
      updated, metrics = update(state, key_u)
      return jax.tree.map(lambda new, old: jnp.where(learning, new, old), updated, state), metrics

    # A scan (not an unrolled loop) over the updates halves the compile time.
    state, metrics = jax.lax.scan(gated_update, state,
                                  jax.random.split(key_update, config.updates_per_iteration))
    metrics = jax.tree.map(lambda m: m[-1], metrics)
    step_metrics = {
        **metrics,
        "episode/return_sum": jnp.sum(jnp.where(done, episode_return, 0.0)),
        "episode/count": jnp.sum(done).astype(jnp.float32),
        "train/epsilon": epsilon,
        "train/learning": learning.astype(jnp.float32),
        "train/nonfinite_actions": jnp.sum(plan.nonfinite).astype(jnp.float32),
    }
    return state, step_metrics

  def run_chunk(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
    state, metrics = jax.lax.scan(iteration, state, None, length=iterations_per_chunk)
    count = jnp.sum(metrics.pop("episode/count"))
    return_sum = jnp.sum(metrics.pop("episode/return_sum"))
    nonfinite = jnp.sum(metrics.pop("train/nonfinite_actions"))
    learning = metrics["train/learning"]
    summary = {name: jnp.sum(value * learning) / jnp.maximum(jnp.sum(learning), 1.0)
               for name, value in metrics.items() if name.startswith(("loss/", "grad_norm/"))}
    summary.update({
        "episode/mean_return": jnp.where(count > 0, return_sum / jnp.maximum(count, 1.0), jnp.nan),
        "episode/completed": count,
        "train/epsilon": metrics["train/epsilon"][-1],
        "train/env_steps": state.env_steps.astype(jnp.float32),
        "train/nonfinite_actions": nonfinite,
    })
    return state, summary

  return Trainer(config=config, agent=agent, env=env, env_params=env_params, init=init,
                 run_chunk=run_chunk, train=whole_run(init, run_chunk, config.num_chunks), iterations_per_chunk=iterations_per_chunk)
