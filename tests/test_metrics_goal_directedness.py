"""Goal-directedness validated on control policies whose answer is known by construction.

Every built-in GoalGrid layout and a random solvable layout: an oracle for goal k is coherent
towards k, the uniform policy and an aimless deterministic policy are not, and a policy that
walks every start to one non-goal cell is found by per-cell MEG and endpoint dispersion.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import layouts as layouts_lib
from envs import oracles
from envs.goal_grid import GoalGrid
from mbrl_drift.metrics import controls
from mbrl_drift.metrics import goal_directedness as gd
from mbrl_drift.metrics import outcomes
from mbrl_drift.metrics import policy_compare

NUM_EPISODES = 64
GAMMA = gd.DEFAULT_GAMMA
LAYOUTS = ("GoalGrid-OpenRoom", "GoalGrid-FourRooms", "GoalGrid-ForkMaze", "random")


def random_layout(seed: int, height: int = 7, width: int = 9, num_goals: int = 3,
                  wall_fraction: float = 0.2) -> str:
  """A random solvable layout: border walls, random inner walls, goals on random free cells."""
  rng = np.random.default_rng(seed)
  while True:
    grid = np.full((height, width), ".")
    grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = "#"
    inner = rng.random((height - 2, width - 2)) < wall_fraction
    grid[1:-1, 1:-1][inner] = "#"
    free = np.argwhere(grid == ".")
    if len(free) < num_goals + 4:
      continue
    for label, index in zip("ABCDEFGHIJ", rng.choice(len(free), num_goals, replace=False)):
      grid[tuple(free[index])] = label
    text = "\n".join("".join(row) for row in grid)
    try:
      layouts_lib.parse_layout(text)  # rejects layouts with an unreachable goal
    except ValueError:
      continue
    return text


class Setup:
  """One layout with random starts, its tabular MDP and both planning models."""

  def __init__(self, name: str):
    if name == "random":
      self.env = GoalGrid(layout=random_layout(seed=7), random_start=True)
    else:
      self.env, _ = envs.make(name)
    self.params = self.env.make_params(random_start=True)
    self.mdp = self.env.tabular(self.params)
    self.goal_model = gd.planning_model(self.mdp, gamma=GAMMA)
    self.cell_model = gd.planning_model(self.mdp, gd.cell_target_rewards(self.mdp), gamma=GAMMA)
    self.num_states = self.env.num_states
    self.oracles = _all_oracles(self.mdp)  # [K, S, A]

  def rollout(self, policy, seed=0):
    return controls.rollout_tabular_policy(
        jax.random.key(seed), self.env, self.params, policy, NUM_EPISODES)

  def scores(self, model, trajectories, normalisation="optimal"):
    return np.asarray(_meg_scores(model, trajectories, self.num_states, normalisation))

  def analyse(self, trajectories):
    """Goal and cell MEG, goal identification and endpoint dispersion, in one compiled call."""
    result = _analyse(self.goal_model, self.cell_model, trajectories, self.num_states)
    return jax.tree.map(np.asarray, result)


@jax.jit
def _all_oracles(mdp):
  return oracles.policy_for_all_goals(mdp, GAMMA)


@functools.partial(jax.jit, static_argnames=("num_states", "normalisation"))
def _meg_scores(model, trajectories, num_states, normalisation):
  counts = jnp.sum(gd.visit_counts(trajectories, num_states, 4), axis=0)
  return gd.meg_from_terms(gd.meg_terms(model, counts), normalisation)[0]


@functools.partial(jax.jit, static_argnames=("num_states",))
def _analyse(goal_model, cell_model, trajectories, num_states):
  counts = jnp.sum(gd.visit_counts(trajectories, num_states, 4), axis=0)
  posterior = gd.posterior_from_log_likelihoods(
      gd.step_log_likelihoods(goal_model, trajectories))
  steps, map_goal, identified = gd.time_to_identification(
      posterior.posterior, trajectories.length)
  return {
      "goal_scores": gd.meg_from_terms(gd.meg_terms(goal_model, counts))[0],
      "cell_scores": gd.meg_from_terms(gd.meg_terms(cell_model, counts))[0],
      "steps": steps,
      "map_goal": map_goal,
      "identified": identified,
      "length": trajectories.length,
      "reached_goal": trajectories.reached_goal,
      "endpoints": outcomes.endpoint_dispersion(outcomes.final_index(trajectories), num_states),
  }


@functools.lru_cache(maxsize=None)
def _setup(name: str) -> Setup:
  return Setup(name)


@pytest.fixture(scope="module", params=LAYOUTS)
def setup(request) -> Setup:
  return _setup(request.param)


def test_random_layout_is_reproducible_and_solvable():
  assert random_layout(seed=7) == random_layout(seed=7)
  layout = layouts_lib.parse_layout(random_layout(seed=7))
  assert layout.num_goals == 3


def test_planning_model_matches_the_oracles():
  # Exact parity with envs.oracles.soft_value_iteration on the environment's reward, with slip
  # (several successors per action) and with both terminal conventions, when ties are kept as
  # soft value iteration weights them (tie_invariant=False).
  env, _ = envs.make("GoalGrid-ForkMaze")
  mdp = env.tabular(env.make_params(slip_prob=0.2))
  goals = jnp.arange(env.num_goals)
  betas = jnp.array([0.3, 30.0, 3000.0])
  for entropy_after_termination in (True, False):
    model = gd.planning_model(mdp, mdp.rewards, betas=betas, gamma=0.9, num_iters=200,
                              entropy_after_termination=entropy_after_termination,
                              tie_invariant=False)
    expected = _oracle_soft_policies(mdp, goals, betas, entropy_after_termination)
    np.testing.assert_allclose(jnp.exp(model.log_policy), expected, atol=1e-4)
  optimal = jax.jit(oracles.policy_for_all_goals, static_argnums=3)(mdp, 0.9, None, 200)
  np.testing.assert_array_equal(model.num_optimal, jnp.sum(optimal > 0, axis=-1))


@functools.partial(jax.jit, static_argnums=3)
def _oracle_soft_policies(mdp, goals, betas, entropy_after_termination):
  def policy(goal, beta):
    return oracles.soft_value_iteration(
        mdp, goal, beta, 0.9, 200, entropy_after_termination=entropy_after_termination)[2]
  return jax.vmap(jax.vmap(policy, (None, 0)), (0, None))(goals, betas)


def test_oracle_policies_are_coherent_towards_their_goal(setup):
  for goal in range(setup.env.num_goals):
    # Uniform over tied optimal actions, and a deterministic tie-break: both fully optimal.
    tied = setup.oracles[goal]
    deterministic = jax.nn.one_hot(jnp.argmax(tied, axis=-1), 4)
    for policy in (tied, deterministic):
      result = setup.analyse(setup.rollout(policy, seed=goal))
      assert np.all(result["reached_goal"] == goal)
      scores = result["goal_scores"]
      assert scores.max() >= 0.9, scores
      assert int(np.argmax(scores)) == goal, scores
      assert np.all(result["map_goal"] == goal)
      identified = result["identified"]
      assert identified.mean() >= 0.9
      assert np.all(result["steps"][identified] <= result["length"][identified])


def test_uniform_policy_is_not_goal_directed(setup):
  result = setup.analyse(setup.rollout(controls.uniform_table(setup.num_states, 4)))
  assert result["goal_scores"].max() <= 0.1
  assert result["cell_scores"].max() <= 0.1


def test_aimless_deterministic_policy_has_low_coherence_and_dispersed_endpoints(setup):
  policy = controls.random_deterministic_table(jax.random.key(11), setup.num_states, 4)
  assert float(policy_compare.policy_entropy(policy)) == 0.0
  result = setup.analyse(setup.rollout(policy))
  assert result["goal_scores"].max() <= 0.1
  assert result["endpoints"]["distinct"] >= 4
  assert result["endpoints"]["top_share"] <= 0.5


def _concentration_target(mdp) -> int:
  """A non-terminal cell where a move into a wall keeps the agent in place."""
  next_state = np.asarray(mdp.next_state)
  terminal = np.asarray(mdp.terminal)
  candidates = [s for s in range(next_state.shape[0])
                if not terminal[s] and np.any(next_state[s] == s)]
  return candidates[len(candidates) // 2]


def test_policy_that_gathers_every_start_in_one_cell_is_found(setup):
  target = _concentration_target(setup.mdp)
  result = setup.analyse(setup.rollout(controls.go_to_cell_table(setup.mdp, target)))
  endpoints = result["endpoints"]
  assert int(endpoints["top_cell"]) == target
  assert endpoints["top_share"] >= 0.9
  assert endpoints["entropy_bits"] <= 0.5
  cell_scores = result["cell_scores"]
  assert int(np.argmax(cell_scores)) == target
  assert cell_scores.max() >= 0.9
  assert result["goal_scores"].max() <= 0.1


def test_literal_normalisation_is_the_per_step_definition():
  # m = max_beta E[sum_t log pi_beta + log|A|] / (T log|A|), computed here step by step.
  setup = _setup("GoalGrid-OpenRoom")
  trajectories = setup.rollout(setup.oracles[0])
  per_step = gd.step_log_likelihoods(setup.goal_model, trajectories)  # [N, T, K, B]
  valid = trajectories.valid[..., None, None]
  numerator = jnp.sum(jnp.where(valid, per_step + jnp.log(4.0), 0.0), axis=(0, 1))
  expected = jnp.clip(jnp.max(numerator, axis=-1) / (jnp.sum(trajectories.valid)
                                                      * jnp.log(4.0)), 0.0, 1.0)
  literal = setup.scores(setup.goal_model, trajectories, normalisation="uniform")
  np.testing.assert_allclose(literal, expected, rtol=1e-4, atol=1e-6)
  # In an open room most cells have two shortest moves, so the literal score of an optimal
  # agent stays well below 1 while the tie-aware score does not.
  assert 0.5 < literal[0] < 0.85
  assert setup.scores(setup.goal_model, trajectories)[0] >= 0.9


def test_meg_terms_add_up_over_episodes():
  setup = _setup("GoalGrid-ForkMaze")
  trajectories = setup.rollout(controls.uniform_table(setup.num_states, 4))
  counts = gd.visit_counts(trajectories, setup.num_states, 4)
  np.testing.assert_allclose(jnp.sum(counts), jnp.sum(trajectories.length))
  per_episode = gd.meg_terms(setup.goal_model, counts)
  pooled = gd.meg_terms(setup.goal_model, jnp.sum(counts, axis=0))
  for summed, direct in zip(jax.tree.leaves(per_episode), jax.tree.leaves(pooled)):
    np.testing.assert_allclose(jnp.sum(summed, axis=0), direct, rtol=1e-4, atol=1e-3)


def test_bad_normalisation_is_a_value_error():
  setup = _setup("GoalGrid-ForkMaze")
  counts = jnp.zeros((setup.num_states, 4))
  with pytest.raises(ValueError, match="normalisation"):
    gd.meg_from_terms(gd.meg_terms(setup.goal_model, counts), "softmax")


def test_planning_model_rejects_bad_settings():
  setup = _setup("GoalGrid-ForkMaze")
  with pytest.raises(ValueError, match="gamma"):
    gd.planning_model(setup.mdp, gamma=1.0)
  with pytest.raises(ValueError, match="num_iters"):
    gd.planning_model(setup.mdp, num_iters=0)


def test_time_to_identification_on_a_constructed_posterior():
  # Episode 0 settles on goal 1 from step 2 on; episode 1 dips at step 3 and settles at 4;
  # episode 2 never reaches the threshold.
  p1 = jnp.array([[0.5, 0.6, 0.95, 0.97, 0.99, 0.99],
                  [0.5, 0.95, 0.95, 0.4, 0.92, 0.93],
                  [0.5, 0.6, 0.7, 0.8, 0.8, 0.8]])
  posterior = jnp.stack([1.0 - p1, p1], axis=-1)
  length = jnp.array([5, 5, 5])
  steps, map_goal, identified = gd.time_to_identification(posterior, length, threshold=0.9)
  np.testing.assert_array_equal(map_goal, [1, 1, 1])
  np.testing.assert_array_equal(identified, [True, True, False])
  np.testing.assert_array_equal(steps[:2], [2.0, 4.0])
  assert np.isnan(float(steps[2]))
  # Entries after the end of an episode are ignored.
  steps_short, _, _ = gd.time_to_identification(posterior, jnp.array([2, 2, 2]), 0.9)
  np.testing.assert_array_equal(steps_short[:2], [2.0, 1.0])


def test_posterior_with_fixed_rationality_and_evidence():
  setup = _setup("GoalGrid-ForkMaze")
  trajectories = setup.rollout(setup.oracles[2])
  per_step = gd.step_log_likelihoods(setup.goal_model, trajectories)
  chosen = gd.posterior_from_log_likelihoods(per_step)
  assert int(chosen.beta_index) == int(jnp.argmax(chosen.log_evidence))
  fixed = gd.posterior_from_log_likelihoods(per_step, beta_index=0)
  # At the lowest rationality every goal explains the episodes almost equally.
  assert float(jnp.max(fixed.posterior[:, -1])) < float(jnp.min(
      jnp.max(chosen.posterior[:, -1], axis=-1)))
  np.testing.assert_allclose(jnp.sum(chosen.posterior, axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(chosen.posterior[:, 0], 1.0 / setup.env.num_goals, rtol=1e-6)
