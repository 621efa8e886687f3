"""What the PPO and behaviour-cloning runs share: initial parameters from a base, per-component
optimisers, and one update step that honours the training-fault hooks and keeps ``base/actor``
frozen."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from mbrl_drift import faults
from mbrl_drift.agents.base import Params, get_path, set_path
from mbrl_drift.agents.policy.agent import ACTOR, CRITIC, PolicyAgent
from mbrl_drift.faults.training import TrainingHooks

# Keys of the fault transforms' states in a state's ``opt_states``.
GRADIENT_FAULTS, UPDATE_FAULTS = "faults/gradient", "faults/update"


def initial_params(agent: PolicyAgent, key: jax.Array, params: Params | None) -> Params:
  """The parameters a run starts from.

  Args:
    agent: the agent being trained.
    key: PRNG key of a fresh initialisation.
    params: ``None`` for a fresh start, or a base run's parameters (one seed): ``actor`` and
      ``critic`` start from them and, when the agent has a base, ``base/actor`` is the given
      ``base/actor`` if there is one (fine-tuning a fine-tuned run keeps the original base),
      else a copy of the given ``actor``.

  Returns:
    The agent's parameter dict.
  """
  fresh = agent.init(key)
  if params is None:
    return fresh
  if ACTOR not in params:
    raise ValueError(f"cannot start a policy agent from parameters without an 'actor' "
                     f"component (components: {sorted(params)})")
  start = {ACTOR: params[ACTOR], CRITIC: params.get(CRITIC, fresh[CRITIC])}
  if agent.has_base:
    base = params.get("base", {}).get("actor") if isinstance(params.get("base"), Mapping) else None
    start["base"] = {"actor": params[ACTOR] if base is None else base}
  return start


def adam(learning_rate: Any, max_grad_norm: float) -> optax.GradientTransformationExtraArgs:
  """Global-norm clipping then Adam (eps 1e-5, purejaxrl), with extra-args support."""
  return optax.with_extra_args_support(optax.chain(
      optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate, eps=1e-5)))


def check_freeze(config: Any, agent: PolicyAgent) -> TrainingHooks:
  """The update hooks that keep ``config.freeze`` fixed (a ``ValueError`` for an unknown
  component)."""
  if not config.freeze:
    return TrainingHooks()
  pattern = "+".join(config.freeze)
  shapes = jax.eval_shape(agent.init, jax.random.key(0))
  try:
    faults.resolve_target(shapes, pattern)
  except ValueError as error:
    raise ValueError(f"invalid config field freeze={config.freeze!r}: {error}") from None
  return TrainingHooks(update_transforms=(faults.freeze(target=pattern),))


class Updater:
  """Per-component optimisers plus the gradient and update fault chains of one run.

  ``update(params, grads, opt_states, env_steps, reset_step)`` applies one update: gradient
  faults on the whole gradient tree, each trainable component's optimiser on its subtree,
  update faults (freezes, spikes) on the whole update tree; ``base/actor`` is then restored, so
  it stays bit-for-bit unchanged whatever the hooks do.
  """

  def __init__(self, agent: PolicyAgent, optimisers: Mapping[str, optax.GradientTransformation],
               hooks: TrainingHooks, period: int):
    self.agent = agent
    self.paths = tuple(optimisers)
    resets = {path: (step, severity) for path, step, severity in hooks.optimizer_resets}
    unknown = set(resets) - set(self.paths)
    if unknown:
      raise ValueError(f"optimizer_resets name unknown component(s) {sorted(unknown)}; "
                       f"components with an optimiser are {list(self.paths)}")
    self.optimisers = {}
    for path, optimiser in optimisers.items():
      if path in resets:
        step, severity = resets[path]
        if step <= 0 or step % period:
          raise ValueError(f"optimizer_reset of {path!r} at start_step={step} is never reached: "
                           f"the first update of each iteration sees a positive multiple of "
                           f"{period} steps")
        optimiser = faults.reset_optimizer_state(optimiser, start_step=step, severity=severity)
      self.optimisers[path] = optimiser
    self.gradient_faults = optax.chain(optax.identity(), *hooks.gradient_transforms)
    self.update_faults = optax.chain(optax.identity(), *hooks.update_transforms)

  def init(self, params: Params) -> dict[str, Any]:
    return {**{path: self.optimisers[path].init(get_path(params, path)) for path in self.paths},
            GRADIENT_FAULTS: self.gradient_faults.init(params),
            UPDATE_FAULTS: self.update_faults.init(params)}

  def update(self, params: Params, grads: Params, opt_states: dict[str, Any],
             env_steps: jax.Array, reset_step: jax.Array) -> tuple[Params, dict[str, Any]]:
    """One update.

    Args:
      params: current parameters.
      grads: gradients of the whole parameter tree (zero for ``base/actor``).
      opt_states: the states from :meth:`init`.
      env_steps: int32 ``[]`` environment steps so far (the window of the fault hooks).
      reset_step: int32 ``[]`` step seen by optimiser resets: ``env_steps`` at the first update
        of an iteration, ``-1`` at the others, so that a reset happens once.

    Returns:
      ``(new params, new opt_states)``.
    """
    opt_states = dict(opt_states)
    grads, opt_states[GRADIENT_FAULTS] = self.gradient_faults.update(
        grads, opt_states[GRADIENT_FAULTS], params, step=env_steps)
    updates = jax.tree.map(jnp.zeros_like, params)
    for path in self.paths:
      component_updates, opt_states[path] = self.optimisers[path].update(
          get_path(grads, path), opt_states[path], get_path(params, path), step=reset_step)
      updates = set_path(updates, path, component_updates)
    updates, opt_states[UPDATE_FAULTS] = self.update_faults.update(
        updates, opt_states[UPDATE_FAULTS], params, step=env_steps)
    new_params = optax.apply_updates(params, updates)
    if "base" in params:
      new_params = {**new_params, "base": params["base"]}
    return new_params, opt_states


def mean_metrics(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Mean of every stacked metric."""
  return jax.tree.map(jnp.mean, metrics)
