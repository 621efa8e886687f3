"""Evaluation of trained runs under faults: condition grids, non-finite faults, calibration, CLI."""

import contextlib
import json

import chex
import jax
import numpy as np
import pytest

from mbrl_drift import faults
from mbrl_drift.cli import main
from mbrl_drift.fault_evaluation import calibrate_fault, evaluate_conditions, parse_faults
from mbrl_drift.runs import load_run


@contextlib.contextmanager
def _one_trace_of_the_grid():
  """Replaces the compiled grid of evaluate_conditions by one that raises on a second trace."""
  from mbrl_drift import fault_evaluation

  original = fault_evaluation._evaluate_grid
  fault_evaluation._evaluate_grid = jax.jit(
      chex.assert_max_traces(original.__wrapped__, n=1),
      static_argnames=("agent", "env", "num_episodes", "max_steps", "batch_size"))
  try:
    yield
  finally:
    fault_evaluation._evaluate_grid = original


@pytest.fixture(scope="module")
def tiny_run(tiny_run_dir):
  return load_run(tiny_run_dir)


def test_condition_grid_shapes_and_severity_zero_is_intact(tiny_run):
  fault_list = parse_faults(tiny_run, ["value:gaussian(scale=2.0)", "world_model/dynamics:ablate"])
  results = evaluate_conditions(tiny_run, [None, *fault_list], [0.0, 1.0], [1, 2],
                                ["greedy", "boltzmann"], num_episodes=6)
  assert results.trajectories.reached_goal.shape == (3, 2, 2, 2, 2, 6)
  reached = np.asarray(results.trajectories.reached_goal)
  actions = np.asarray(results.trajectories.action)
  # Severity 0 of every fault reproduces the intact agent exactly (common random numbers).
  for f in (1, 2):
    np.testing.assert_array_equal(actions[f, 0], actions[0, 0])
    np.testing.assert_array_equal(reached[f, 0], reached[0, 0])
  # The full-severity value fault changes behaviour somewhere.
  assert not np.array_equal(actions[1, 1], actions[1, 0])
  rows = results.rows()
  assert len(rows) == 3 * 2 * 2 * 2
  assert {"outcome/intended_success", "outcome/timeout", "nonfinite/params"} <= set(rows[0])


# One fault, eight severities, four episodes: the grid that calibrating this fault evaluates (here
# and in the matched-damage CLI test below), so these tests share one compilation.
CALIBRATED_SPEC = "value:gaussian(scale=2.0)"
GRID_SIZE = 8


def test_same_key_same_results_and_new_severities_reuse_the_compilation(tiny_run):
  fault = parse_faults(tiny_run, [CALIBRATED_SPEC])
  severities = np.linspace(0.0, 0.7, GRID_SIZE)
  first = evaluate_conditions(tiny_run, fault, severities, num_episodes=4)
  again = evaluate_conditions(tiny_run, fault, severities, num_episodes=4)
  np.testing.assert_array_equal(first.trajectories.action, again.trajectories.action)
  with _one_trace_of_the_grid():  # new severities: no new trace
    evaluate_conditions(tiny_run, fault, severities + 0.05, num_episodes=4)
    evaluate_conditions(tiny_run, fault, severities + 0.1, num_episodes=4)


def test_nonfinite_faults_are_reported_not_raised(tiny_run):
  # Interpolating toward a corrupted (all-NaN) reference checkpoint.
  params = jax.tree.map(lambda x: x[0], tiny_run.params)
  nan_fault = faults.interpolate("value", jax.tree.map(lambda x: x * np.nan, params))
  results = evaluate_conditions(tiny_run, [nan_fault], [0.0, 1.0], num_episodes=4)
  rows = results.rows()
  healthy, broken = rows
  assert healthy["nonfinite/params"] == 0 and healthy["nonfinite/episodes"] == 0
  assert broken["nonfinite/params"] > 0
  assert broken["nonfinite/episodes"] == 2 * 4  # every episode of both seeds is flagged
  assert np.all(np.isfinite(np.asarray(results.trajectories.reward)))


def test_activation_faults_evaluate_alongside_weight_faults(tiny_run):
  fault_list = parse_faults(tiny_run, ["value:act_noise(scale=5.0)", "value:signflip"])
  results = evaluate_conditions(tiny_run, fault_list, [0.0, 1.0], num_episodes=6)
  actions = np.asarray(results.trajectories.action)
  np.testing.assert_array_equal(actions[0, 0], actions[1, 0])
  assert not np.array_equal(actions[0, 1], actions[0, 0])


@pytest.mark.parametrize("spec, message", [
    ("policy:gaussian(scale=1)", "valid component paths"),
    ("value:blur(scale=1)", "known faults"),
    ("value:gaussian(sigma=1)", "allowed: scale, relative"),
    ("value gaussian", "missing ':'"),
    ("value:gaussian(scale=1", "unbalanced"),
])
def test_bad_fault_specs_list_the_valid_choices(tiny_run, spec, message):
  with pytest.raises(ValueError, match=message):
    parse_faults(tiny_run, [spec])


def test_bad_horizon_and_policy_are_rejected(tiny_run):
  with pytest.raises(ValueError, match="horizon 9"):
    evaluate_conditions(tiny_run, [None], [0.0], horizons=[9], num_episodes=2)
  with pytest.raises(ValueError, match="unknown policy"):
    evaluate_conditions(tiny_run, [None], [0.0], policies=["softmax"], num_episodes=2)


def test_calibration_brackets_the_requested_drop_in_one_compilation(tiny_run):
  fault = parse_faults(tiny_run, [CALIBRATED_SPEC])[0]
  with _one_trace_of_the_grid():
    result = calibrate_fault(tiny_run, fault, target_drop=0.05, num_episodes=4,
                             grid_size=GRID_SIZE, num_rounds=2, metric="outcome/mean_return")
  assert result.num_calls >= 2 and len(result.severities) == result.num_evaluations
  assert 0.0 <= result.severity <= result.severities.max()
  if result.reached:
    low, high = result.bracket
    assert low <= result.severity <= high
  else:  # no severity tried causes the drop
    assert result.drop < 0.05


def test_cli_evaluate_prints_the_table_and_writes_json(tiny_run_dir, tmp_path, capsys):
  out = tmp_path / "eval.json"
  code = main(["evaluate", "--run", str(tiny_run_dir), "--fault", "value:signflip",
               "--fault", "world_model/dynamics:bitflip(rate=1,bits=exponent)", "--severity", "1",
               "--horizon", "1,2", "--episodes", "4", "--json", str(out)])
  assert code == 0
  printed = capsys.readouterr().out
  assert "intact" in printed and "value:signflip" in printed and "label" in printed
  data = json.loads(out.read_text())
  rows = data["conditions"]
  assert {(r["fault"], r["horizon"]) for r in rows} == {
      ("intact", 1), ("intact", 2), ("value:signflip", 1), ("value:signflip", 2),
      ("world_model/dynamics:bitflip(rate=1,bits=exponent)", 1),
      ("world_model/dynamics:bitflip(rate=1,bits=exponent)", 2)}
  assert all(r["nonfinite/params"] >= 0 and r["nonfinite/episodes"] >= 0 for r in rows)
  assert all(r["label"] in ("intact", "coherent", "incoherent", "reverted", "mixed") for r in rows)


def test_cli_evaluate_rejects_an_unknown_component(tiny_run_dir, capsys):
  assert main(["evaluate", "--run", str(tiny_run_dir), "--fault", "critic:gaussian"]) == 2
  err = capsys.readouterr().err
  assert "critic" in err and "world_model/dynamics" in err


def test_cli_faults_lists_every_fault(capsys):
  assert main(["faults"]) == 0
  out = capsys.readouterr().out
  for name in ("gaussian", "bitflip", "swap", "act_noise", "signflip", "ablate"):
    assert name in out


def test_cli_matched_damage_calibrates_each_fault_separately(tiny_run_dir, tmp_path, capsys):
  out = tmp_path / "matched.json"
  specs = [CALIBRATED_SPEC, "world_model/reward:gaussian(scale=2.0)"]
  code = main(["evaluate", "--run", str(tiny_run_dir), "--fault", specs[0], "--fault", specs[1],
               "--match-drop", "0.05", "--episodes", "4", "--json", str(out)])
  assert code == 0
  data = json.loads(out.read_text())
  assert set(data["calibration"]) == set(specs)
  rows = {row["fault"]: row for row in data["conditions"]}
  assert set(rows) == {"intact", *specs}
  for spec in specs:  # each fault is evaluated at its own calibrated severity
    assert rows[spec]["severity"] == pytest.approx(data["calibration"][spec]["severity"])


def test_cli_health_separates_value_faults_from_world_model_faults(tiny_run_dir, tmp_path,
                                                                   capsys):
  out = tmp_path / "health.json"
  code = main(["evaluate", "--run", str(tiny_run_dir), "--fault", "value:signflip",
               "--fault", "world_model/dynamics:gaussian(scale=1.0)", "--fault",
               "value:act_noise(scale=1)", "--severity", "1", "--episodes", "4", "--health",
               "--json", str(out)])
  assert code == 0
  assert "component health" in capsys.readouterr().out
  health = {row["fault"]: row["health"] for row in json.loads(out.read_text())["health"]}
  intact = health["intact"]
  value_fault = health["value:signflip"]
  dynamics_fault = health["world_model/dynamics:gaussian(scale=1.0)"]
  assert health["value:act_noise(scale=1)"] is None
  # A value fault leaves every world-model error unchanged; a dynamics fault changes it.
  assert value_fault["health/latent_error_1"] == intact["health/latent_error_1"]
  assert dynamics_fault["health/latent_error_1"] != intact["health/latent_error_1"]
  assert value_fault["health/value_abs_error"] != intact["health/value_abs_error"]
  assert dynamics_fault["health/value_abs_error"] == intact["health/value_abs_error"]


def test_seed_aggregates_give_an_interval_only_from_ten_seeds():
  from mbrl_drift.fault_evaluation import MIN_SEEDS_FOR_INTERVAL, seed_aggregates

  few = seed_aggregates("success", [0.82, 0.78, 0.13, 0.15], jax.random.key(0))
  assert set(few) == {"seeds/success_iqm", "seeds/success_min", "seeds/success_max"}
  assert few["seeds/success_min"] == pytest.approx(0.13)
  assert few["seeds/success_max"] == pytest.approx(0.82)
  many = seed_aggregates("success", np.linspace(0.0, 1.0, MIN_SEEDS_FOR_INTERVAL),
                         jax.random.key(0))
  assert many["seeds/success_iqm_ci_low"] <= many["seeds/success_iqm"]
  assert many["seeds/success_iqm"] <= many["seeds/success_iqm_ci_high"]


def test_cli_sweep_and_plugin_share_one_pipeline(tiny_run_dir):
  """A fault evaluated by the pipeline draws the same noise whatever else is evaluated with it,
  so a front end evaluating it alone (the plugin) and among others (a sweep) agree."""
  from mbrl_drift import testing
  from mbrl_drift.fault_evaluation import FaultRequest, evaluate_faults
  from mbrl_drift.runs import load_run

  run = load_run(tiny_run_dir)
  spec = "value:gaussian(scale=1.0)"
  alone = evaluate_faults(run, [FaultRequest(spec, severities=(0.5,))], episodes=8)
  among = evaluate_faults(run, [FaultRequest("world_model/reward:signflip", severities=(1.0,)),
                                FaultRequest(spec, severities=(0.5,))], episodes=8)
  pick = lambda evaluation: next(r for r in evaluation.records
                                 if r.fault == spec and r.severity == 0.5)
  first, second = pick(alone).metrics, pick(among).metrics
  assert first.keys() == second.keys()
  for name in first:
    np.testing.assert_array_equal(np.asarray(first[name]), np.asarray(second[name]), err_msg=name)
  conditions = testing.evaluate_faults(run, [spec], [0.5], episodes=8)
  plugin = next(c for c in conditions if c.severity == 0.5)
  assert plugin["outcome/intended_success"] == pick(alone).metrics["outcome/intended_success"]


def test_a_run_with_a_base_gets_reversion_metrics_and_the_base_is_its_fixed_point(tiny_run_dir):
  """Moving the fine-tuning delta all the way back (delta_scale at severity 1) gives the base:
  reversion coefficient 0 and JS distance 0 to the base; severity 0 is the healthy agent."""
  import dataclasses

  from mbrl_drift.fault_evaluation import FaultRequest, evaluate_faults

  run = load_run(tiny_run_dir)
  # A base whose value function differs from the run's: the run reads as fine-tuned from it.
  base_value = jax.tree.map(lambda x: -x, run.params["value"])
  params = {**run.params, "base": {"value": base_value}}
  run = dataclasses.replace(run, state=run.state.replace(params=params))
  evaluation = evaluate_faults(run, [FaultRequest("value:delta_scale", severities=(1.0,))],
                               policies=["boltzmann"], episodes=8)
  by_severity = {r.severity: r.metrics for r in evaluation.records}
  reverted, healthy = by_severity[1.0], by_severity[0.0]
  assert reverted["reference/base"] == pytest.approx(0.0, abs=1e-6)
  assert reverted["reversion/coefficient"] == pytest.approx(0.0, abs=0.01)
  assert healthy["reference/healthy"] == pytest.approx(0.0, abs=1e-6)
  assert healthy["reversion/coefficient"] == pytest.approx(1.0, abs=0.01)
  assert healthy["reference/base"] > 0.05


def test_a_run_without_a_base_has_no_reversion_keys(tiny_run_dir):
  from mbrl_drift.fault_evaluation import FaultRequest, evaluate_faults

  evaluation = evaluate_faults(load_run(tiny_run_dir), [FaultRequest("intact")], episodes=4)
  assert not any(name.startswith("reversion/") for name in evaluation.records[0].metrics)
  assert evaluation.results.policy_tables is None
