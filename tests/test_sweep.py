"""Sweeps: spec files, the results store, resuming after SIGKILL, local and Ray runners,
progress output."""

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import jax
import pytest
from rich.console import Console

from mbrl_drift import checkpoint as ckpt
from mbrl_drift import sweep
from mbrl_drift.runs import KILL_POINT_ENV
from mbrl_drift.progress import format_duration, progress_reporter
from mbrl_drift.sweep import runner
from mbrl_drift.sweep.store import LEDGER_NAME

TINY_SWEEP = """
name = "tiny"
seeds = 2

[train]
env = ["GoalGrid-OpenRoom"]
preset = false
total_steps = 256
num_envs = 8
buffer_size = 256
batch_size = 8
learning_starts = 64
num_chunks = 4
eval_episodes = 8
agent = { latent_dim = 8, hidden_dim = 16, num_layers = 1, horizon = 1, max_horizon = 2 }

[[variants]]
name = "short"

[[variants]]  # its training programs are the short job's: compiled once
name = "few_evals"
train = { eval_episodes = 4 }

[[references]]
name = "goal_b"
env_kwargs = { intended_goal = 1 }
freeze = ["world_model/encoder", "world_model/dynamics"]

[evaluate]
faults = ["value:gaussian(scale=1.0)", "value:swap(run=@goal_b)"]
severities = [1.0]
matched_drops = [0.2]
horizons = [1]
policies = ["greedy", "boltzmann"]
episodes = 8
calibration_episodes = 8
sample_episodes = 2
"""


def _comparable(records):
  """Trial records without their timings, keyed by trial id."""
  return {r["trial_id"]: {k: v for k, v in r.items() if k != "timings"} for r in records}


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("spec") / "tiny.toml"
  path.write_text(TINY_SWEEP)
  return path


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory, sweep_file):
  """The tiny sweep run once, uninterrupted, in this process (its progress lines in
  ``summary.lines``)."""
  spec = sweep.SweepSpec.from_file(sweep_file)
  out = tmp_path_factory.mktemp("reference")
  lines = []
  summary = sweep.run_sweep(spec, out, workers=1, log=lines.append, progress=False)
  with sweep.ResultsStore.open_readonly(out) as store:
    records = store.records()
  return spec, out, summary, records, lines


@pytest.fixture(scope="module")
def ray_instance():
  """One local Ray instance (one CPU) for the module's Ray tests; the runner uses it."""
  ray = pytest.importorskip("ray", reason="the Ray runner is an optional extra: pip install .[ray]")
  with warnings.catch_warnings():  # Ray's fork + exec is not the bare fork JAX warns about
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
  yield ray
  ray.shutdown()


def _short_job(spec):
  """The "short" job alone: the same job and trial ids as in the two-job sweep."""
  return sweep.SweepSpec.from_dict({**spec.to_dict(), "variants": [{"name": "short"}]})


# -- spec ----------------------------------------------------------------------------------------


def test_spec_grid_has_one_job_per_variant_and_the_intact_trial(sweep_file):
  spec = sweep.SweepSpec.from_file(sweep_file)
  jobs = spec.jobs()
  assert [j.variant for j in jobs] == ["short", "few_evals"]
  assert jobs[1].config.eval_episodes == 4 and jobs[0].config.eval_episodes == 8
  assert jobs[0].references[0][1].env_kwargs == (("intended_goal", 1),)
  trials = spec.trials(jobs[0])
  # intact + 2 faults x (1 severity + 1 matched drop), each at 1 horizon x 2 policies
  assert len(trials) == (1 + 2 * 2) * 2
  assert len({t.trial_id for t in trials}) == len(trials)
  assert {t.fault for t in trials} == {"intact", *spec.fault_specs}


def test_a_fault_table_overrides_the_sweeps_severities(sweep_file):
  spec = sweep.SweepSpec.from_file(sweep_file)
  data = spec.to_dict()
  data["faults"] = ["value:gaussian(scale=1.0)",
                    {"spec": "value:signflip", "severities": [0.5, 1.0], "matched_drops": []}]
  spec = sweep.SweepSpec.from_dict(data)
  trials = [t for t in spec.trials(spec.jobs()[0]) if t.policy == "greedy"]
  by_fault = {f: [(t.severity, t.target_drop) for t in trials if t.fault == f]
              for f in spec.fault_specs}
  assert by_fault == {"value:gaussian(scale=1.0)": [(1.0, None), (None, 0.2)],
                      "value:signflip": [(0.5, None), (1.0, None)]}
  assert sweep.SweepSpec.from_dict(spec.to_dict()) == spec
  with pytest.raises(ValueError, match="needs 'spec'"):
    sweep.SweepSpec.from_dict({**data, "faults": [{"severities": [1.0]}]})


def test_ids_are_stable_and_follow_the_config(sweep_file):
  spec = sweep.SweepSpec.from_file(sweep_file)
  again = sweep.SweepSpec.from_dict(spec.to_dict())
  assert again == spec and again.spec_hash() == spec.spec_hash()
  ids = [t.trial_id for t in spec.trials(spec.jobs()[0])]
  assert ids == [t.trial_id for t in again.trials(again.jobs()[0])]
  more_episodes = sweep.SweepSpec.from_dict({**spec.to_dict(), "episodes": 16})
  assert more_episodes.jobs()[0].job_id == spec.jobs()[0].job_id  # same training, reused
  assert not set(ids) & {t.trial_id for t in more_episodes.trials(more_episodes.jobs()[0])}


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('env = ["GoalGrid-OpenRoom"]', 'env = ["GoalGrid-Nowhere"]'),
     "GoalGrid-FourRooms"),
    (lambda s: s.replace('"value:gaussian(scale=1.0)"', '"value:gausian(scale=1.0)"'),
     "gaussian"),
    (lambda s: s.replace('"value:gaussian(scale=1.0)"', '"valeu:gaussian(scale=1.0)"'),
     "world_model"),
    (lambda s: s.replace("run=@goal_b", "run=@goal_c"), "goal_c"),
    (lambda s: s.replace("batch_size = 8", "batch_sise = 8"), "batch_size"),
    (lambda s: s.replace('"boltzmann"]', '"softmax"]'), "boltzmann"),
    (lambda s: s.replace('"boltzmann"]', '"greedy"]'), "distinct values"),
    (lambda s: s.replace("horizons = [1]", "horizons = [5]"), "largest horizon=2"),
    (lambda s: s.replace("[evaluate]", "[evaluation]"), "evaluate"),
    (lambda s: s.replace("matched_drops = [0.2]", "matched_drops = [1.5]"), "matched_drops"),
    (lambda s: s.replace("name = \"tiny\"", "name = \"tiny"), "not valid TOML"),
    # The tiny agent has a decoder; freezing it is fine, a misspelt path is refused up front.
    (lambda s: s.replace('"world_model/dynamics"]', '"world_model/decoder", "world_model/dynamo"]'),
     "world_model/dynamo"),
])
def test_malformed_sweep_files_are_clear_errors(tmp_path, edit, message):
  path = tmp_path / "bad.toml"
  path.write_text(edit(TINY_SWEEP))
  with pytest.raises(ValueError, match="bad.toml") as error:
    sweep.SweepSpec.from_file(path)
  assert message in str(error.value)


def test_a_missing_sweep_file_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    sweep.SweepSpec.from_file(tmp_path / "nowhere.toml")


# -- store ---------------------------------------------------------------------------------------


def test_a_store_of_another_schema_version_is_refused(tmp_path, sweep_file):
  spec = sweep.SweepSpec.from_file(sweep_file)
  with sweep.ResultsStore.create(tmp_path, spec):
    pass
  ledger = sqlite3.connect(tmp_path / LEDGER_NAME)
  ledger.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
  ledger.commit()
  ledger.close()
  with pytest.raises(sweep.StoreError, match="schema 999"):
    sweep.ResultsStore.create(tmp_path, spec)
  with pytest.raises(sweep.StoreError, match="new directory"):
    sweep.load_results(tmp_path)


def test_a_store_refuses_another_sweep_and_a_second_writer(tmp_path, sweep_file):
  spec = sweep.SweepSpec.from_file(sweep_file)
  with sweep.ResultsStore.create(tmp_path, spec):
    with pytest.raises(sweep.StoreLockedError, match=f"pid {os.getpid()}"):
      sweep.ResultsStore.create(tmp_path, spec)
  other = sweep.SweepSpec.from_dict({**spec.to_dict(), "episodes": 4})
  with pytest.raises(sweep.StoreError, match="different spec"):
    sweep.ResultsStore.create(tmp_path, other)
  with pytest.raises(sweep.StoreError, match="holds no sweep"):
    sweep.load_results(tmp_path / "empty")


# -- running -------------------------------------------------------------------------------------


def test_a_sweep_completes_every_trial_once_and_loads_into_a_dataframe(reference_sweep):
  spec, out, summary, records, _ = reference_sweep
  assert summary.completed == summary.num_trials == 20 and not summary.failed
  with sweep.ResultsStore.open_readonly(out) as store:
    ledger = store.ledger()
  assert all(row["status"] == "done" and row["completions"] == 1 for row in ledger)
  frame = sweep.load_results(out)
  assert len(frame) == 20
  for column in ("fault", "component", "severity", "target_drop", "horizon", "policy",
                 "outcome/intended_success", "goal/coherence", "label",
                 "seeds/intended_success_iqm", "seeds/intended_success_min",
                 "seeds/intended_success_max"):
    assert column in frame.columns
  # 2 seeds: the per-seed values and their range, no bootstrap interval over seeds.
  assert "seeds/intended_success_iqm_ci_low" not in frame.columns
  assert set(frame["component"]) == {"intact", "value"}
  matched = frame[frame["target_drop"] == 0.2]
  assert (matched["severity"] > 0).all()  # calibrated, stored with the trial
  # reruns find everything done
  again = sweep.run_sweep(spec, out, workers=1)
  assert again.completed == 0 and again.skipped == 20


def test_a_sweep_killed_at_a_named_point_resumes_to_identical_results(tmp_path, reference_sweep):
  """SIGKILL the sweep (its short job) between chunk 1's metric rows and its checkpoint in the
  job's main run, run it again, and get the records of an undisturbed sweep. The rerun itself
  carries a kill point at chunk 0 of that run: it survives only if it resumes the run after its
  checkpoint instead of training it anew (and the rows of chunk 1 are not written twice)."""
  kill_point = "metrics_written:1"
  spec, _, _, reference_records, _ = reference_sweep
  one_job = _short_job(spec)
  job_id = one_job.jobs()[0].job_id
  main_run = f"{job_id}/main"  # the kill points fire in that run only
  spec_file = tmp_path / "short.toml"
  spec_file.write_text(_to_toml(one_job))
  out = tmp_path / "killed"
  env = {**os.environ, "MBRL_DRIFT_CACHE": str(jax.config.jax_compilation_cache_dir)}
  command = [sys.executable, "-m", "mbrl_drift.cli", "sweep", str(spec_file), "--out",
             str(out), "--no-report", "--workers", "1"]
  killed = subprocess.run(command, env={**env, KILL_POINT_ENV: f"{kill_point}:{main_run}"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  checkpoint = out / "runs" / main_run / "checkpoint.npz"
  chunks_done = ckpt.read_header(checkpoint)["chunks_done"] if checkpoint.exists() else 0
  assert chunks_done == 1

  resumed = subprocess.run(command, env={**env, KILL_POINT_ENV: f"metrics_written:0:{main_run}"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  assert resumed.returncode == 0, resumed.stderr
  with sweep.ResultsStore.open_readonly(out) as store:
    ledger, records = store.ledger(), store.records()
  assert [row["completions"] for row in ledger] == [1] * 10
  expected = {k: v for k, v in _comparable(reference_records).items() if v["job_id"] == job_id}
  assert len(expected) == 10 and _comparable(records) == expected


def test_the_ray_runner_retries_a_job_whose_worker_died(tmp_path, monkeypatch, ray_instance,
                                                        reference_sweep):
  """The job's first attempt kills its own worker once its training wrote a checkpoint; Ray runs
  it again, and the job resumes its training and gives the local runner's records of an
  undisturbed sweep (so this is also the check that the two runners agree)."""
  spec, _, _, reference_records, _ = reference_sweep
  one_job = _short_job(spec)
  out, attempts = tmp_path / "ray", tmp_path / "attempts"
  attempts.mkdir()
  execute_job = runner.execute_job

  def killed_once(sweep_dir, spec, job, *args):
    (attempts / str(os.getpid())).touch()
    if len(list(attempts.iterdir())) == 1:
      checkpoint = Path(sweep_dir) / job.run_dir / "checkpoint.npz"

      def kill_after_first_checkpoint():
        while not checkpoint.exists():
          time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)

      threading.Thread(target=kill_after_first_checkpoint, daemon=True).start()
    return execute_job(sweep_dir, spec, job, *args)

  monkeypatch.setattr(runner, "execute_job", killed_once)
  summary = sweep.run_sweep(one_job, out, runner="ray", workers=1)
  assert summary.completed == 10 and not summary.failed
  assert len(list(attempts.iterdir())) == 2  # two workers: the killed one and the retry
  with sweep.ResultsStore.open_readonly(out) as store:
    ledger, records = store.ledger(), store.records()
  assert [row["completions"] for row in ledger] == [1] * 10
  expected = {k: v for k, v in _comparable(reference_records).items()
              if v["job_id"] == one_job.jobs()[0].job_id}
  assert _comparable(records) == expected


def test_the_ray_runner_does_not_retry_a_jobs_error(tmp_path, monkeypatch, ray_instance,
                                                    sweep_file):
  attempts = tmp_path / "attempts"

  def failing(*args):
    with open(attempts, "a") as f:
      f.write("attempt\n")
    raise ValueError("a real error")

  monkeypatch.setattr(runner, "execute_job", failing)
  one_job = _short_job(sweep.SweepSpec.from_file(sweep_file))
  with pytest.raises(sweep.SweepError, match="a real error"):
    sweep.run_sweep(one_job, tmp_path / "out", runner="ray", workers=1)
  assert attempts.read_text() == "attempt\n"


def test_an_unknown_runner_is_refused(tmp_path, sweep_file):
  spec = sweep.SweepSpec.from_file(sweep_file)
  with pytest.raises(ValueError, match="local"):
    sweep.run_sweep(spec, tmp_path, runner="slurm")


def test_a_failing_job_is_reported_and_retried(tmp_path, sweep_file):
  # A reference run with a goal the layout does not have fails inside the job.
  text = TINY_SWEEP.replace("intended_goal = 1", "intended_goal = 7")
  text = text.replace('[[variants]]\nname = "few_evals"\ntrain = { eval_episodes = 4 }\n', "")
  path = tmp_path / "failing.toml"
  path.write_text(text)
  spec = sweep.SweepSpec.from_file(path)
  with pytest.raises(sweep.SweepError, match="intended_goal"):
    sweep.run_sweep(spec, tmp_path / "out", workers=1)
  with sweep.ResultsStore.open_readonly(tmp_path / "out") as store:
    statuses = {row["status"] for row in store.ledger()}
  assert statuses == {"failed"}


def test_a_job_that_failed_once_is_retried_by_the_next_run(tmp_path, monkeypatch,
                                                           reference_sweep):
  """A transient failure (the job's first attempt raises) leaves its trials failed; the same
  command again retries exactly those trials and ends with the undisturbed records."""
  spec, _, _, reference_records, _ = reference_sweep
  one_job = _short_job(spec)
  (job,) = one_job.jobs()
  real_execute_job, attempts = runner.execute_job, []

  def flaky_execute_job(sweep_dir, spec, job, *args, **kwargs):
    attempts.append(job.job_id)
    if attempts.count(job.job_id) == 1:
      raise RuntimeError(f"transient failure of {job.job_id}")
    return real_execute_job(sweep_dir, spec, job, *args, **kwargs)

  monkeypatch.setattr(runner, "execute_job", flaky_execute_job)
  out = tmp_path / "out"
  with pytest.raises(sweep.SweepError, match="transient failure"):
    sweep.run_sweep(one_job, out, workers=1)
  with sweep.ResultsStore.open_readonly(out) as store:
    assert {row["status"] for row in store.ledger()} == {"failed"}
  summary = sweep.run_sweep(one_job, out, workers=1)
  assert summary.completed == summary.num_trials == 10 and not summary.failed
  assert attempts == [job.job_id, job.job_id]
  with sweep.ResultsStore.open_readonly(out) as store:
    ledger, records = store.ledger(), store.records()
  assert all(row["status"] == "done" and row["completions"] == 1 for row in ledger)
  expected = {k: v for k, v in _comparable(reference_records).items()
              if v["job_id"] == job.job_id}
  assert len(expected) == 10 and _comparable(records) == expected


# -- progress ------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_a_sweep_prints_plain_progress_lines_with_counts_and_an_eta(reference_sweep):
  spec, _, _, _, lines = reference_sweep
  jobs = spec.jobs()
  assert lines[0] == ("[0/20 trials  0:00:00 elapsed  ETA -:--:--] sweep 'tiny': 20 trials in 2 "
                      "jobs; 0 already done, 20 to run (local runner)")
  prefix = re.compile(r"^\[(\d+)/20 trials  \d:\d\d:\d\d elapsed  ETA (-:--:--|\d:\d\d:\d\d)\] ")
  assert all(prefix.match(line) for line in lines), lines
  assert not any("\r" in line or "\x1b" in line for line in lines)
  messages = [prefix.sub("", line) for line in lines]
  for job in jobs:  # in this process, one job after the other
    label = f"job {job.job_id} ({job.env}, {job.variant})"
    assert messages.index(f"{label}: training") < messages.index(
        f"{label}: evaluating 10 trials") < messages.index(f"{label}: 10 trials done")
  done = [prefix.match(line) for line in lines if line.endswith("10 trials done")]
  assert [m.group(1) for m in done] == ["10", "20"]
  assert done[0].group(2) != "-:--:--" and done[1].group(2) == "0:00:00"


def test_a_sweep_draws_a_live_display_in_a_terminal(reference_sweep):
  spec, out, _, _, _ = reference_sweep
  screen = io.StringIO()
  sweep.run_sweep(spec, out, workers=1,
                  progress=Console(file=screen, force_terminal=True, width=100))
  text = screen.getvalue()
  assert "\x1b[" in text  # colours and cursor moves
  plain = _ANSI.sub("", text)
  assert "20/20 trials" in plain and "100%" in plain
  assert "sweep 'tiny': 20 trials in 2 jobs; 20 already done, 0 to run" in plain


def test_the_progress_reporter_draws_a_bar_and_status_lines_in_a_terminal():
  screen = io.StringIO()
  console = Console(file=screen, force_terminal=True, width=100)
  with progress_reporter(4, "demo", unit="trials", done=1, console=console) as progress:
    assert progress.live
    progress.status("a", "training job a")
    progress.status("b", "evaluating job b: 3 trials")
    progress._progress.refresh()
    assert progress.eta_s is None  # nothing done since it started
    progress.done("b", "job b done", advance=2)
    assert progress.eta_s is not None and progress.completed == 3
    progress._progress.refresh()
  plain = _ANSI.sub("", screen.getvalue())
  assert "training job a" in plain and "evaluating job b: 3 trials" in plain
  assert "1/4 trials" in plain and "3/4 trials" in plain and "ETA" in plain
  assert "job b done" in plain


def test_the_progress_reporter_writes_plain_lines_elsewhere():
  log = io.StringIO()
  with progress_reporter(4, "demo", unit="chunks", console=Console(file=log)) as progress:
    assert not progress.live
    progress.status("run", "chunk 1")
    progress.status("run", "chunk 1")  # unchanged: no line
    progress.done("run", "chunk 1 done", advance=1)
    progress.log("note")
  lines = log.getvalue().splitlines()
  assert [line.split("] ", 1)[1] for line in lines] == ["chunk 1", "chunk 1 done", "note"]
  assert lines[0].startswith("[0/4 chunks  0:00:00 elapsed  ETA -:--:--] ")
  assert lines[1].startswith("[1/4 chunks  0:00:00 elapsed  ETA 0:00:00] ")
  assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
  written = []
  with progress_reporter(2, write=written.append, console=Console(file=io.StringIO())) as p:
    p.done(None, "first", advance=1)
  assert written == ["[1/2 items  0:00:00 elapsed  ETA 0:00:00] first"]
  silent = io.StringIO()
  with progress_reporter(2, enabled=False, console=Console(file=silent)) as p:
    p.status("x", "nothing")
    p.done("x", "nothing", advance=2)
  assert silent.getvalue() == "" and p.completed == 2
  assert format_duration(3725.4) == "1:02:05" and format_duration(None) == "-:--:--"


# -- entry points: the report command and experiment E1's script -------------------------------


def _load_e1():
  import importlib.util

  path = Path(__file__).resolve().parents[1] / "experiments" / "component_faults.py"
  module_spec = importlib.util.spec_from_file_location("component_faults", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def test_report_command_and_e1_script_on_a_finished_sweep(reference_sweep, sweep_file, capsys):
  from mbrl_drift.cli import main

  _, out, _, records, _ = reference_sweep
  assert main(["report", str(out)]) == 0
  printed = capsys.readouterr().out
  assert f"report: {out / 'report' / 'report.md'}" in printed
  markdown = (out / "report" / "report.md").read_text()
  assert markdown.index("coherence_map") < markdown.index("## Conditions")

  e1 = _load_e1()
  assert e1.main(["--config", str(sweep_file), "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "20 trials (0 run now, 20 reused)" in printed
  assert "## Question" in (out / "report" / "report.md").read_text()
  rows = e1.headline(records)
  assert len(rows) == 20 and {row["fault"] for row in rows} == {"intact", *e1.sweep.SweepSpec
                                                                .from_file(sweep_file)
                                                                .fault_specs}
  text = e1.verdict(sweep.relabel(records))
  assert "**objective faults** (value)" in text and "No model faults in this sweep" in text
  assert e1.component_class("value+world_model/reward") == "objective"
  assert e1.component_class("world_model/dynamics") == "model"
  assert e1.component_class("value+world_model/dynamics") is None


def test_both_e1_sweep_files_parse_and_their_jobs_validate():
  e1 = _load_e1()
  for name, path in e1.CONFIGS.items():
    spec = sweep.SweepSpec.from_file(path)  # validates fault targets against each job's agent
    jobs = spec.jobs()
    assert jobs and all(job.config.env == "GoalGrid-FourRooms" for job in jobs), name
    assert all(len(spec.trials(job)) > 0 for job in jobs)
    assert [r[0] for r in jobs[0].references] == ["goal_b"]


def test_the_readme_main_command_runs_its_quick_path_on_a_tiny_budget(tmp_path, capsys):
  """experiments/component_faults.py --quick with its sweep file shrunk to seconds (a tiny agent
  on a small room): the same faults, reference, matched damage and report path as the README's
  main command."""
  import tomllib

  e1 = _load_e1()
  data = tomllib.loads(e1.CONFIGS["quick"].read_text())
  # The tiny sweep's agent on its small room (its training programs are compiled already);
  # the quick file's faults, reference, matched damage, horizons and selections as they are.
  tiny = tomllib.loads(TINY_SWEEP)
  data["train"] = tiny["train"]
  data["references"][0].pop("train")
  data["evaluate"].update(episodes=8, calibration_episodes=8, sample_episodes=2)
  spec = sweep.SweepSpec.from_dict(data)
  tiny = tmp_path / "tiny.toml"
  tiny.write_text(_to_toml(spec))
  assert e1.main(["--config", str(tiny), "--out", str(tmp_path / "out")]) == 0
  printed = capsys.readouterr().out
  assert f"{len(spec.trials(spec.jobs()[0]))} trials" in printed
  assert "## Answer" not in printed and "report: " in printed
  assert (tmp_path / "out" / "report" / "report.html").exists()


def _to_toml(spec) -> str:
  """A sweep file for ``spec`` (the flat layout of SweepSpec.to_dict, as JSON-compatible TOML)."""
  import json

  def value(v):
    if isinstance(v, dict):
      return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items() if x is not None) + " }"
    if isinstance(v, (list, tuple)):
      return "[" + ", ".join(value(x) for x in v) + "]"
    return json.dumps(v)

  return "\n".join(f"{k} = {value(v)}" for k, v in spec.to_dict().items() if v is not None)


def test_a_sweep_of_the_policy_agent_uses_its_selections_and_has_no_horizon(tmp_path):
  text = """
name = "policy"
seeds = 2

[train]
env = ["GoalGrid-OpenRoom"]
agent_kind = "policy"
total_steps = 512
num_envs = 8
num_chunks = 2
agent = { hidden_dim = 16, num_layers = 1, rollout_steps = 8 }

[evaluate]
faults = ["actor:gaussian(scale=0.5)"]
severities = [1.0]
policies = ["greedy", "sample"]
episodes = 8
"""
  path = tmp_path / "policy.toml"
  path.write_text(text)
  spec = sweep.SweepSpec.from_file(path)
  (job,) = spec.jobs()
  assert job.config.agent_kind == "policy" and job.config.agent.rollout_steps == 8
  trials = spec.trials(job)
  assert {t.horizon for t in trials} == {None}
  assert {t.policy for t in trials} == {"greedy", "sample"}
  path.write_text(text.replace('"sample"]', '"boltzmann"]'))
  with pytest.raises(ValueError, match=r"one of \['greedy', 'sample'\].*policy agent"):
    sweep.SweepSpec.from_file(path)
  # A planner-only field set for the policy agent is an error, not silently ignored.
  path.write_text(text.replace("num_chunks = 2", "num_chunks = 2\nbuffer_size = 256"))
  with pytest.raises(ValueError, match="buffer_size=256: expected its default 4000: agent "
                                       "'policy' does not read it"):
    sweep.SweepSpec.from_file(path)
