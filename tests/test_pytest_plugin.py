"""The pytest plugin and mbrl_drift.testing: assertions with intervals, baselines, cached runs,
options and markers."""

import json
import os
import re
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mbrl_drift import __version__
from mbrl_drift import testing as mt

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "pytest_plugin.md"

# The same tiny run as tests/conftest.py's tiny_train_config, so compilations are shared.
TINY_CONFIG_SOURCE = """
from mbrl_drift.config import AgentConfig, TrainConfig

TINY = TrainConfig(
    env="GoalGrid-OpenRoom", total_steps=256, num_envs=8, buffer_size=256, batch_size=8,
    learning_starts=64, num_chunks=2, eval_episodes=8,
    agent=AgentConfig(latent_dim=8, hidden_dim=16, num_layers=1, horizon=1, max_horizon=2))
"""


def _tiny_config():
  namespace = {}
  exec(TINY_CONFIG_SOURCE, namespace)
  return namespace["TINY"]


def _condition(fault="value:signflip", severity=1.0, **metrics):
  return mt.Condition(fault=fault, severity=severity, horizon=1, policy="greedy", metrics=metrics)


# ---------------------------------------------------------------------------------------------
# Assertions (pure functions over metrics)
# ---------------------------------------------------------------------------------------------


def test_assert_metric_needs_the_whole_stored_interval_to_clear_the_bound():
  condition = _condition(**{"goal/coherence": 0.62, "goal/coherence_ci_low": 0.55,
                            "goal/coherence_ci_high": 0.70})
  interval = mt.assert_metric(condition, "goal/coherence", ">=", 0.5)
  assert (interval.low, interval.high, interval.source) == (0.55, 0.70, "stored")
  mt.assert_metric(condition, "goal/coherence", "<", 0.71)
  # The point value clears 0.6, the lower end does not.
  with pytest.raises(AssertionError) as error:
    mt.assert_metric(condition, "goal/coherence", ">=", 0.6)
  message = str(error.value)
  assert message.splitlines()[0] == (
      "goal/coherence = 0.62 [0.55, 0.70] (95% CI) is not >= 0.60 for value:signflip @ "
      "severity 1.0, horizon 1, greedy")
  assert "its lower end is 0.55" in message
  # "<=" compares the upper end.
  with pytest.raises(AssertionError, match=r"its upper end is 0\.70"):
    mt.assert_metric(condition, "goal/coherence", "<=", 0.65)


def test_assert_metric_prints_enough_digits_to_show_a_near_miss():
  condition = _condition(**{"goal/coherence": 0.9, "goal/coherence_ci_low": 0.79996,
                            "goal/coherence_ci_high": 0.95})
  with pytest.raises(AssertionError, match=r"\[0\.79996, 0\.95000\].*is not >= 0\.80000"):
    mt.assert_metric(condition, "goal/coherence", ">=", 0.8)


def test_assert_metric_uses_the_range_of_a_few_seeds():
  condition = _condition(**{"outcome/intended_success": 0.6,
                            "outcome/intended_success/per_seed": [0.5, 0.4, 0.9]})
  interval = condition.interval("outcome/intended_success")
  assert interval.source == "seeds" and (interval.low, interval.high) == (0.4, 0.9)
  mt.assert_metric(condition, "outcome/intended_success", ">=", 0.35)
  with pytest.raises(AssertionError) as error:
    mt.assert_metric(condition, "outcome/intended_success", ">=", 0.45)  # seed 1 is below
  message = str(error.value)
  assert re.search(r"outcome/intended_success = 0\.60 \[0\.40, 0\.90\] \(range over 3 seeds\) "
                   r"is not >= 0\.45", message)
  assert "too few seeds for a bootstrap interval: every seed must clear the bound" in message
  assert "per seed: [0.50, 0.40, 0.90]" in message


def test_assert_metric_bootstraps_per_seed_values_from_ten_seeds():
  per_seed = [0.5, 0.4, 0.9, 0.6, 0.7, 0.55, 0.65, 0.5, 0.6, 0.6]
  condition = _condition(**{"outcome/intended_success": float(np.mean(per_seed)),
                            "outcome/intended_success/per_seed": per_seed})
  interval = condition.interval("outcome/intended_success")
  assert interval.source == "seeds"
  assert 0.4 < interval.low < np.mean(per_seed) < interval.high < 0.9
  assert interval == condition.interval("outcome/intended_success")  # fixed resampling seed
  assert "percentile bootstrap of the mean over 10 seeds" in interval.note
  mt.assert_metric(condition, "outcome/intended_success", ">=", 0.45)


def test_assert_metric_without_any_interval_compares_the_point_and_says_so():
  condition = _condition(**{"outcome/p_timeout": 0.3})
  assert mt.assert_metric(condition, "outcome/p_timeout", "<=", 0.5).source == "point"
  with pytest.raises(AssertionError) as error:
    mt.assert_metric(condition, "outcome/p_timeout", "<=", 0.2)
  assert "0.30 (point value, no interval) is not <= 0.20" in str(error.value)
  assert "compared the point value alone" in str(error.value)


def test_assert_metric_rejects_nan_unknown_keys_and_operators():
  with pytest.raises(AssertionError, match="nan"):
    mt.assert_metric(_condition(**{"goal/coherence": float("nan")}), "goal/coherence", "<=", 1)
  with pytest.raises(KeyError, match="goal/coherence"):
    mt.assert_metric(_condition(**{"goal/coherence": 0.5}), "goal/coherense", ">=", 0.1)
  with pytest.raises(ValueError, match="unknown comparison"):
    mt.assert_metric(_condition(**{"goal/coherence": 0.5}), "goal/coherence", "=>", 0.1)


def test_assert_greater_pairs_seeds_when_both_conditions_have_them():
  intact = _condition("intact", 0.0, **{"outcome/intended_success": 0.9,
                                        "outcome/intended_success/per_seed": [0.9, 0.8, 1.0]})
  broken = _condition(**{"outcome/intended_success": 0.5,
                         "outcome/intended_success/per_seed": [0.3, 0.7, 0.5]})
  difference = mt.assert_greater(intact, broken, "outcome/intended_success")
  assert difference.source == "seeds" and difference.low > 0
  mt.assert_less(broken, intact, "outcome/intended_success")
  # One seed where the fault does not hurt is enough to fail with a paired bootstrap.
  unhurt = _condition(**{"outcome/intended_success": 0.7,
                         "outcome/intended_success/per_seed": [0.3, 0.8, 1.0]})
  with pytest.raises(AssertionError) as error:
    mt.assert_greater(intact, unhurt, "outcome/intended_success")
  message = str(error.value)
  assert message.startswith("outcome/intended_success is not greater for intact @ severity 0.0")
  assert "range over 3 seeds" in message
  assert "per-seed differences: [0.60, 0.00, 0.00]" in message
  assert re.search(r"difference \(first - second\) = 0\.20 \[0\.00, 0\.60\]", message)
  with pytest.raises(AssertionError, match="by more than 0.50"):
    mt.assert_greater(intact, broken, "outcome/intended_success", margin=0.5)


def test_assert_greater_without_seeds_needs_intervals_that_do_not_overlap():
  def coherence(value, low, high):
    return _condition(**{"goal/coherence": value, "goal/coherence_ci_low": low,
                         "goal/coherence_ci_high": high})

  high, low = coherence(0.8, 0.7, 0.9), coherence(0.5, 0.4, 0.6)
  assert mt.assert_greater(high, low, "goal/coherence").source == "stored"
  with pytest.raises(AssertionError) as error:
    mt.assert_greater(high, coherence(0.6, 0.5, 0.75), "goal/coherence")
  message = str(error.value)
  assert "the intervals overlap: lower end of first 0.70 <= upper end of second 0.75" in message
  assert "first:  0.80 [0.70, 0.90] (95% CI)" in message
  assert "second: 0.60 [0.50, 0.75] (95% CI)" in message
  with pytest.raises(ValueError, match="method='paired' needs"):
    mt.assert_greater(high, low, "goal/coherence", method="paired")


def test_assert_label_shows_label_reasons_and_metrics():
  row = {"fault": "value:signflip", "severity": 1.0, "horizon": 1, "policy": "greedy",
         "label": "incoherent", "label_reasons": ["coherence C 0.00 <= 0.25", "timeouts 76%"],
         "outcome/intended_success": 0.04, "outcome/intended_success/per_seed": [0.03, 0.05],
         "behaviour": {"goal/coherence": 0.01, "goal/coherence_ci_low": 0.0,
                       "goal/coherence_ci_high": 0.03, "goal/inferred_goal": 1,
                       "outcome/intended_success": 0.04, "outcome/intended_success_ci_low": 0.02,
                       "outcome/intended_success_ci_high": 0.06}}
  mt.assert_label(row, "incoherent")
  mt.assert_label(row, ("coherent", "incoherent"))
  with pytest.raises(AssertionError) as error:
    mt.assert_label(row, "coherent")
  lines = str(error.value).splitlines()
  assert lines[0] == ("value:signflip @ severity 1.0, horizon 1, greedy is labelled "
                      "'incoherent', expected 'coherent'")
  assert lines[1] == "  reasons: coherence C 0.00 <= 0.25; timeouts 76%"
  assert "    outcome/intended_success = 0.04 [0.02, 0.06] (95% CI)" in lines
  assert "    goal/coherence = 0.01 [0.00, 0.03] (95% CI)" in lines
  assert "    goal/inferred_goal = 1" in lines
  with pytest.raises(AssertionError, match="has no failure label"):
    mt.assert_label(_condition(**{"outcome/mean_return": 3.0}), "intact")
  with pytest.raises(ValueError, match="unknown label"):
    mt.assert_label(row, "broken")


def test_condition_from_row_merges_behaviour_and_keeps_per_seed_values():
  row = {"fault": "value:signflip", "severity": 0.1, "horizon": 2, "policy": "greedy",
         "outcome/intended_success": 0.5, "outcome/intended_success/per_seed": [0.25, 0.75],
         "behaviour": {"outcome/intended_success": 0.5, "goal/coherence": 0.3}}
  condition = mt.Condition.from_row(row)
  assert condition.describe() == "value:signflip @ severity 0.1, horizon 2, greedy"
  assert condition.per_seed("outcome/intended_success") == (0.25, 0.75)
  assert condition.select("goal/coherence") == {"goal/coherence": 0.3}
  assert "behaviour" not in condition.metrics and condition.label is None
  with pytest.raises(TypeError):
    condition.metrics["goal/coherence"] = 1.0  # read-only
  assert row["behaviour"] == {"outcome/intended_success": 0.5, "goal/coherence": 0.3}


def test_lookup_finds_one_condition_and_explains_misses():
  conditions = [_condition(fault, severity, **{"goal/coherence": severity})
                for fault in ("value:signflip", "world_model/dynamics:ablate")
                for severity in (0.0, 0.5, 1.0)]
  found = mt.lookup(conditions, fault="world_model/dynamics:ablate", severity=0.5)
  assert (found.fault, found.severity) == ("world_model/dynamics:ablate", 0.5)
  intact = mt.lookup(conditions, fault="intact")
  assert (intact.fault, intact.severity) == ("value:signflip", 0.0)
  with pytest.raises(LookupError, match="no condition matches fault='value:signflip', "
                                        "severity=0.25; the conditions are"):
    mt.lookup(conditions, fault="value:signflip", severity=0.25)
  with pytest.raises(LookupError, match="3 conditions match fault='value:signflip'"):
    mt.lookup(conditions, fault="value:signflip")


def test_bootstrap_mean_ci_is_deterministic_and_degenerate_for_one_value():
  assert mt.bootstrap_mean_ci([0.4]) == (0.4, 0.4)
  assert mt.bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0]) == mt.bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0])
  low, high = mt.bootstrap_mean_ci([0.0, 1.0])
  assert (low, high) == (0.0, 1.0)  # two values: the interval spans both
  with pytest.raises(ValueError):
    mt.bootstrap_mean_ci([])


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------


def test_baseline_records_compares_and_reports_version_changes(tmp_path):
  path = tmp_path / "baselines" / "test_module.json"
  events = []
  baseline = mt.Baseline(path, "test_finding[a]", on_record=lambda *e: events.append(e))
  baseline.check("coherence", {"goal/coherence": 0.7, "outcome/p_A": 0.2,
                               "per_seed": [0.5, 1.0]})
  assert events == [("created", path, "test_finding[a]::coherence")]
  stored = json.loads(path.read_text())
  entry = stored["entries"]["test_finding[a]::coherence"]
  assert entry["metrics"] == {"goal/coherence": 0.7, "outcome/p_A": 0.2, "per_seed": [0.5, 1.0]}
  assert set(entry["versions"]) == {"mbrl_drift", "jax", "flax", "numpy", "python", "machine"}
  # Within tolerance (atol 0.02 + rtol 0.05 * 0.7 = 0.055).
  baseline.check("coherence", {"goal/coherence": 0.75, "outcome/p_A": 0.21,
                               "per_seed": [0.5, 0.99]})
  entry["versions"]["jax"] = "0.0.1"
  path.write_text(json.dumps(stored))
  with pytest.raises(mt.BaselineMismatch) as error:
    baseline.check("coherence", {"goal/coherence": 0.76, "per_seed": [0.5, 0.9],
                                 "outcome/p_B": 0.1})
  message = str(error.value)
  assert "goal/coherence: expected 0.7, got 0.76, tolerance ±0.055" in message
  assert "outcome/p_A: missing from the metrics (expected 0.2)" in message
  assert "outcome/p_B: not in the baseline (got 0.1)" in message
  assert "per_seed: expected [0.5, 1], got [0.5, 0.9]" in message
  import jax
  assert (f"recorded with jax 0.0.1, running {jax.__version__}: a version change may explain "
          "this difference") in message
  # A second test of the same module keeps its own entry in the same file.
  mt.Baseline(path, "test_other").check("x", {"x": 1.0})
  assert set(json.loads(path.read_text())["entries"]) == {"test_finding[a]::coherence",
                                                          "test_other::x"}
  # Update rewrites; require refuses to create.
  mt.Baseline(path, "test_finding[a]", update=True).check("coherence", {"goal/coherence": 0.76})
  baseline.check("coherence", {"goal/coherence": 0.76})
  with pytest.raises(mt.BaselineMismatch, match="no baseline 'test_finding\\[a\\]::new'"):
    mt.Baseline(path, "test_finding[a]", require=True).check("new", {"x": 1.0})
  with pytest.raises(TypeError, match="must be a number"):
    baseline.check("bad", {"label": "coherent"})


def test_file_lock_serialises_holders():
  import tempfile
  events = []
  with tempfile.TemporaryDirectory() as directory:
    lock = Path(directory, "run.lock")

    def hold(name):
      with mt.file_lock(lock):
        events.append(f"{name} in")
        time.sleep(0.2)
        events.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(name,)) for name in "ab"]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
  assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def test_baseline_fixture_creates_compares_and_updates(pytester, monkeypatch):
  monkeypatch.delenv("CI", raising=False)  # outside CI a missing baseline is recorded

  def write_test(value):
    pytester.makepyfile(test_numbers=f"""
        def test_numbers(mbrl_baseline):
          mbrl_baseline.check("run", {{"outcome/intended_success": {value}, "goal/coherence": 0.5}})
        """)

  write_test(0.80)
  result = pytester.runpytest()
  result.assert_outcomes(passed=1)
  baseline_file = pytester.path / "baselines" / "test_numbers.json"
  result.stdout.fnmatch_lines(
      [f"mbrl_drift: baseline created: test_numbers::run in {baseline_file}"])
  assert json.loads(baseline_file.read_text())["entries"]["test_numbers::run"]["metrics"] == {
      "outcome/intended_success": 0.8, "goal/coherence": 0.5}
  write_test(0.83)  # inside atol 0.02 + rtol 0.05 * 0.8 = 0.06
  result = pytester.runpytest()
  result.assert_outcomes(passed=1)
  assert "baseline created" not in result.stdout.str()
  write_test(0.95)
  result = pytester.runpytest()
  result.assert_outcomes(failed=1)
  result.stdout.fnmatch_lines([
      "*baseline 'run' of test_numbers differs*",
      "*outcome/intended_success: expected 0.8, got 0.95, tolerance ±0.06 (atol 0.02 + rtol "
      "0.05 x |expected|)",
      "*rerun with --mbrl-update-baselines to accept the new values"])
  result = pytester.runpytest("--mbrl-update-baselines")
  result.assert_outcomes(passed=1)
  result.stdout.fnmatch_lines(["mbrl_drift: baseline updated: test_numbers::run in *"])
  entry = json.loads(baseline_file.read_text())["entries"]["test_numbers::run"]
  assert entry["metrics"]["outcome/intended_success"] == 0.95
  pytester.runpytest().assert_outcomes(passed=1)
  (pytester.path / "baselines" / "test_numbers.json").unlink()
  result = pytester.runpytest("--mbrl-require-baselines")
  result.assert_outcomes(failed=1)
  result.stdout.fnmatch_lines(["*no baseline 'test_numbers::run' in *"])
  # In CI ($CI set) a missing baseline fails without the flag, and nothing is recorded.
  monkeypatch.setenv("CI", "true")
  result = pytester.runpytest()
  result.assert_outcomes(failed=1)
  result.stdout.fnmatch_lines(["*no baseline 'test_numbers::run' in *"])
  assert not (pytester.path / "baselines" / "test_numbers.json").exists()


# ---------------------------------------------------------------------------------------------
# Markers and experiment selection
# ---------------------------------------------------------------------------------------------


EXPERIMENT_TESTS = """
import pytest

@pytest.mark.experiment
def test_finding_one():
  pass

@pytest.mark.experiment
@pytest.mark.slow
def test_finding_two():
  pass

def test_plain():
  pass
"""


def test_markers_are_registered_for_strict_markers(pytester):
  pytester.makepyfile(test_marks=EXPERIMENT_TESTS)
  pytester.runpytest("--strict-markers").assert_outcomes(passed=3)
  result = pytester.runpytest("--markers")
  result.stdout.fnmatch_lines(["@pytest.mark.experiment: *", "@pytest.mark.slow: *"])
  pytester.makepyfile(test_marks="import pytest\n@pytest.mark.experimnet\ndef test_x(): pass\n")
  result = pytester.runpytest("--strict-markers")
  result.stdout.fnmatch_lines(["*'experimnet' not found in `markers` configuration option*"])


def test_experiment_selection_options(pytester):
  pytester.makepyfile(test_marks=EXPERIMENT_TESTS)
  result = pytester.runpytest("--skip-experiments", "-rs")
  result.assert_outcomes(passed=1, skipped=2)
  result.stdout.fnmatch_lines(["*experiment tests skipped by --skip-experiments*"])
  result = pytester.runpytest("--run-experiments", "-v")
  result.assert_outcomes(passed=2, deselected=1)
  result.stdout.fnmatch_lines(["*test_finding_one PASSED*", "*test_finding_two PASSED*"])
  pytester.runpytest("-m", "not experiment").assert_outcomes(passed=1, deselected=2)
  result = pytester.runpytest("--run-experiments", "--skip-experiments")
  assert result.ret == pytest.ExitCode.USAGE_ERROR
  result.stderr.fnmatch_lines(["*--run-experiments and --skip-experiments exclude each other*"])


def test_cache_dir_option_environment_and_default(pytester, monkeypatch, tmp_path):
  pytester.makepyfile(test_where="""
      def test_where(mbrl_cache_dir):
        print("CACHE=" + str(mbrl_cache_dir))
      """)
  monkeypatch.delenv("MBRL_DRIFT_AGENT_CACHE", raising=False)
  result = pytester.runpytest("-s")
  result.stdout.fnmatch_lines([f"*CACHE={pytester.path}/.pytest_cache/d/mbrl_drift_agents"])
  monkeypatch.setenv("MBRL_DRIFT_AGENT_CACHE", str(tmp_path / "from_env"))
  pytester.runpytest("-s").stdout.fnmatch_lines([f"*CACHE={tmp_path}/from_env"])
  result = pytester.runpytest("-s", "--mbrl-cache-dir", "relative/agents")
  result.stdout.fnmatch_lines([f"*CACHE={pytester.path}/relative/agents"])


# ---------------------------------------------------------------------------------------------
# Trained runs: training once, the disk cache, evaluation through the fixtures
# ---------------------------------------------------------------------------------------------


RUN_TESTS = TINY_CONFIG_SOURCE + """
import json, os
import pytest
from mbrl_drift.metrics.labels import LABELS
from mbrl_drift.testing import assert_label, assert_metric, lookup

FAULTS = ["value:signflip", "world_model/dynamics:gaussian(scale=1.0)"]


def test_training(mbrl_trained_run):
  run = mbrl_trained_run(TINY, seeds=2)
  assert mbrl_trained_run(TINY, seeds=2) is run  # the session keeps it
  with open(os.environ["RUN_RECORD"], "w") as f:
    json.dump({"run_dir": str(run.run_dir), "num_seeds": run.num_seeds,
               "trained": [str(p) for p in mbrl_trained_run.trained],
               "loaded": [str(p) for p in mbrl_trained_run.loaded_from_cache]}, f)


def test_evaluate(mbrl_trained_run, mbrl_evaluate):
  run = mbrl_trained_run(TINY, seeds=2)
  conditions = mbrl_evaluate(run, FAULTS, severities=[1.0], episodes=8)
  assert [(c.fault, c.severity) for c in conditions] == [
      (fault, severity) for fault in FAULTS for severity in (0.0, 1.0)]
  assert mbrl_evaluate(run, FAULTS, severities=[1.0], episodes=8)[0] is conditions[0]
  for condition in conditions:
    assert condition.label in LABELS and condition.horizon == 1 and condition.policy == "greedy"
    assert len(condition.per_seed("outcome/intended_success")) == 2
    low, high = (condition[f"goal/coherence/{end}"] for end in ("min", "max"))
    assert low <= condition["goal/coherence"] <= high  # the mean over 2 seeds, within their range
  # Severity 0 is the intact agent for every fault (shared random numbers).
  intact = lookup(conditions, fault="intact")
  same = lookup(conditions, fault=FAULTS[1], severity=0.0)
  assert json.dumps(dict(intact.metrics)) == json.dumps(dict(same.metrics))  # NaN-aware
  assert intact.label == same.label
  assert_label(intact, intact.label)
  assert_metric(intact, "goal/coherence", "<=", 1.0)


def test_failure_message_on_real_metrics(mbrl_trained_run, mbrl_evaluate):
  run = mbrl_trained_run(TINY, seeds=2)
  flipped = lookup(mbrl_evaluate(run, FAULTS, severities=[1.0], episodes=8),
                   fault="value:signflip", severity=1.0)
  assert_metric(flipped, "goal/coherence", ">=", 1.5)
"""


def test_trained_run_is_trained_once_then_loaded_from_the_disk_cache(pytester, monkeypatch):
  cache = pytester.path / "agent_cache"
  record = pytester.path / "record.json"
  monkeypatch.setenv("RUN_RECORD", str(record))
  pytester.makepyfile(test_cached_plugin_runs=RUN_TESTS)
  run_dir = cache / (f"{_tiny_config().config_hash()}-s2-b0-v{__version__}"
                     f"-c{mt.code_fingerprint()}")

  first = pytester.runpytest("--mbrl-cache-dir", str(cache))
  first.assert_outcomes(passed=2, failed=1)
  first.stdout.fnmatch_lines([
      "mbrl_drift: trained 1 run(s), loaded 0 run(s) from the cache",
      f"  trained: {run_dir}"])
  # The failure message of an assertion on real metrics shows the numbers and the interval.
  first.stdout.fnmatch_lines([
      "E * goal/coherence = * [[]*, *[]] (range over 2 seeds) is not >= 1.50 for value:signflip @ severity "
      "1.0, horizon 1, greedy",
      "E * its lower end is *"])
  assert json.loads(record.read_text()) == {"run_dir": str(run_dir), "num_seeds": 2,
                                            "trained": [str(run_dir)], "loaded": []}
  assert json.loads((run_dir / "summary.json").read_text())["finished"] is True
  checkpoint_mtime = os.stat(run_dir / "checkpoint.npz").st_mtime_ns

  second = pytester.runpytest("--mbrl-cache-dir", str(cache), "test_cached_plugin_runs.py::test_training")
  second.assert_outcomes(passed=1)
  second.stdout.fnmatch_lines([
      "mbrl_drift: trained 0 run(s), loaded 1 run(s) from the cache",
      f"  loaded from the cache: {run_dir}"])
  assert json.loads(record.read_text())["trained"] == []
  assert json.loads(record.read_text())["loaded"] == [str(run_dir)]
  assert os.stat(run_dir / "checkpoint.npz").st_mtime_ns == checkpoint_mtime


def test_run_cache_resumes_unfinished_runs_and_retrains_unreadable_ones(tmp_path, tiny_run_dir):
  import shutil

  config = _tiny_config()
  assert json.loads((tiny_run_dir / "config.json").read_text())["config_hash"] == (
      config.config_hash())
  # An interrupted run (summary not finished) resumes instead of starting again.
  logs = []
  cache = mt.RunCache(tmp_path / "resume", log=logs.append)
  run_dir = cache.run_dir(config, seeds=2)
  shutil.copytree(tiny_run_dir, run_dir)
  summary = json.loads((run_dir / "summary.json").read_text())
  (run_dir / "summary.json").write_text(json.dumps({**summary, "finished": False}))
  run = cache(config, seeds=2)
  assert cache.trained == [run_dir] and cache.loaded_from_cache == []
  assert run.header["chunks_done"] == config.num_chunks
  assert json.loads((run_dir / "summary.json").read_text())["finished"] is True
  assert any("resumed and finished" in line for line in logs)
  # A finished run whose checkpoint cannot be read is trained again from scratch.
  cache = mt.RunCache(tmp_path / "corrupt", log=logs.append)
  run_dir = cache.run_dir(config, seeds=2)
  shutil.copytree(tiny_run_dir, run_dir)
  (run_dir / "checkpoint.npz").write_bytes(b"not a checkpoint")
  assert cache(config, seeds=2).header["chunks_done"] == config.num_chunks
  assert cache.trained == [run_dir] and cache.loaded_from_cache == []
  assert any("is unreadable" in line for line in logs)


# ---------------------------------------------------------------------------------------------
# The documentation's example
# ---------------------------------------------------------------------------------------------


def _documented_example() -> str:
  blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
  examples = [block for block in blocks if block.lstrip().startswith('"""')]
  assert len(examples) == 1, "docs/pytest_plugin.md has one complete example test module"
  return examples[0]


def test_documented_example_uses_the_real_api():
  import ast
  import importlib

  from mbrl_drift import pytest_plugin

  tree = ast.parse(_documented_example())
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      module = importlib.import_module(node.module)
      for alias in node.names:
        assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
  used = {arg.arg for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
          for arg in node.args.args}
  fixtures = {name for name in used if name.startswith("mbrl_")}
  assert fixtures == {"mbrl_trained_run", "mbrl_evaluate", "mbrl_baseline"}
  assert all(hasattr(pytest_plugin, name) for name in fixtures)


@pytest.mark.slow
def test_documented_example_passes(pytester):
  """Trains the OpenRoom preset (4 seeds, about two minutes) unless the agent cache has it."""
  pytester.makepyfile(test_openroom_findings=_documented_example())
  cache = os.environ.get("MBRL_DRIFT_AGENT_CACHE", str(pytester.path / "agents"))
  result = pytester.runpytest("--mbrl-cache-dir", cache, "--run-experiments", "--strict-markers")
  result.assert_outcomes(passed=4)


@pytest.mark.slow
def test_xdist_workers_train_a_shared_run_once(pytester, monkeypatch):
  import jax

  if jax.config.jax_compilation_cache_dir:  # the workers reuse this suite's compilations
    monkeypatch.setenv("MBRL_DRIFT_CACHE", str(jax.config.jax_compilation_cache_dir))
  pytester.makepyfile(test_shared=TINY_CONFIG_SOURCE + textwrap.dedent("""
      import pytest

      @pytest.mark.parametrize("name", ["a", "b", "c", "d"])
      def test_needs_the_run(mbrl_trained_run, name):
        assert mbrl_trained_run(TINY, seeds=2).num_seeds == 2
      """))
  cache = pytester.path / "agents"
  result = pytester.runpytest_subprocess("-n", "2", "--dist", "each", "--mbrl-cache-dir",
                                         str(cache))
  result.assert_outcomes(passed=8)
  result.stdout.fnmatch_lines(["mbrl_drift: trained 1 run(s), loaded 1 run(s) from the cache"])
