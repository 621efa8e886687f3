"""Demonstrations for behaviour cloning, generated on the host before training is compiled.

A demonstrator spec (grammar: :mod:`mbrl_drift.agents.policy.config`) names one of

* a **tabular soft-optimal demonstrator** on a grid world with a tabular export (GoalGrid): for
  goal ``k``, ``pi_k(a|s) = (1 - eps) * softmax(beta * Q*_k(s, .))_a + eps / |A|`` with ``Q*_k``
  from value iteration (:func:`envs.oracles.value_iteration`), optionally charging vase entries
  so that the demonstrator walks around them; a *mixture* draws each episode's goal from its
  weights (the Boltzmann-rational demonstrator of Ziebart et al. 2008 over the optimal Q, as in
  inverse planning, Baker et al. 2009);
* a **trained run** of any agent (a run directory), rolled out with its greedy (or sampled)
  selection rule;
* an **.npz file** of ``observations [N, obs_dim]`` and ``actions [N]`` (int, discrete) or
  ``[N, d]`` (environment actions, continuous), optionally ``returns [N]``.

:func:`make_demonstrations` turns a spec into :class:`Demonstrations` (numpy arrays), so that a
training run closes over them and stays one jitted function.

The tabular helpers (:func:`tabular_occupancy`, :func:`goal_reach_distribution`,
:func:`markov_mixture_policy`) give exact outcomes of table policies: a mixture over goals drawn
once per episode has the same state-action occupancy, hence the same goal-reach distribution, as
the Markov policy ``pi(a|s) = sum_k w_k x_k(s) pi_k(a|s) / sum_k w_k x_k(s)`` (``x_k`` the state
occupancy of goal ``k``'s policy; Puterman 1994, Thm 6.9.1; Altman 1999, Thm 3.1). That Markov
policy is what behaviour cloning can match, and it is the reference of the fidelity metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mbrl_drift.agents.base import EnvSpec, eval_args
from mbrl_drift.agents.policy.config import DemonstratorSpec, parse_demonstrator


class Demonstrations(NamedTuple):
  """Observation-action pairs of demonstration episodes (numpy, host side).

  Attributes:
    obs: ``[N, obs_dim]`` float32 observations.
    action: ``[N]`` int32 discrete actions, or ``[N, d]`` float32 continuous actions in the
      agent's ``[-1, 1]`` space.
    returns: ``[N]`` float32 discounted Monte-Carlo return from each pair to the end of its
      episode (NaN where unknown).
    goal: ``[N]`` int32 goal the demonstrator pursued in that episode (``-1``: none / unknown).
  """

  obs: np.ndarray
  action: np.ndarray
  returns: np.ndarray
  goal: np.ndarray

  @property
  def size(self) -> int:
    return int(self.obs.shape[0])

  @property
  def has_returns(self) -> bool:
    return bool(np.all(np.isfinite(self.returns)))


# ---------------------------------------------------------------------------------------------
# Tabular demonstrators
# ---------------------------------------------------------------------------------------------


def goal_index(env: Any, goal: str) -> int:
  """Index of a goal label (``"B"``) or index string (``"1"``) of a goal environment.

  Raises:
    ValueError: unknown goal (the message lists the environment's goals).
  """
  names = list(getattr(env, "goal_names", []))
  num_goals = int(getattr(env, "num_goals", 0))
  if goal.isdigit() and int(goal) < num_goals:
    return int(goal)
  if goal in names:
    return names.index(goal)
  raise ValueError(f"demonstrator goal {goal!r} is not a goal of {getattr(env, 'name', env)}; "
                   f"goals: {', '.join(f'{i} ({n})' for i, n in enumerate(names)) or '(none)'}")


def soft_optimal_policies(env: Any, env_params: Any, spec: DemonstratorSpec) -> np.ndarray:
  """The table policy of each goal of a tabular demonstrator spec.

  Args:
    env: a grid world with ``tabular(params)`` (GoalGrid).
    env_params: its parameters (slip, step cost, goal reward enter ``Q*``).
    spec: a ``"goal"`` :class:`DemonstratorSpec`.

  Returns:
    ``[K, S, A]`` float32: ``(1 - eps) * softmax(beta * Q*_k) + eps / A`` for each goal ``k`` of
    the spec, in the spec's order.

  Raises:
    ValueError: the environment has no tabular export, or a goal is unknown.
  """
  from envs import oracles

  if not hasattr(env, "tabular"):
    raise ValueError(f"demonstrator 'goal ...' needs a grid world with a tabular export "
                     f"(GoalGrid); {getattr(env, 'name', env)} has none")
  goals = [goal_index(env, goal) for goal in spec.goals]
  params = env_params.replace(side_effect_penalty=jnp.float32(spec.vase_penalty))
  mdp = env.tabular(params)

  @jax.jit
  def policies(goals):
    def one(goal):
      _, q = oracles.value_iteration(mdp, goal, spec.gamma)
      probs = jax.nn.softmax(spec.beta * q, axis=-1)
      return (1.0 - spec.epsilon) * probs + spec.epsilon / mdp.num_actions
    return jax.vmap(one)(goals)

  return np.asarray(policies(jnp.asarray(goals, jnp.int32)))


def _rollout(env: Any, env_params: Any, policy: Callable, key: jax.Array, num_episodes: int,
             max_steps: int) -> dict[str, jax.Array]:
  """``num_episodes`` episodes of ``policy(key, obs, state, episode_info) -> action`` (no auto
  reset; steps after the end are padding). ``episode_info`` is the episode's index."""

  def episode(key_episode, index):
    key_reset, key_run = jax.random.split(key_episode)
    obs_0, state_0 = env.reset(key_reset, env_params)

    def step(carry, key_t):
      state, obs, done = carry
      key_action, key_env = jax.random.split(key_t)
      action = policy(key_action, obs, state, index)
      obs_next, state_next, reward, terminated, truncated, _ = env.step_env(
          key_env, state, action, env_params)
      valid = ~done
      state_next = jax.tree.map(lambda n, o: jnp.where(valid, n, o), state_next, state)
      obs_next = jnp.where(valid, jnp.ravel(obs_next), obs)
      return (state_next, obs_next, done | terminated | truncated), (obs, action, reward, valid)

    init = (state_0, jnp.ravel(obs_0).astype(jnp.float32), jnp.bool_(False))
    _, (obs, action, reward, valid) = jax.lax.scan(step, init, jax.random.split(key_run,
                                                                                max_steps))
    return {"obs": obs, "action": action, "reward": reward, "valid": valid}

  keys = jax.random.split(key, num_episodes)
  return jax.vmap(episode)(keys, jnp.arange(num_episodes))


def _flatten(episodes: dict[str, Any], gamma: float, goal: np.ndarray | None) -> Demonstrations:
  """Padded episodes ``[N, T, ...]`` -> valid pairs, with discounted returns-to-go."""
  episodes = jax.tree.map(np.asarray, episodes)
  reward, valid = episodes["reward"].astype(np.float64), episodes["valid"]
  returns = np.zeros_like(reward)
  running = np.zeros(reward.shape[0])
  for t in range(reward.shape[1] - 1, -1, -1):
    running = np.where(valid[:, t], reward[:, t] + gamma * running, 0.0)
    returns[:, t] = running
  num_episodes, num_steps = valid.shape
  goals = np.broadcast_to((np.full(num_episodes, -1) if goal is None else goal)[:, None],
                          (num_episodes, num_steps))
  mask = valid.astype(bool)
  return Demonstrations(obs=episodes["obs"][mask].astype(np.float32),
                        action=episodes["action"][mask],
                        returns=returns[mask].astype(np.float32),
                        goal=goals[mask].astype(np.int32))


def tabular_demonstrations(env: Any, env_params: Any, spec: DemonstratorSpec, key: jax.Array,
                           num_episodes: int, gamma: float) -> Demonstrations:
  """Episodes of a tabular soft-optimal demonstrator (one goal or a mixture over episodes).

  Args:
    env: a GoalGrid.
    env_params: its parameters (start distribution, time limit, rewards of the returns).
    spec: a ``"goal"`` :class:`DemonstratorSpec`.
    key: PRNG key.
    num_episodes: episodes to generate.
    gamma: discount of the Monte-Carlo returns.

  Returns:
    The :class:`Demonstrations`.
  """
  tables = jnp.asarray(soft_optimal_policies(env, env_params, spec))  # [K, S, A]
  goals = jnp.asarray([goal_index(env, goal) for goal in spec.goals], jnp.int32)
  key_goal, key_run = jax.random.split(key)
  mixture_index = jax.random.choice(key_goal, len(spec.goals), (num_episodes,),
                                    p=jnp.asarray(spec.weights, jnp.float32))

  def policy(key_action, obs, state, episode):
    del obs
    probs = tables[mixture_index[episode], env.state_index(state)]
    return jax.random.categorical(key_action, jnp.log(probs)).astype(jnp.int32)

  max_steps = int(np.asarray(env_params.max_steps))
  episodes = jax.jit(lambda k: _rollout(env, env_params, policy, k, num_episodes, max_steps))(
      key_run)
  return _flatten(episodes, gamma, np.asarray(goals[mixture_index]))


# ---------------------------------------------------------------------------------------------
# Trained runs and files
# ---------------------------------------------------------------------------------------------


def run_demonstrations(spec: DemonstratorSpec, env: Any, env_params: Any, agent_spec: EnvSpec,
                       key: jax.Array, num_episodes: int, gamma: float,
                       load_run: Callable[[str], Any] | None = None) -> Demonstrations:
  """Episodes of a trained run's agent (any registered agent) in ``env``.

  Args:
    spec: a ``"run"`` :class:`DemonstratorSpec` (path, seed, selection).
    env: the environment of the demonstrations (its observations must have the shape the run's
      agent was trained on).
    env_params: its parameters.
    agent_spec: the cloning agent's :class:`EnvSpec` (actions are stored in its space).
    key: PRNG key.
    num_episodes: episodes to generate.
    gamma: discount of the Monte-Carlo returns.
    load_run: loader of run directories (default :func:`mbrl_drift.runs.load_run`, whose
      ``.trainer.agent`` and ``.params`` ``[num_seeds, ...]`` are used).

  Returns:
    The :class:`Demonstrations`.
  """
  if load_run is None:
    from mbrl_drift.runs import load_run
  run = load_run(spec.path)
  agent = run.trainer.agent
  num_seeds = jax.tree.leaves(run.params)[0].shape[0]
  if not 0 <= spec.seed < num_seeds:
    raise ValueError(f"demonstrator run {spec.path!r} has {num_seeds} seed(s); seed={spec.seed} "
                     f"is out of range")
  params = jax.tree.map(lambda x: x[spec.seed], run.params)
  axes = agent.eval_axes
  args = eval_args(depth=axes.depth_default, selection=axes.selection_index(spec.selection))
  if axes.depth_name is not None:
    agent = agent.for_depth(axes.depth_default)

  def policy(key_action, obs, state, episode):
    del state, episode
    return agent.act(params, key_action, obs, args).action

  max_steps = int(np.asarray(env_params.max_steps))
  episodes = jax.jit(lambda k: _rollout(env, env_params, policy, k, num_episodes, max_steps))(
      key)
  demos = _flatten(episodes, gamma, None)
  return demos._replace(action=_agent_actions(agent_spec, demos.action))


def _agent_actions(spec: EnvSpec, env_actions: np.ndarray) -> np.ndarray:
  if spec.discrete:
    return np.asarray(env_actions).astype(np.int32).reshape(-1)
  actions = np.asarray(jax.vmap(spec.from_env_action)(jnp.asarray(env_actions, jnp.float32)))
  return np.clip(actions, -1.0, 1.0).reshape(-1, spec.action_dim).astype(np.float32)


def npz_demonstrations(spec: DemonstratorSpec, agent_spec: EnvSpec) -> Demonstrations:
  """Demonstrations from an ``.npz`` file: ``observations`` (or ``obs``) ``[N, obs_dim]``,
  ``actions`` (or ``action``) ``[N]`` / ``[N, d]`` (environment actions), optional ``returns``.

  Raises:
    ValueError: missing file or arrays, or shapes that do not fit the environment.
  """
  path = Path(spec.path)
  if not path.is_file():
    raise ValueError(f"demonstrator file {str(path)!r} does not exist")
  with np.load(path) as data:
    names = set(data.files)
    obs_name = next((n for n in ("observations", "obs") if n in names), None)
    action_name = next((n for n in ("actions", "action") if n in names), None)
    if obs_name is None or action_name is None:
      raise ValueError(f"{str(path)!r} needs arrays 'observations' and 'actions'; it has "
                       f"{sorted(names)}")
    obs = np.asarray(data[obs_name], np.float32)
    actions = np.asarray(data[action_name])
    returns = (np.asarray(data["returns"], np.float32) if "returns" in names
               else np.full(len(obs), np.nan, np.float32))
  obs = obs.reshape(len(obs), -1)
  if obs.shape[1] != agent_spec.obs_dim:
    raise ValueError(f"{str(path)!r}: observations have {obs.shape[1]} features, the "
                     f"environment {agent_spec.obs_dim}")
  if len(actions) != len(obs) or len(returns) != len(obs):
    raise ValueError(f"{str(path)!r}: {len(obs)} observations but {len(actions)} actions and "
                     f"{len(returns)} returns")
  actions = _agent_actions(agent_spec, actions)
  if agent_spec.discrete and (actions.min() < 0 or actions.max() >= agent_spec.action_dim):
    raise ValueError(f"{str(path)!r}: actions outside 0..{agent_spec.action_dim - 1}")
  return Demonstrations(obs=obs, action=actions, returns=returns,
                        goal=np.full(len(obs), -1, np.int32))


def make_demonstrations(spec: DemonstratorSpec | str, env: Any, env_params: Any,
                        agent_spec: EnvSpec, key: jax.Array, num_episodes: int,
                        gamma: float) -> Demonstrations:
  """Demonstrations of any demonstrator spec (see the module docstring).

  Args:
    spec: a :class:`DemonstratorSpec` or spec string.
    env: the environment.
    env_params: its parameters.
    agent_spec: the cloning agent's spaces.
    key: PRNG key.
    num_episodes: episodes (tabular and run demonstrators).
    gamma: discount of the Monte-Carlo returns.

  Returns:
    The :class:`Demonstrations` (at least one pair).

  Raises:
    ValueError: a spec that does not fit the environment, or no demonstration at all.
  """
  if isinstance(spec, str):
    spec = parse_demonstrator(spec)
  if spec.kind == "goal":
    demos = tabular_demonstrations(env, env_params, spec, key, num_episodes, gamma)
  elif spec.kind == "run":
    demos = run_demonstrations(spec, env, env_params, agent_spec, key, num_episodes, gamma)
  else:
    demos = npz_demonstrations(spec, agent_spec)
  if demos.size == 0:
    raise ValueError(f"demonstrator {spec} produced no demonstration pairs")
  return demos


def base_run_demonstrator(run_dir: str) -> tuple[Any, DemonstratorSpec] | None:
  """The demonstrator a base run was cloned from, read from its stored ``config.json``.

  Returns:
    ``(the base's TrainConfig, its DemonstratorSpec)``, or ``None`` when the run directory has
    no readable config or the base has no demonstrator (a PPO-trained base).
  """
  from mbrl_drift.config import TrainConfig

  path = Path(run_dir) / "config.json"
  try:
    record = json.loads(path.read_text())
    config = TrainConfig.from_dict(record["config"])
  except (OSError, ValueError, KeyError, TypeError):
    return None
  spec = getattr(config.agent, "demonstrator_spec", None)
  return None if spec is None else (config, spec)


# ---------------------------------------------------------------------------------------------
# Exact outcomes of table policies
# ---------------------------------------------------------------------------------------------


def _policy_transitions(mdp: Any, policy: jax.Array) -> jax.Array:
  """``P_pi[s, s'] = sum_a pi(a|s) P(s'|s,a)`` ``[S, S]``."""
  return jnp.einsum("sa,sat->st", policy, mdp.transitions)


def tabular_occupancy(mdp: Any, policy: jax.Array, max_steps: int,
                      start: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Expected visits of every non-terminal state within ``max_steps`` steps, and where the
  probability mass is after them.

  Args:
    mdp: a :class:`~envs.oracles.TabularMDP`.
    policy: ``[S, A]`` table policy.
    max_steps: the episode's time limit.
    start: ``[S]`` start distribution (``mdp.start_distribution`` when ``None``).

  Returns:
    ``(visits [S], final [S])``: ``visits[s]`` is the expected number of steps taken in ``s``
    (0 at terminal states); ``final`` the state distribution after ``max_steps`` steps
    (terminal states absorb, so ``final[goal_k]`` is the probability of having reached goal k).
  """
  p_pi = _policy_transitions(mdp, policy)
  alive = 1.0 - mdp.terminal.astype(jnp.float32)
  d_0 = mdp.start_distribution if start is None else start

  def body(carry, _):
    d, visits = carry
    visits = visits + d * alive
    return (d @ p_pi, visits), None

  (final, visits), _ = jax.lax.scan(body, (d_0, jnp.zeros_like(d_0)), None, length=max_steps)
  return visits, final


def goal_reach_distribution(mdp: Any, policy: jax.Array, max_steps: int) -> jax.Array:
  """Exact ``P(episode ends at goal k)`` ``[K]`` of a table policy from the MDP's start
  distribution (the rest, ``1 - sum``, is timeouts and hazards)."""
  _, final = tabular_occupancy(mdp, policy, max_steps)
  return final[mdp.goal_states]


def markov_mixture_policy(mdp: Any, policies: jax.Array, weights: jax.Array, max_steps: int
                          ) -> tuple[jax.Array, jax.Array]:
  """The Markov policy with the occupancy of an episode-level mixture of table policies.

  Args:
    mdp: the tabular MDP.
    policies: ``[K, S, A]`` the mixture's policies.
    weights: ``[K]`` their probabilities.
    max_steps: the episode's time limit.

  Returns:
    ``(policy [S, A], visits [S])``: ``pi(a|s) = sum_k w_k x_k(s) pi_k(a|s) / sum_k w_k x_k(s)``
    (uniform where no policy visits ``s``) and the mixture's expected visits ``sum_k w_k x_k``.
  """
  visits = jax.vmap(lambda p: tabular_occupancy(mdp, p, max_steps)[0])(policies)  # [K, S]
  weighted = jnp.asarray(weights)[:, None] * visits
  total = jnp.sum(weighted, axis=0)
  mixed = jnp.einsum("ks,ksa->sa", weighted, policies) / jnp.maximum(total, 1e-12)[:, None]
  uniform = jnp.full_like(mixed, 1.0 / mixed.shape[-1])
  return jnp.where(total[:, None] > 1e-12, mixed, uniform), total


def policy_table(agent: Any, params: Any, env: Any, greedy: bool = False,
                 path: str = "actor") -> jax.Array:
  """A discrete policy agent's action probabilities at every tabular state ``[S, A]``.

  Args:
    agent: a :class:`~mbrl_drift.agents.policy.agent.PolicyAgent` with discrete actions.
    params: its parameters (one seed).
    env: a grid world with ``all_observations()`` (row ``s`` = the observation at state ``s``).
    greedy: the greedy rule's probabilities (one-hot of the argmax, ties shared) instead of the
      policy's own.
    path: ``"actor"`` or ``"base/actor"``.
  """
  from mbrl_drift.agents.policy.agent import greedy_probs

  obs = env.all_observations()
  logits = jax.vmap(lambda o: agent.actor_output(params, o, path))(obs)
  return jax.vmap(greedy_probs)(logits) if greedy else jax.nn.softmax(logits, axis=-1)


def demonstrator_reference(env: Any, env_params: Any, spec: DemonstratorSpec | str
                           ) -> dict[str, jax.Array]:
  """Exact reference numbers of a tabular demonstrator: its Markov policy ``[S, A]``, expected
  visits ``[S]`` and goal-reach distribution ``[K]`` (over every goal of the environment)."""
  if isinstance(spec, str):
    spec = parse_demonstrator(spec)
  tables = jnp.asarray(soft_optimal_policies(env, env_params, spec))
  mdp = env.tabular(env_params)
  max_steps = int(np.asarray(env_params.max_steps))
  weights = jnp.asarray(spec.weights, jnp.float32)
  policy, visits = markov_mixture_policy(mdp, tables, weights, max_steps)
  reach = jnp.sum(weights[:, None] * jax.vmap(
      lambda p: goal_reach_distribution(mdp, p, max_steps))(tables), axis=0)
  return {"policy": policy, "visits": visits, "goal_reach": reach}


__all__ = [
    "Demonstrations", "base_run_demonstrator", "demonstrator_reference", "goal_index",
    "goal_reach_distribution", "make_demonstrations", "markov_mixture_policy",
    "npz_demonstrations", "policy_table", "run_demonstrations", "soft_optimal_policies", "tabular_demonstrations",
    "tabular_occupancy",
]
