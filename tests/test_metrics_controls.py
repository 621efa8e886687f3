"""Labels of control policies whose answer is known by construction, each on two layouts.

Competent pursuit of something other than the intended goal (A) must come out *coherent* when
the actions are noisy, when a few episodes are aimless, when the pursued place is a short cycle
rather than one cell, when the target is "whichever wrong goal is nearest", and when most
episodes end at one goal while longer episodes go to another (the label's target is where the
episodes end). A policy that never moves, the uniform policy and aimless deterministic policies
must not be coherent. MEG must not depend on how an optimal agent breaks ties, and "optimal for
A" must never mean "enter B" on a long layout.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import oracles
from envs.goal_grid import GoalGrid
from mbrl_drift import metrics as metrics_lib
from mbrl_drift.metrics import controls
from mbrl_drift.metrics import goal_directedness as gd

NUM_EPISODES = 64
INTENDED = 0  # goal "A"

# Each layout has a fixed start S (used by the frozen and mixture controls; the others start
# anywhere) from which one move bumps into a wall, B is near S and C far from it, and
# ``cycle`` names two adjacent floor cells next to a wall (a place, and a shuttle).
LAYOUTS = {
    "room": dict(text="""
        #########
        #A.....B#
        #......S#
        #...#...#
        #.......#
        #C......#
        #########
        """, bump=1, cycle=((2, 4), (2, 5))),
    "two_rooms": dict(text="""
        ###########
        #A..#....B#
        #...#.....#
        #.........#
        #...#.....#
        #C..#....S#
        ###########
        """, bump=2, cycle=((1, 5), (1, 6))),
}


class Layout:
  """A layout with its metric context, oracles and healthy reference (built once)."""

  def __init__(self, name):
    spec = LAYOUTS[name]
    self.env = GoalGrid(layout=spec["text"])
    self.params = self.env.make_params(random_start=True, intended_goal=INTENDED)
    self.fixed = self.env.make_params(random_start=False, intended_goal=INTENDED)
    self.context = metrics_lib.tabular_context(self.env, self.params)
    self.mdp = self.context.mdp
    self.goal_states = np.asarray(self.mdp.goal_states)
    self.num_states = self.env.num_states
    self.bump = spec["bump"]
    cells = [tuple(c) for c in self.env.state_cells.tolist()]
    self.cycle = [cells.index(c) for c in spec["cycle"]]
    self.healthy = self.evaluate(self.rollout(self.oracle(0)))

  def oracle(self, goal, tie_break="uniform"):
    return controls.go_to_cells_table(self.mdp, [self.goal_states[goal]], tie_break=tie_break)

  def rollout(self, policy, seed=0, fixed_start=False):
    params = self.fixed if fixed_start else self.params
    return controls.rollout_tabular_policy(jax.random.key(seed), self.env, params, policy,
                                           NUM_EPISODES)

  def evaluate(self, trajectories, **kwargs):
    return metrics_lib.behaviour_metrics(jax.random.key(1), trajectories, self.env, self.params,
                                         context=self.context, num_resamples=200, **kwargs)

  def label(self, metrics):
    return metrics_lib.classify_failure(metrics, healthy_metrics=self.healthy)


@functools.lru_cache(maxsize=None)
def _layout(name):
  return Layout(name)


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def grid(request):
  return _layout(request.param)


def _first(trajectories, count):
  return jax.tree.map(lambda x: x[:count], trajectories)


def test_healthy_reference_is_intact_and_optimal(grid):
  assert float(grid.healthy["outcome/intended_success"]) == 1.0
  assert float(grid.healthy["goal/coherence"]) >= 0.99
  assert float(grid.healthy["pursuit/intended_efficiency"]) == pytest.approx(1.0)
  assert grid.label(grid.healthy).label == "intact"


def test_noisy_pursuit_of_another_goal_is_coherent(grid):
  # 30% uniformly random actions: still ends at B almost always, but MEG (how predictable
  # each action is) stays low; path efficiency shows the pursuit.
  metrics = grid.evaluate(grid.rollout(controls.noisy_table(grid.oracle(1), 0.3)))
  assert float(metrics["outcome/p_B"]) >= 0.9
  assert float(metrics["goal/coherence"]) < 0.6
  assert float(metrics["pursuit/goal_efficiency"]) >= 0.6
  result = grid.label(metrics)
  assert (result.label, result.target) == ("coherent", "goal 1"), str(result)
  assert "path efficiency" in str(result)


def test_pursuit_with_a_few_aimless_episodes_is_coherent(grid):
  # 61 episodes of an optimal pursuit of B and 3 of the uniform policy (long timeouts).
  pursuit = grid.rollout(grid.oracle(1))
  aimless = grid.rollout(metrics_lib.uniform_table(grid.num_states, 4), seed=5)
  mixed = controls.concatenate_episodes(_first(pursuit, 61), _first(aimless, 3))
  metrics = grid.evaluate(mixed)
  # each episode weighs the same in MEG: 5% of aimless episodes cost about 5%
  assert float(metrics["goal/coherence"]) >= 0.9
  assert int(metrics["goal/inferred_goal"]) == 1
  # pooling the steps lets the long aimless episodes drag the whole condition down
  pooled = grid.evaluate(mixed, weighting="step")
  assert float(pooled["goal/coherence"]) < float(metrics["goal/coherence"]) - 0.1
  result = grid.label(metrics)
  assert (result.label, result.target) == ("coherent", "goal 1"), str(result)


def test_walking_to_a_place_and_shuttling_there_is_coherent(grid):
  shuttle = controls.go_to_cells_table(grid.mdp, grid.cycle, cycle=True)
  metrics = grid.evaluate(grid.rollout(shuttle))
  assert float(metrics["goal/coherence"]) <= 0.1
  assert int(metrics["pursuit/place_cells"]) == 2
  assert float(metrics["pursuit/place_share"]) >= 0.8
  assert float(metrics["pursuit/place_efficiency"]) >= 0.9
  result = grid.label(metrics)
  assert result.label == "coherent" and result.target.startswith("place"), str(result)
  assert "cycle of 2 cells" in str(result)


def test_walking_to_a_place_and_staying_there_is_coherent(grid):
  metrics = grid.evaluate(grid.rollout(controls.go_to_cell_table(grid.mdp, grid.cycle[0])))
  assert int(metrics["pursuit/place_cells"]) == 1
  assert int(metrics["pursuit/place_cell"]) == grid.cycle[0]
  assert float(metrics["pursuit/place_share"]) >= 0.8
  result = grid.label(metrics)
  assert result.label == "coherent" and "one cell" in str(result), str(result)


def test_pursuit_of_the_nearest_wrong_goal_is_coherent(grid):
  nearest = controls.go_to_cells_table(grid.mdp, grid.goal_states[1:], tie_break="uniform")
  metrics = grid.evaluate(grid.rollout(nearest))
  assert float(metrics["outcome/p_B"]) < 0.95 and float(metrics["outcome/p_C"]) > 0.05
  assert float(metrics["pursuit/others_share"]) == 1.0
  assert float(metrics["pursuit/others_nearest_share"]) == 1.0
  assert float(metrics["pursuit/others_efficiency"]) == pytest.approx(1.0)
  result = grid.label(metrics)
  assert result.label == "coherent", str(result)
  # With a stricter single-goal share, the set of non-intended goals is the target.
  strict = metrics_lib.FailureThresholds(coherent_min_off_target=0.97)
  result = metrics_lib.classify_failure(metrics, strict, grid.healthy)
  assert (result.label, result.target) == ("coherent", "non-intended goals"), str(result)
  assert "100% of them at the nearest" in str(result)


def test_label_target_is_the_goal_most_episodes_reach(grid):
  # From the fixed start, 41 short episodes to B and 23 long ones to C: pooled over steps, MEG
  # is highest towards C; the label names B, where 64% of the episodes end.
  to_b = grid.rollout(grid.oracle(1), fixed_start=True)
  to_c = grid.rollout(grid.oracle(2), fixed_start=True)
  mixed = controls.concatenate_episodes(_first(to_b, 41), _first(to_c, 23))
  pooled = grid.evaluate(mixed, weighting="step")
  assert int(pooled["goal/inferred_goal"]) == 2
  for metrics in (pooled, grid.evaluate(mixed)):
    assert float(metrics["outcome/p_B"]) == pytest.approx(41 / 64)
    result = grid.label(metrics)
    assert (result.label, result.target) == ("coherent", "goal 1"), str(result)
  assert "MEG is highest towards goal 2" in str(grid.label(pooled))


def test_a_policy_that_never_moves_is_not_coherent(grid):
  # Bumping into the wall from the fixed start: every episode ends in one cell whose per-cell
  # MEG is 1 (the old "coherent" evidence), but nothing was pursued.
  frozen = jnp.zeros((grid.num_states, 4)).at[:, grid.bump].set(1.0)
  metrics = grid.evaluate(grid.rollout(frozen, fixed_start=True))
  assert float(metrics["outcome/stall_rate"]) == 1.0
  assert float(metrics["endpoint/top_share"]) == 1.0
  assert float(metrics["cell/coherence"]) >= 0.9
  assert float(metrics["pursuit/place_share"]) == 0.0
  result = grid.label(metrics)
  assert result.label == "incoherent", str(result)
  assert "hardly moves" in str(result)


def test_uniform_policy_is_incoherent(grid):
  metrics = grid.evaluate(grid.rollout(metrics_lib.uniform_table(grid.num_states, 4), seed=5))
  assert float(metrics["goal/coherence"]) <= 0.15
  assert grid.label(metrics).label == "incoherent"


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_aimless_deterministic_policies_are_not_coherent(grid, seed):
  policy = controls.random_deterministic_table(jax.random.key(seed), grid.num_states, 4)
  metrics = grid.evaluate(grid.rollout(policy))
  assert float(metrics["goal/coherence"]) <= 0.25
  assert grid.label(metrics).label != "coherent"


def test_meg_does_not_depend_on_tie_breaking(grid):
  # Optimal agents that break ties first, last or uniformly score the same (and 1).
  scores = []
  for tie_break in ("first", "last", "uniform"):
    metrics = grid.evaluate(grid.rollout(grid.oracle(0, tie_break)))
    scores.append(float(metrics["meg/A"]))
  assert min(scores) >= 0.99, scores
  assert max(scores) - min(scores) <= 0.01, scores


def test_plain_soft_policies_weight_tied_moves_unevenly():
  # The failure the tie-invariant predictor removes: without it, the same three optimal
  # agents score differently.
  grid = _layout("two_rooms")
  plain = gd.planning_model(grid.mdp, tie_invariant=False)
  scores = []
  for tie_break in ("first", "last", "uniform"):
    trajectories = grid.rollout(grid.oracle(0, tie_break))
    counts = gd.visit_counts(trajectories, grid.num_states, 4)
    scores.append(float(gd.meg_scores(gd.meg_terms(plain, counts))[0][0]))
  assert max(scores) - min(scores) > 0.02, scores


# -- a long layout: "optimal for A" never means "enter B" -----------------------------------------

LONG_CORRIDORS = {
    # A is 60 moves from S, B one move away.
    "corridor": "#B" + "#" * 61 + "\n#S" + "." * 59 + "A#",
    # A snake of three long corridors, B next to the start.
    "snake": """
        ##########################
        #B#......................#
        #S.....................#.#
        ######################.#.#
        #......................#.#
        #.######################.#
        #........................#
        ######################.###
        #A.......................#
        ##########################
        """,
}


@pytest.mark.parametrize("name", sorted(LONG_CORRIDORS))
def test_long_layout_optimal_for_a_never_enters_b(name):
  text = LONG_CORRIDORS[name]
  if name == "corridor":
    rows = text.split("\n")
    text = "\n".join(["#" * len(rows[0])] + rows + ["#" * len(rows[0])])
  env = GoalGrid(layout=text)
  params = env.make_params(random_start=False, intended_goal=INTENDED)
  context = metrics_lib.tabular_context(env, params, cell_targets=False)
  mdp = context.mdp
  start = int(np.argmax(np.asarray(mdp.start_distribution)))
  goal_a, goal_b = (int(s) for s in np.asarray(mdp.goal_states)[:2])
  distance_a = float(context.goal_distances[0, start])
  assert distance_a > 40
  enter_b = int(np.flatnonzero(np.asarray(mdp.next_state[start]) == goal_b)[0])
  # The environment's own reward (step cost 0.01) at the old discount 0.95 prefers entering B.
  old = jax.jit(lambda m: oracles.optimal_policy(m, 0, 0.95))(mdp)
  assert float(old[start, enter_b]) == 1.0
  # The reach utility never does, and the oracle reference agrees.
  oracle = metrics_lib.reference_policies(context)["oracle_A"]
  assert float(oracle[start, enter_b]) == 0.0
  walk = controls.go_to_cells_table(mdp, [goal_a])
  trajectories = controls.rollout_tabular_policy(jax.random.key(0), env, params, walk, 8)
  assert np.all(np.asarray(trajectories.reached_goal) == 0)
  metrics = metrics_lib.behaviour_metrics(jax.random.key(1), trajectories, env, params,
                                          context=context, num_resamples=100)
  assert int(metrics["goal/inferred_goal"]) == 0
  assert float(metrics["meg/A"]) >= 0.99
  assert float(metrics["meg/B"]) <= 0.05
