"""Training-time faults: hooks into the joint update, gated by the training step.

Every fault here is active for ``start_step <= step < end_step`` (``end_step=None``: from
``start_step`` on, permanently) and has a ``severity``; outside its window, or at severity 0, it is
exactly the identity. ``step`` may be traced, so the gate costs no recompilation inside
``lax.scan``. Severity, scale and window may also be traced values (build the fault inside the
traced function to sweep them with ``vmap``).

Two kinds of hook:

* **Signal faults** corrupt a training signal: :class:`RewardFault` (rewards used by the reward
  model and the value targets) and :class:`TargetFault` (the value targets). They carry a
  ``target`` pattern that says which components' losses see the corrupted signal
  (:meth:`SignalFault.applies_to`), e.g. ``"world_model/reward"`` or ``"value"``; ``"*"`` = all.
* **Gradient transforms** (optax ``GradientTransformationExtraArgs``) act on one component's
  updates. Chain them where they mean what they say::

    optax.chain(gradient_noise(...), optax.adam(lr))    # noise on the *gradients*
    optax.chain(optax.adam(lr), freeze(...))            # zero the final *updates*
    optax.chain(optax.adam(lr), lr_spike(...))          # scale the final updates (a learning-
                                                        # rate spike; Adam would normalise a
                                                        # gradient scale away)
    reset_optimizer_state(optax.adam(lr), start_step=k) # re-initialise Adam's moments at step k

  Their step is the number of updates the transform has seen (counted in its state from 0),
  unless the caller passes ``step=`` as an extra argument to ``update`` (``optax.chain``
  forwards it). With ``target=None`` they act on every leaf of the updates they receive (one
  component's optimiser); with a target pattern they act only on the addressed components of a
  whole-agent update tree.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mbrl_drift.faults.paths import (
    is_float_array,
    is_under,
    leaves_with_paths,
    path_key,
    pattern_matches_path,
    replace_leaves,
    resolve_target,
    split_pattern,
)

SIGNAL_KINDS = ("noise", "sign_flip", "swap", "offset")


def is_active(step: jax.Array, start_step: jax.Array | int,
              end_step: jax.Array | int | None) -> jax.Array:
  """Whether ``start_step <= step < end_step`` (``end_step=None``: no end).

  Args:
    step: int ``[]`` training step (may be traced).
    start_step: first faulty step.
    end_step: first healthy step again, or ``None``.

  Returns:
    bool ``[]``.
  """
  active = step >= start_step
  if end_step is not None:
    active = active & (step < end_step)
  return active


def _check_window(name: str, start_step: Any, end_step: Any, severity: Any) -> None:
  if isinstance(start_step, int) and start_step < 0:
    raise ValueError(f"{name}: start_step must be >= 0, got {start_step}")
  if isinstance(end_step, int) and isinstance(start_step, int) and end_step <= start_step:
    raise ValueError(f"{name}: end_step must be None or > start_step ({start_step}), "
                     f"got {end_step}")
  if isinstance(severity, (int, float)) and severity < 0:
    raise ValueError(f"{name}: severity must be >= 0, got {severity}")


def _check_target(name: str, target: str | None) -> None:
  if target is not None:
    try:
      split_pattern(target)
    except ValueError as error:
      raise ValueError(f"{name}: {error}") from None


# ---------------------------------------------------------------------------------------------
# Signal faults
# ---------------------------------------------------------------------------------------------


@struct.dataclass(eq=False)
class SignalFault:
  """A corruption of a training signal, active in a window of training steps.

  Attributes:
    name: e.g. ``"reward_noise"``.
    kind: one of ``"noise"`` (``x + scale * s * eps``), ``"sign_flip"`` (``x * (1 - 2 s)``),
      ``"swap"`` (``x + s * (x_alt - x)``, rewards only) and ``"offset"`` (``x + s * offset``),
      where ``s`` is the effective severity.
    target: which components' losses see the corrupted signal (pattern; ``"*"`` = all).
    severity: float32 ``[]``.
    start_step: int32 ``[]`` first faulty step.
    end_step: int32 ``[]`` first healthy step again, or ``None`` (permanent).
    settings: ``{"scale": ...}`` or ``{"offset": ...}`` (float32 ``[]``).
    goal_index: for ``"swap"``: index into the last axis of ``goal_rewards``, or ``None`` when
      ``goal_rewards`` already has the shape of the rewards.
  """

  name: str = struct.field(pytree_node=False)
  kind: str = struct.field(pytree_node=False)
  target: str = struct.field(pytree_node=False)
  severity: jax.Array
  start_step: jax.Array
  end_step: jax.Array | None
  settings: dict[str, jax.Array] = struct.field(default_factory=dict)
  goal_index: int | None = struct.field(pytree_node=False, default=None)

  def applies_to(self, component_path: str) -> bool:
    """Whether the loss of ``component_path`` should see the corrupted signal."""
    return pattern_matches_path(self.target, component_path)

  def effective_severity(self, step: jax.Array) -> jax.Array:
    """``severity`` inside the window, 0 outside: float32 ``[]``."""
    return jnp.where(is_active(step, self.start_step, self.end_step), self.severity, 0.0)

  def _corrupt(self, key: jax.Array, step: jax.Array, values: jax.Array,
               alternative: jax.Array | None) -> jax.Array:
    severity = self.effective_severity(step).astype(values.dtype)
    if self.kind == "noise":
      noise = jax.random.normal(key, values.shape, values.dtype)
      corrupted = values + self.settings["scale"].astype(values.dtype) * severity * noise
    elif self.kind == "sign_flip":
      corrupted = values * (1 - 2 * severity)
    elif self.kind == "offset":
      corrupted = values + severity * self.settings["offset"].astype(values.dtype)
    else:  # swap
      if alternative is None:
        raise ValueError(f"{self.name}: needs goal_rewards (the rewards of the other goal)")
      if self.goal_index is not None:
        num_goals = alternative.shape[-1]
        if not 0 <= self.goal_index < num_goals:
          raise ValueError(f"{self.name}: goal_index={self.goal_index} is out of range; the "
                           f"environment has {num_goals} goals (0 to {num_goals - 1})")
        alternative = alternative[..., self.goal_index]
      if alternative.shape != values.shape:
        selected = "" if self.goal_index is None else f"[..., {self.goal_index}]"
        raise ValueError(f"{self.name}: goal_rewards{selected} has shape {alternative.shape}, "
                         f"rewards have {values.shape}")
      alternative = alternative.astype(values.dtype)
      corrupted = jnp.where(severity == 1, alternative, values + severity * (alternative - values))
    return jnp.where(severity == 0, values, corrupted)


@struct.dataclass(eq=False)
class RewardFault(SignalFault):
  """A reward corruption: ``fault(key, step, rewards [B, ...], goal_rewards=None)``."""

  def __call__(self, key: jax.Array, step: jax.Array, rewards: jax.Array,
               goal_rewards: jax.Array | None = None) -> jax.Array:
    """Corrupts rewards.

    Args:
      key: PRNG key (noise only).
      step: int ``[]`` training step (may be traced).
      rewards: ``[B, ...]`` float rewards.
      goal_rewards: for swap faults, the other goal's rewards ``[B, ...]`` (or ``[B, ..., K]``
        with ``goal_index`` set).

    Returns:
      ``[B, ...]`` rewards; exactly ``rewards`` outside the window or at severity 0.
    """
    return self._corrupt(key, step, rewards, goal_rewards)


@struct.dataclass(eq=False)
class TargetFault(SignalFault):
  """A value-target corruption: ``fault(key, step, targets [B, ...])``."""

  def __call__(self, key: jax.Array, step: jax.Array, targets: jax.Array) -> jax.Array:
    """Corrupts value targets.

    Args:
      key: PRNG key (noise only).
      step: int ``[]`` training step (may be traced).
      targets: ``[B, ...]`` float value targets.

    Returns:
      ``[B, ...]`` targets; exactly ``targets`` outside the window or at severity 0.
    """
    return self._corrupt(key, step, targets, None)


def _signal(cls: type, name: str, kind: str, target: str, start_step: Any, end_step: Any,
            severity: Any, settings: dict[str, Any] | None = None,
            goal_index: int | None = None) -> Any:
  _check_window(name, start_step, end_step, severity)
  _check_target(name, target)
  return cls(name=name, kind=kind, target=target,
             severity=jnp.asarray(severity, jnp.float32),
             start_step=jnp.asarray(start_step, jnp.int32),
             end_step=None if end_step is None else jnp.asarray(end_step, jnp.int32),
             settings={k: jnp.asarray(v, jnp.float32) for k, v in (settings or {}).items()},
             goal_index=goal_index)


def reward_noise(scale: float, *, target: str = "*", start_step: int = 0,
                 end_step: int | None = None, severity: float = 1.0) -> RewardFault:
  """Gaussian reward noise ``r + scale * severity * eps``.

  Args:
    scale: noise standard deviation at severity 1.
    target: components whose losses see the corrupted rewards.
    start_step: first faulty step.
    end_step: first healthy step again (``None``: permanent).
    severity: strength (0 = identity).

  Returns:
    The :class:`RewardFault`.
  """
  if isinstance(scale, (int, float)) and scale < 0:
    raise ValueError(f"reward_noise: scale must be >= 0, got {scale}")
  return _signal(RewardFault, "reward_noise", "noise", target, start_step, end_step, severity,
                 {"scale": scale})


def reward_sign_flip(*, target: str = "*", start_step: int = 0, end_step: int | None = None,
                     severity: float = 1.0) -> RewardFault:
  """Reward sign flip ``r * (1 - 2 * severity)`` (negated at severity 1).

  Args:
    target: components whose losses see the corrupted rewards.
    start_step: first faulty step.
    end_step: first healthy step again (``None``: permanent).
    severity: strength (0 = identity, 1 = negated).

  Returns:
    The :class:`RewardFault`.
  """
  return _signal(RewardFault, "reward_sign_flip", "sign_flip", target, start_step, end_step,
                 severity)


def reward_swap(*, goal_index: int | None = None, target: str = "*", start_step: int = 0,
                end_step: int | None = None, severity: float = 1.0) -> RewardFault:
  """Rewards of another goal: ``r + severity * (r_goal - r)`` (the other goal's at severity 1).

  The caller passes the alternative rewards as ``goal_rewards``; a misspecified objective
  learned this way is the classic route to coherent pursuit of the wrong goal.

  Args:
    goal_index: index into the last axis of ``goal_rewards`` ``[B, ..., K]``; ``None`` when
      ``goal_rewards`` has the rewards' shape.
    target: components whose losses see the corrupted rewards.
    start_step: first faulty step.
    end_step: first healthy step again (``None``: permanent).
    severity: mixing fraction (0 = identity, 1 = the other goal's rewards).

  Returns:
    The :class:`RewardFault`.
  """
  return _signal(RewardFault, "reward_swap", "swap", target, start_step, end_step, severity,
                 goal_index=goal_index)


def target_noise(scale: float, *, target: str = "value", start_step: int = 0,
                 end_step: int | None = None, severity: float = 1.0) -> TargetFault:
  """Gaussian value-target noise ``y + scale * severity * eps``.

  Args:
    scale: noise standard deviation at severity 1.
    target: components whose losses see the corrupted targets.
    start_step: first faulty step.
    end_step: first healthy step again (``None``: permanent).
    severity: strength (0 = identity).

  Returns:
    The :class:`TargetFault`.
  """
  if isinstance(scale, (int, float)) and scale < 0:
    raise ValueError(f"target_noise: scale must be >= 0, got {scale}")
  return _signal(TargetFault, "target_noise", "noise", target, start_step, end_step, severity,
                 {"scale": scale})


def target_sign_flip(*, target: str = "value", start_step: int = 0, end_step: int | None = None,
                     severity: float = 1.0) -> TargetFault:
  """Value-target sign flip ``y * (1 - 2 * severity)``.

  Args:
    target: components whose losses see the corrupted targets.
    start_step: first faulty step.
    end_step: first healthy step again (``None``: permanent).
    severity: strength (0 = identity, 1 = negated).

  Returns:
    The :class:`TargetFault`.
  """
  return _signal(TargetFault, "target_sign_flip", "sign_flip", target, start_step, end_step,
                 severity)


def target_offset(offset: float, *, target: str = "value", start_step: int = 0,
                  end_step: int | None = None, severity: float = 1.0) -> TargetFault:
  """Biased value targets ``y + severity * offset`` (optimism for ``offset > 0``).

  Args:
    offset: bias added at severity 1.
    target: components whose losses see the corrupted targets.
    start_step: first faulty step.
    end_step: first healthy step again (``None``: permanent).
    severity: strength (0 = identity).

  Returns:
    The :class:`TargetFault`.
  """
  return _signal(TargetFault, "target_offset", "offset", target, start_step, end_step, severity,
                 {"offset": offset})


# ---------------------------------------------------------------------------------------------
# Gradient transforms
# ---------------------------------------------------------------------------------------------


class ScheduledFaultState(NamedTuple):
  """State of a scheduled gradient fault.

  Attributes:
    count: int32 ``[]`` number of updates seen.
    key: uint32 ``[2]`` PRNG key (gradient noise), ``None`` otherwise.
  """

  count: jax.Array
  key: jax.Array | None = None


def _map_addressed(updates: Any, target: str | None,
                   fn: Callable[[str, jax.Array], jax.Array]) -> Any:
  """``fn(path, leaf)`` on every float leaf of ``updates`` addressed by ``target``."""
  roots = None if target is None else resolve_target(updates, target)
  replacements = {}
  for path, leaf in leaves_with_paths(updates):
    if is_float_array(leaf) and (roots is None or any(is_under(path, r) for r in roots)):
      replacements[path] = fn(path, leaf)
  return replace_leaves(updates, replacements)


def _scheduled(name: str, leaf_fn: Callable[..., jax.Array], *, target: str | None,
               start_step: Any, end_step: Any, severity: Any,
               seed: int | None = None) -> optax.GradientTransformationExtraArgs:
  """A gradient transform applying ``leaf_fn(key, leaf, severity)`` inside its window."""
  _check_window(name, start_step, end_step, severity)
  _check_target(name, target)

  def init_fn(params: Any) -> ScheduledFaultState:
    del params
    key = None if seed is None else jax.random.PRNGKey(seed)
    return ScheduledFaultState(count=jnp.zeros((), jnp.int32), key=key)

  def update_fn(updates: Any, state: ScheduledFaultState, params: Any = None, *,
                step: jax.Array | None = None,
                **extra_args: Any) -> tuple[Any, ScheduledFaultState]:
    del params, extra_args
    step = state.count if step is None else step
    effective = jnp.where(is_active(step, start_step, end_step),
                          jnp.asarray(severity, jnp.float32), 0.0)
    if state.key is None:
      key, next_key = None, None
    else:
      key, next_key = jax.random.split(state.key)

    def fn(path: str, leaf: jax.Array) -> jax.Array:
      leaf_key = None if key is None else path_key(key, path)
      new = leaf_fn(leaf_key, leaf, effective.astype(leaf.dtype))
      return jnp.where(effective == 0, leaf, new)

    new_updates = _map_addressed(updates, target, fn)
    return new_updates, ScheduledFaultState(count=optax.safe_int32_increment(state.count),
                                            key=next_key)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def gradient_noise(scale: float, *, target: str | None = None, start_step: int = 0,
                   end_step: int | None = None, severity: float = 1.0,
                   seed: int = 0) -> optax.GradientTransformationExtraArgs:
  """Adds Gaussian noise ``scale * severity * eps`` to the gradients (chain before the optimiser).

  Constant-variance variant of the gradient noise of Neelakantan et al. (2015), "Adding gradient
  noise improves learning for very deep networks", here used as a fault.

  Args:
    scale: noise standard deviation at severity 1.
    target: pattern over a whole-agent update tree, or ``None`` for every leaf.
    start_step: first faulty step.
    end_step: first healthy step again (``None``: permanent).
    severity: strength (0 = identity).
    seed: seeds the noise key kept in the state.

  Returns:
    An optax ``GradientTransformationExtraArgs``.
  """
  if isinstance(scale, (int, float)) and scale < 0:
    raise ValueError(f"gradient_noise: scale must be >= 0, got {scale}")

  def leaf_fn(key: jax.Array, leaf: jax.Array, severity_: jax.Array) -> jax.Array:
    return leaf + jnp.asarray(scale, leaf.dtype) * severity_ * jax.random.normal(
        key, leaf.shape, leaf.dtype)

  return _scheduled("gradient_noise", leaf_fn, target=target, start_step=start_step,
                    end_step=end_step, severity=severity, seed=seed)


def freeze(*, target: str | None = None, start_step: int = 0, end_step: int | None = None,
           severity: float = 1.0) -> optax.GradientTransformationExtraArgs:
  """Freezes a component: updates scaled by ``1 - severity`` (exactly 0 at severity >= 1).

  Chain *after* the optimiser so that no momentum leaks through.

  Args:
    target: pattern over a whole-agent update tree, or ``None`` for every leaf.
    start_step: first frozen step.
    end_step: first step updated again (``None``: permanent).
    severity: fraction of the update removed.

  Returns:
    An optax ``GradientTransformationExtraArgs``.
  """

  def leaf_fn(key: jax.Array, leaf: jax.Array, severity_: jax.Array) -> jax.Array:
    del key
    return jnp.where(severity_ >= 1, jnp.zeros_like(leaf), leaf * (1 - severity_))

  return _scheduled("freeze", leaf_fn, target=target, start_step=start_step, end_step=end_step,
                    severity=severity)


def lr_spike(factor: float, *, target: str | None = None, start_step: int = 0,
             end_step: int | None = None,
             severity: float = 1.0) -> optax.GradientTransformationExtraArgs:
  """A learning-rate spike: updates scaled by ``1 + severity * (factor - 1)``.

  Chain *after* the optimiser (Adam-like optimisers normalise away a scaled gradient).

  Args:
    factor: update scale at severity 1 (e.g. 10).
    target: pattern over a whole-agent update tree, or ``None`` for every leaf.
    start_step: first spiked step.
    end_step: first normal step again (``None``: permanent).
    severity: strength (0 = identity).

  Returns:
    An optax ``GradientTransformationExtraArgs``.
  """

  def leaf_fn(key: jax.Array, leaf: jax.Array, severity_: jax.Array) -> jax.Array:
    del key
    return leaf * (1 + severity_ * (jnp.asarray(factor, leaf.dtype) - 1))

  return _scheduled("lr_spike", leaf_fn, target=target, start_step=start_step,
                    end_step=end_step, severity=severity)


class ResetState(NamedTuple):
  """State of :func:`reset_optimizer_state`: the update count and the inner optimiser's state."""

  count: jax.Array
  inner_state: Any


def reset_optimizer_state(inner: optax.GradientTransformation, *, start_step: int,
                          severity: float = 1.0) -> optax.GradientTransformationExtraArgs:
  """Wraps ``inner`` and re-initialises its state at ``step == start_step``.

  At the reset step, every float leaf of the inner state moves a fraction ``severity`` toward
  its freshly initialised value (exactly the fresh value at severity >= 1) and every integer leaf
  (e.g. Adam's bias-correction count) is reset when ``severity > 0``. The inner update then runs
  on the reset state. Extra arguments other than ``step`` are forwarded to ``inner``.

  Args:
    inner: the component's optimiser, e.g. ``optax.adam(3e-4)``.
    start_step: the step at which the state is reset.
    severity: fraction of the reset.

  Returns:
    An optax ``GradientTransformationExtraArgs``.
  """
  _check_window("reset_optimizer_state", start_step, None, severity)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params: Any) -> ResetState:
    return ResetState(count=jnp.zeros((), jnp.int32), inner_state=inner.init(params))

  def update_fn(updates: Any, state: ResetState, params: Any = None, *,
                step: jax.Array | None = None, **extra_args: Any) -> tuple[Any, ResetState]:
    step = state.count if step is None else step
    strength = jnp.asarray(severity, jnp.float32)
    reset = (step == start_step) & (strength > 0)
    fresh = inner.init(params if params is not None else updates)

    def blend(old: jax.Array, new: jax.Array) -> jax.Array:
      if is_float_array(old):
        mixed = jnp.where(strength >= 1, new, old + strength.astype(old.dtype) * (new - old))
        return jnp.where(reset, mixed, old)
      return jnp.where(reset, new, old)

    inner_state = jax.tree_util.tree_map(blend, state.inner_state, fresh)
    new_updates, inner_state = inner.update(updates, inner_state, params, **extra_args)
    return new_updates, ResetState(count=optax.safe_int32_increment(state.count),
                                   inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class TrainingHooks(NamedTuple):
  """Training-time faults, hooked into an agent's update step (identity by default).

  Every fault is gated by the run's environment-step counter (see :mod:`mbrl_drift.faults`), so
  it can start mid-run, be transient or permanent, and cost no recompilation.

  Attributes:
    reward_faults: :class:`~mbrl_drift.faults.RewardFault` s; each corrupts the sampled rewards
      seen by the losses its ``target`` addresses (``"world_model/reward"``, ``"value"`` or
      ``"*"``). Swap faults receive the other goals' rewards on goal environments.
    target_faults: :class:`~mbrl_drift.faults.TargetFault` s on the n-step value targets.
    gradient_transforms: optax transforms over the whole-agent gradient tree, applied before the
      per-component optimisers (e.g. ``faults.gradient_noise(0.1, target="value")``).
    update_transforms: optax transforms over the whole-agent update tree, applied after the
      optimisers (``faults.freeze(target="world_model/*")``, ``faults.lr_spike(10, ...)``).
    optimizer_resets: ``(component path, step, severity)``: re-initialise that component's
      optimiser state at that environment step.
  """

  reward_faults: tuple[Any, ...] = ()
  target_faults: tuple[Any, ...] = ()
  gradient_transforms: tuple[optax.GradientTransformation, ...] = ()
  update_transforms: tuple[optax.GradientTransformation, ...] = ()
  optimizer_resets: tuple[tuple[str, int, float], ...] = ()
