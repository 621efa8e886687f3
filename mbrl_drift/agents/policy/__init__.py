"""The policy agent (``--agent policy``): the "current paradigm" of the testbed.

An actor and a critic (separate MLPs), pretrained by behaviour cloning of a demonstrator
(``algorithm="bc"``: the *base*) and fine-tuned by PPO (``algorithm="ppo"`` with
``TrainConfig.init_from`` = the base run), which keeps the base's actor as a frozen
``base/actor`` component and may regularise toward it (``kl_to_base``, ``bc_coef``).

Modules: :mod:`.config` (:class:`PolicyConfig`, demonstrator spec grammar; no JAX),
:mod:`.agent` (:class:`PolicyAgent`), :mod:`.ppo` (PPO ``make_train``, GAE and loss pieces),
:mod:`.bc` (behaviour-cloning ``make_train``), :mod:`.demonstrators` (demonstrations and exact
tabular outcomes), :mod:`.training` (what PPO and BC share).

Registering imports no JAX: ``build`` and ``make_train`` import their modules lazily.
"""

from __future__ import annotations

from typing import Any

from mbrl_drift.agents.policy.config import (DemonstratorSpec, PolicyConfig,
                                             parse_demonstrator)
from mbrl_drift.agents.registry import AgentDef, register


def _build(config: Any, spec: Any):
  from mbrl_drift.agents.policy.agent import build

  return build(config, spec)


def _make_train(config: Any, hooks: Any = None):
  if config.agent.algorithm == "bc":
    from mbrl_drift.agents.policy.bc import make_train
  else:
    from mbrl_drift.agents.policy.ppo import make_train
  return make_train(config) if hooks is None else make_train(config, hooks)


def presets() -> dict[str, Any]:
  """Environment name -> tuned PPO :class:`~mbrl_drift.config.TrainConfig` of the policy agent.

  * ``CartPole``: purejaxrl's CartPole settings (2x64 tanh MLPs, 4 environments x 128 steps,
    4 epochs x 4 minibatches, lr 2.5e-4 annealed to 0 over 500k steps); the mean return of the
    last 100 episodes reaches 475 (benchmarks/bench_policy.py reports the steps per seed). A
    262k-step budget (faster annealing) solved 8 of 9 seeds, by 134k-199k steps, but one seed
    never reached 475.
  * ``GoalGrid-FourRooms``: 16 environments x 32 steps, 4 epochs x 4 minibatches, lr 1e-3,
    entropy bonus 0.03, discount 0.97, 102k steps; exact greedy intended-goal success of 100%
    from every start cell in each of 24 seeds (3 sets of 8). With entropy bonus 0.01 one seed
    of 8 settled at 93% (it entered the unrewarded goal C from C's room).
  """
  from mbrl_drift.config import TrainConfig

  return {
      "CartPole": TrainConfig(
          env="CartPole", agent_kind="policy", num_envs=4, total_steps=500_000, num_chunks=4,
          agent=PolicyConfig(rollout_steps=128, update_epochs=4, num_minibatches=4)),
      "GoalGrid-FourRooms": TrainConfig(
          env="GoalGrid-FourRooms", agent_kind="policy", num_envs=16, total_steps=102_400,
          num_chunks=4,
          agent=PolicyConfig(rollout_steps=32, update_epochs=4, num_minibatches=4, lr=1e-3,
                             gamma=0.97, ent_coef=0.03)),
  }


POLICY = register(AgentDef(
    name="policy",
    config_type=PolicyConfig,
    build=_build,
    make_train=_make_train,
    components=("actor", "critic", "base/actor"),
    reward_consumers=("actor", "critic"),
    target_consumers=("critic",),
    train_fields=(),
    presets=presets,
    description="actor-critic policy: behaviour cloning of a demonstrator (the base) and PPO "
                "fine-tuning with a frozen base/actor, KL-to-base and BC-anchor regularisers",
))

__all__ = ["DemonstratorSpec", "POLICY", "PolicyConfig", "parse_demonstrator", "presets"]
