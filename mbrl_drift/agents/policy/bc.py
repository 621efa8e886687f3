"""Behaviour cloning (``algorithm="bc"``): the base policy that RL later fine-tunes.

``make_train(config)`` generates the demonstrations of ``config.agent.demonstrator`` on the host
(:mod:`mbrl_drift.agents.policy.demonstrators`), closes over them, and returns a
:class:`~mbrl_drift.agents.base.Trainer` whose ``train(key)`` runs ``bc_epochs`` epochs of
minibatch updates in one jitted ``lax.scan`` (a chunk is ``bc_epochs / num_chunks`` epochs):

* actor: negative log-likelihood of the demonstrated actions (cross-entropy for discrete
  actions; Gaussian NLL of the pre-squash action ``atanh(a)`` for continuous ones; Pomerleau
  1991, Ross & Bagnell 2010);
* critic: ``0.5 * (V(s) - G)^2`` on the demonstrations' discounted Monte-Carlo returns ``G``
  (when the demonstrations carry returns), so that PPO fine-tuning starts from a critic of the
  base policy.

The state is an ordinary training state (``params``, ``env_steps``; the agent takes no
environment steps, so ``env_steps`` stays 0). The step counter of the fault hooks is the number
of epochs done (a fault with ``start_step=k`` acts from epoch ``k``; an optimiser reset at
``start_step=k`` happens at the first update of epoch ``k``). Reward faults have no reward to act
on here and are rejected; target faults corrupt the critic's Monte-Carlo targets; gradient and
update hooks and ``freeze`` apply as in PPO.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mbrl_drift.agents.base import EnvSpec, Params, Trainer, whole_run
from mbrl_drift.agents.policy.agent import ACTOR, CRITIC, build
from mbrl_drift.agents.policy.demonstrators import Demonstrations, make_demonstrations
from mbrl_drift.agents.policy.ppo import combined_hooks, demo_nll
from mbrl_drift.agents.policy.training import Updater, adam, initial_params
from mbrl_drift.faults.training import TrainingHooks


@struct.dataclass
class BCState:
  """State of a behaviour-cloning run (one seed).

  Attributes:
    params: agent parameters.
    opt_states: per-component optimiser states and the fault transforms' states.
    key: PRNG key.
    env_steps: int32 ``[]`` environment steps taken by the agent (always 0).
    epochs: int32 ``[]`` epochs done.
  """

  params: Params
  opt_states: dict[str, Any]
  key: jax.Array
  env_steps: jax.Array
  epochs: jax.Array


def make_train(config: Any, hooks: TrainingHooks = TrainingHooks(),
               demonstrations: Demonstrations | None = None) -> Trainer:
  """Builds the pure functions of one behaviour-cloning run.

  Args:
    config: the run's :class:`~mbrl_drift.config.TrainConfig` (``agent.algorithm == "bc"``).
    hooks: further training-time fault hooks.
    demonstrations: use these instead of generating them from ``agent.demonstrator``.

  Returns:
    A :class:`~mbrl_drift.agents.base.Trainer` (``iterations_per_chunk`` counts epochs).

  Raises:
    ValueError: reward faults, ``bc_epochs < num_chunks``, or a demonstrator that does not fit
      the environment.
  """
  from mbrl_drift.train import make_env

  c = config.agent
  env, env_params = make_env(config)
  agent = build(config, EnvSpec.from_env(env, env_params))
  hooks = combined_hooks(config, agent, hooks)
  if hooks.reward_faults:
    raise ValueError("behaviour cloning has no reward signal for reward faults to corrupt; "
                     "use target faults (critic Monte-Carlo targets) or train with PPO")
  for fault in hooks.target_faults:
    if not fault.applies_to(CRITIC):
      raise ValueError(f"target fault {fault.name} targets {fault.target!r}; the policy agent's "
                       f"value targets belong to 'critic'")
  if c.bc_epochs < config.num_chunks:
    raise ValueError(f"invalid config field bc_epochs={c.bc_epochs!r}: expected at least "
                     f"num_chunks={config.num_chunks}")
  if demonstrations is None:
    demonstrations = make_demonstrations(c.demonstrator_spec, env, env_params, agent.spec,
                                         jax.random.key(c.demo_seed), c.demo_episodes, c.gamma)
  demos = demonstrations
  size = demos.size
  batch = min(c.bc_batch_size, size)
  num_minibatches = size // batch
  epochs_per_chunk = c.bc_epochs // config.num_chunks
  num_updates = epochs_per_chunk * config.num_chunks * num_minibatches
  learning_rate = optax.linear_schedule(c.bc_lr, 0.0, num_updates) if c.anneal_lr else c.bc_lr
  updater = Updater(agent, {ACTOR: adam(learning_rate, c.max_grad_norm),
                            CRITIC: adam(learning_rate, c.max_grad_norm)}, hooks,
                    period=1)
  obs, action = jnp.asarray(demos.obs), jnp.asarray(demos.action)
  has_returns = demos.has_returns
  returns = jnp.asarray(demos.returns if has_returns else jnp.zeros(size))
  actor_outputs = jax.vmap(agent.actor_output, in_axes=(None, 0, None))
  values = jax.vmap(agent.value, in_axes=(None, 0))

  def init(key: jax.Array, params: Params | None = None) -> BCState:
    key, key_params = jax.random.split(key)
    params = initial_params(agent, key_params, params)
    return BCState(params=params, opt_states=updater.init(params), key=key,
                   env_steps=jnp.int32(0), epochs=jnp.int32(0))

  def loss_fn(params: Params, index: jax.Array, key: jax.Array, step: jax.Array):
    dist = actor_outputs(params, obs[index], ACTOR)
    nll = jnp.mean(jax.vmap(lambda d, a: demo_nll(agent, d, a))(dist, action[index]))
    metrics = {"loss/bc": nll}
    total = nll
    if agent.spec.discrete:
      metrics["bc/accuracy"] = jnp.mean(jnp.argmax(dist, -1) == action[index])
    if has_returns:
      targets = returns[index]
      for key_fault, fault in zip(jax.random.split(key, max(1, len(hooks.target_faults))),
                                  hooks.target_faults):
        targets = fault(key_fault, step, targets)
      critic_loss = jnp.mean(0.5 * (values(params, obs[index]) - targets) ** 2)
      metrics["loss/critic"] = critic_loss
      total += critic_loss
    return total, metrics

  def epoch(state: BCState, _):
    key, key_perm, key_losses = jax.random.split(state.key, 3)
    permutation = jax.random.permutation(key_perm, size)[:num_minibatches * batch]
    indices = permutation.reshape(num_minibatches, batch)

    def minibatch_update(carry, inputs):
      params, opt_states = carry
      index, key_loss, update_index = inputs
      grads, metrics = jax.grad(loss_fn, has_aux=True)(params, index, key_loss,
                                                       state.epochs)
      reset_step = jnp.where(update_index == 0, state.epochs, -1)
      params, opt_states = updater.update(params, grads, opt_states, state.epochs, reset_step)
      metrics["grad_norm/total"] = optax.tree.norm(grads)
      return (params, opt_states), metrics

    (params, opt_states), metrics = jax.lax.scan(
        minibatch_update, (state.params, state.opt_states),
        (indices, jax.random.split(key_losses, num_minibatches), jnp.arange(num_minibatches)))
    state = state.replace(params=params, opt_states=opt_states, key=key,
                          epochs=state.epochs + 1)
    return state, jax.tree.map(jnp.mean, metrics)

  def run_chunk(state: BCState) -> tuple[BCState, dict[str, jax.Array]]:
    state, metrics = jax.lax.scan(epoch, state, None, length=epochs_per_chunk)
    summary = {name: value[-1] for name, value in metrics.items()}
    summary.update({
        "episode/mean_return": jnp.float32(jnp.nan),
        "episode/completed": jnp.float32(0.0),
        "train/env_steps": state.env_steps.astype(jnp.float32),
        "train/epochs": state.epochs.astype(jnp.float32),
        "bc/demonstrations": jnp.float32(size),
    })
    return state, summary

  return Trainer(config=config, agent=agent, env=env, env_params=env_params, init=init,
                 run_chunk=run_chunk, train=whole_run(init, run_chunk, config.num_chunks), iterations_per_chunk=epochs_per_chunk)


__all__ = ["BCState", "make_train"]
