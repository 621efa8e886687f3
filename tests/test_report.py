"""Sweep reports: files, figure order, tables, the coherence matrix and trajectory pictures."""

import base64
import re
import shutil
import types

import jax
import numpy as np
import pytest
from matplotlib import image as mpimg

from mbrl_drift import report
from mbrl_drift.fault_evaluation import evaluate_conditions, parse_faults, record_metrics
from mbrl_drift.runs import load_run

FAULT_SPECS = ("value:gaussian(scale=2.0)", "world_model/dynamics:ablate")
SEVERITIES = (0.0, 0.5, 1.0)
HORIZONS = (1, 2)
PREAMBLE = "**Question.** Does a broken value function fail coherently?"
THRESHOLDS = "Coherent when C >= 0.5 (thresholds note)."


def _records(run, results):
  """Trial records as the sweep runner stores them (metrics merged by the pipeline's one rule), one per (fault, severity, horizon, policy)."""
  rows = results.rows(run.trainer.env, run.trainer.env_params)
  records = []
  for row in rows:
    if row["fault"] == "intact" and row["severity"] > 0:  # the intact agent is one condition
      continue
    index = (results.fault_labels.index(row["fault"]),
             list(results.severities).index(row["severity"]),
             list(results.horizons).index(row["horizon"]), results.policies.index(row["policy"]))
    metrics = record_metrics(row, jax.random.key(13))
    component, _, fault_name = row["fault"].partition(":")
    records.append({
        "trial_id": f"trial{len(records)}", "job_id": "job0", "run_dir": "runs/job0",
        "config": {"env": run.config.env, "env_kwargs": [list(p) for p in run.config.env_kwargs],
                   "seeds": run.num_seeds, "fault": row["fault"], "component": component,
                   "fault_name": fault_name.split("(")[0] or component,
                   "severity": row["severity"], "target_drop": None,
                   "horizon": row["horizon"], "policy": row["policy"], "episodes": 6},
        "metrics": metrics, "label": row["label"], "label_reasons": row["label_reasons"],
        "sample": {"seed": 0, "state_index":
                   np.asarray(results.trajectories.state_index[index + (0, slice(0, 4))]).tolist()},
    })
  return records


@pytest.fixture(scope="module")
def sweep(tiny_run_dir, tmp_path_factory):
  run = load_run(tiny_run_dir)
  results = evaluate_conditions(run, [None, *parse_faults(run, FAULT_SPECS)], SEVERITIES,
                                HORIZONS, ["greedy"], num_episodes=6)
  records = _records(run, results)
  sweep_dir = tmp_path_factory.mktemp("sweep")
  (sweep_dir / "runs" / "job0").mkdir(parents=True)
  shutil.copy(tiny_run_dir / "metrics.jsonl", sweep_dir / "runs" / "job0" / "metrics.jsonl")
  paths = report.write_report(sweep_dir, records, preamble=PREAMBLE, thresholds_note=THRESHOLDS)
  return types.SimpleNamespace(records=records, paths=paths, fault_labels=results.fault_labels,
                               markdown=paths.markdown.read_text(), html=paths.html.read_text())


def test_files_exist_and_the_report_opens_with_the_coherence_map(sweep):
  assert sweep.paths.markdown == sweep.paths.markdown.parent / "report.md"
  assert sweep.paths.markdown.parent.name == "report" and sweep.paths.html.exists()
  assert set(sweep.paths.figures) == {"coherence_map", "goal_reach", "trajectories", "horizon",
                                      "training"}
  text = sweep.markdown
  assert re.findall(r"^## .*$", text, re.M)[0] == "## Figures"
  first_image = text.index("![")
  assert text[first_image:].startswith("![Coherence map](figures/coherence_map.png)")
  assert first_image < text.index(PREAMBLE) < text.index("## Conditions") < text.index(THRESHOLDS)


def test_headline_table_has_one_row_per_condition(sweep):
  rows = report.headline_table(sweep.records)
  assert len(rows) == len(sweep.records) == 2 + 2 * len(SEVERITIES) * len(HORIZONS)
  table = sweep.markdown.split("## Conditions")[1].split("###")[0]
  lines = [line for line in table.splitlines() if line.startswith("|")]
  assert len(lines) == 2 + len(rows)
  assert lines[0].split("|")[1:-1] == [f" {c} " for c in report.HEADLINE_COLUMNS]
  assert lines[2].startswith("| intact | 0 | 1 | greedy |")
  for row in rows:  # every condition appears once, with its record's values
    (record,) = [r for r in sweep.records if (r["config"]["fault"], r["config"]["horizon"],
                                              f"{r['config']['severity']:g}") ==
                 (row["fault"], row["horizon"], row["level"])]
    metrics = record["metrics"]
    assert row["success"] == pytest.approx(np.mean(metrics["outcome/intended_success/per_seed"]))
    assert row["coherence"] == metrics["goal/coherence"]
    # 2 seeds: no interval over seeds, the seeds' range instead
    assert row["coherence_ci"] is None
    assert row["coherence_seed_range"] == (metrics["goal/coherence/min"],
                                           metrics["goal/coherence/max"])
    assert row["success_seed_range"] == (metrics["seeds/intended_success_min"],
                                         metrics["seeds/intended_success_max"])
    assert row["inferred_goal"] == "AB"[metrics["goal/inferred_goal"]]
    assert row["spl_inferred"] == metrics[f"outcome/spl_{row['inferred_goal']}"]
    assert row["label"] == record["label"]
    assert row["success_iqm"] == metrics["seeds/intended_success_iqm"]


def test_html_embeds_every_figure(sweep):
  sources = re.findall(r'<img [^>]*src="([^"]+)"', sweep.html)
  assert len(sources) == len(sweep.paths.figures)
  for source in sources:
    assert source.startswith("data:image/png;base64,")
    assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
  assert "<strong>Question.</strong>" in sweep.html and "<table>" in sweep.html


def test_figures_are_valid_images_of_a_sensible_size(sweep):
  for name, path in sweep.paths.figures.items():
    image = mpimg.imread(path)
    height, width = image.shape[:2]
    assert 150 <= height <= 2400 and 150 <= width <= 1600, (name, image.shape)
    assert np.ptp(image[..., :3]) > 0.5, name  # something is drawn


def test_coherence_matrix_of_one_fault_at_two_severities(sweep):
  fault = sweep.fault_labels[1]
  chosen = [r for r in sweep.records if r["config"]["fault"] == fault
            and r["config"]["severity"] > 0 and r["config"]["horizon"] == 1]
  matrix = report.coherence_matrix(chosen)
  assert matrix.faults == (fault,) and matrix.levels == ("0.5", "1")
  assert (matrix.horizon, matrix.policy) == (1, "greedy")
  assert matrix.coherence.shape == matrix.success.shape == (1, 2)
  np.testing.assert_allclose(matrix.coherence[0],
                             [r["metrics"]["goal/coherence"] for r in chosen])
  np.testing.assert_allclose(matrix.success[0],
                             [r["metrics"]["outcome/intended_success"] for r in chosen])


def test_coherence_matrix_of_the_whole_sweep(sweep):
  matrix = report.coherence_matrix(sweep.records, horizon=2)
  assert matrix.faults == sweep.fault_labels  # intact first
  assert matrix.levels == ("0", "0.5", "1")
  assert np.isfinite(matrix.coherence[0, 0]) and np.isnan(matrix.coherence[0, 1:]).all()
  assert np.isfinite(matrix.success[1:]).all()
  (record,) = [r for r in sweep.records if r["config"]["fault"] == sweep.fault_labels[2]
               and r["config"]["severity"] == 0.5 and r["config"]["horizon"] == 2]
  assert matrix.success[2, 1] == pytest.approx(record["metrics"]["outcome/intended_success"])


def test_matched_damage_columns_are_labelled_by_target(sweep):
  chosen = [r for r in sweep.records if r["config"]["fault"] == sweep.fault_labels[1]
            and r["config"]["severity"] > 0]
  matched = [{**r, "config": {**r["config"], "target_drop": 0.5 if r["config"]["severity"] < 1
                              else 0.25}} for r in chosen]
  matrix = report.coherence_matrix(matched, horizon=1)
  assert matrix.levels == ("drop 0.25", "drop 0.5")
  assert chosen[0]["config"]["target_drop"] is None  # the records were not modified


def test_trajectory_pictures_for_goal_grid(sweep):
  assert "trajectories" in sweep.paths.figures
  drawn = re.search(r"^\*Drawn: (.*)\.\*$", sweep.markdown, re.M).group(1).split("; ")
  by_fault = {title.split(" @ ")[0]: title for title in drawn}
  assert list(by_fault) == list(sweep.fault_labels)  # intact plus each fault
  for fault in sweep.fault_labels[1:]:  # at its largest severity
    assert by_fault[fault].startswith(f"{fault} @ 1: ")


def test_missing_metrics_render_as_dashes_and_nonfinite_as_nan(tmp_path):
  records = [
      {"config": {"env": "GoalGrid-OpenRoom", "fault": "intact", "severity": 0.0, "horizon": 1,
                  "policy": "greedy"}},
      {"config": {"env": "CartPole", "fault": "value:signflip", "severity": 1.0, "horizon": 1,
                  "policy": "greedy"},
       "metrics": {"goal/coherence": float("nan"), "outcome/intended_success": 0.5},
       "label": "mixed", "sample": {"state_index": [[0, 1]]}},
      {},
  ]
  paths = report.write_report(tmp_path, records, out_dir=tmp_path / "out")
  assert paths.markdown.parent == tmp_path / "out"
  rows = {row["fault"]: row for row in report.headline_table(records)}
  table = report.format_markdown_table(list(rows.values()), report.HEADLINE_COLUMNS)
  intact_line = next(line for line in table.splitlines() if line.startswith("| intact"))
  assert intact_line.count("| – ") == len(report.HEADLINE_COLUMNS) - 4
  broken = next(line for line in table.splitlines() if line.startswith("| value:signflip"))
  # success, its IQM, CI and seed range missing, C nan, its CI and seed range missing
  assert "| 0.50 | – | – | – | nan | – | – |" in broken
  text = paths.markdown.read_text()
  assert intact_line in text and broken in text
  assert "CartPole has no render_trajectory" in text
  assert "No trial names its run directory" in text
  assert "horizon" not in paths.figures and "trajectories" not in paths.figures


def test_format_markdown_table():
  rows = [{"a": 1, "b": (0.25, None), "c": "x|y"}, {"a": float("inf")}]
  assert report.format_markdown_table(rows).splitlines() == [
      "| a | b | c |", "|---|---|---|", "| 1 | [0.25, –] | x\\|y |", "| nan | – | – |"]
