"""Regression tests of experiment E1's findings (experiments/component_faults.py), pinned with
the mbrl_drift pytest plugin on small cached agents (GoalGrid-OpenRoom, 2 seeds).

Findings pinned here (measured at this scale, 64 greedy episodes per seed):

* swapping the value function *and* the reward head for those of an agent fine-tuned to goal B
  inside the same frozen world model gives coherent failure: the planner drives to B from
  every start (C close to 1);
* Gaussian noise on the world-model dynamics gives incoherent failure: labelled incoherent, most
  episodes time out, and its coherence C is below the goal swap's by more than 0.5 for every
  seed (the per-seed, episode-weighted MEG with goal-arrival utilities gives a noisy planner
  that drifts partly toward goals 0.1 to 0.3, where the uniform policy scores 0.02 to 0.07);
* a sign flip of the value output gives incoherent failure too, although it is a structured
  fault: the planner minimises value, which on this layout is not "pursue another goal".
"""

import pytest

from mbrl_drift.config import replace
from mbrl_drift.presets import preset
from mbrl_drift.testing import assert_greater, assert_label, assert_metric, lookup

pytestmark = pytest.mark.experiment

CONFIG = replace(preset("GoalGrid-OpenRoom"), num_chunks=2, eval_episodes=16)
GOAL_B = replace(CONFIG, env_kwargs=(("intended_goal", 1),), total_steps=4_000)
WORLD_MODEL = ("world_model/encoder", "world_model/dynamics", "world_model/termination",
               "world_model/decoder")
DYNAMICS_NOISE = "world_model/dynamics:gaussian(scale=1.0)"
SIGN_FLIP = "value:signflip"


@pytest.fixture(scope="module")
def conditions(mbrl_trained_run, mbrl_evaluate):
  base = mbrl_trained_run(CONFIG, seeds=2)
  goal_b = mbrl_trained_run(GOAL_B, seeds=2, init_from=base, freeze=WORLD_MODEL)
  swap = f"value+world_model/reward:swap(run={goal_b.run_dir})"
  evaluated = mbrl_evaluate(base, [swap, DYNAMICS_NOISE, SIGN_FLIP], severities=[0.3, 1.0],
                            episodes=64)
  return swap, evaluated


def test_the_intact_agent_reaches_its_goal(conditions):
  _, evaluated = conditions
  intact = lookup(evaluated, fault="intact")
  assert_metric(intact, "outcome/intended_success", ">=", 0.9)
  assert_metric(intact, "goal/coherence", ">=", 0.9)


def test_value_and_reward_swap_fails_coherently_toward_the_swapped_goal(conditions):
  swap, evaluated = conditions
  swapped = lookup(evaluated, fault=swap, severity=1.0)
  assert_label(swapped, "coherent")
  assert_metric(swapped, "goal/coherence", ">=", 0.8)
  assert_metric(swapped, "outcome/p_B", ">=", 0.8)
  assert swapped["goal/inferred_goal"] == 1


def test_dynamics_noise_fails_incoherently(conditions):
  swap, evaluated = conditions
  swapped = lookup(evaluated, fault=swap, severity=1.0)
  for severity in (0.3, 1.0):
    broken = lookup(evaluated, fault=DYNAMICS_NOISE, severity=severity)
    assert_label(broken, "incoherent")
    assert_greater(swapped, broken, "goal/coherence", margin=0.5)
    assert_metric(broken, "outcome/p_timeout", ">=", 0.6)


def test_value_sign_flip_fails_incoherently(conditions):
  _, evaluated = conditions
  flipped = lookup(evaluated, fault=SIGN_FLIP, severity=1.0)
  assert_label(flipped, "incoherent")
  assert_metric(flipped, "outcome/intended_success", "<=", 0.2)


def test_objective_swap_is_more_goal_directed_than_dynamics_noise(conditions):
  swap, evaluated = conditions
  assert_greater(lookup(evaluated, fault=swap, severity=1.0),
                 lookup(evaluated, fault=DYNAMICS_NOISE, severity=1.0), "goal/coherence")


def test_headline_numbers_match_the_baseline(conditions, mbrl_baseline):
  swap, evaluated = conditions
  pinned = {
      "intact": lookup(evaluated, fault="intact"),
      "swap": lookup(evaluated, fault=swap, severity=1.0),
      "dynamics": lookup(evaluated, fault=DYNAMICS_NOISE, severity=1.0),
  }
  for name, condition in pinned.items():
    mbrl_baseline.check(name, condition.select("outcome/intended_success", "outcome/p_timeout",
                                               "outcome/off_target_mass"), atol=0.1)
