"""Training runs on disk: CLI, checkpoints, resume, bad input."""

import json
import shutil

import jax
import numpy as np
import pytest

from mbrl_drift import checkpoint as ckpt
from mbrl_drift.cli import main
from mbrl_drift.runs import load_run, train_run

TINY_FLAGS = ["--env", "GoalGrid-OpenRoom", "--steps", "256", "--num-envs", "8",
              "--buffer-size", "256", "--batch-size", "8", "--learning-starts", "64",
              "--num-chunks", "2", "--eval-episodes", "8", "--agent-latent-dim", "8",
              "--agent-hidden-dim", "16", "--agent-num-layers", "1", "--agent-horizon", "1",
              "--agent-max-horizon", "2", "--quiet"]


def _assert_same_state(resumed, finished):
  """Every leaf (PRNG keys by their data) of two training states is bitwise equal."""
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(finished), strict=True):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_array_equal(a, b)


def test_cli_train_writes_a_complete_run_and_refuses_to_overwrite_it(tmp_path, capsys):
  out = tmp_path / "run"
  assert main(["train", "--seeds", "2", "--out", str(out), *TINY_FLAGS]) == 0
  printed = capsys.readouterr().out
  assert "intended_success" in printed and "env steps per seed: 256" in printed
  for name in ("config.json", "checkpoint.npz", "metrics.jsonl", "summary.json"):
    assert (out / name).exists(), name
  rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert [(r["chunk"], r["seed"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
  assert all(np.isfinite(r["loss/value"]) for r in rows)

  # Running again without --resume refuses to overwrite.
  assert main(["train", "--seeds", "2", "--out", str(out), *TINY_FLAGS]) == 2
  assert "already holds a run" in capsys.readouterr().err

  run = load_run(out)
  assert run.num_seeds == 2 and run.config.env == "GoalGrid-OpenRoom"
  assert jax.tree.leaves(run.params)[0].shape[0] == 2


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, tiny_train_config, tiny_run_dir):
  # tiny_run_dir is the same run (config, seeds, base seed) trained without interruption.
  partial = tmp_path / "partial"
  summary = train_run(tiny_train_config, 2, partial, progress=False, max_chunks=1)
  assert not summary["finished"] and summary["chunks_done"] == 1
  summary = train_run(tiny_train_config, 2, partial, resume=True, progress=False)
  assert summary["finished"]
  _assert_same_state(load_run(partial).state, load_run(tiny_run_dir).state)
  assert (partial / "metrics.jsonl").read_text() == (tiny_run_dir / "metrics.jsonl").read_text()


def test_resume_with_a_different_config_is_refused(tmp_path, tiny_train_config, tiny_run_dir):
  from mbrl_drift.config import replace
  run_dir = tmp_path / "run"
  shutil.copytree(tiny_run_dir, run_dir)
  with pytest.raises(ValueError, match="cannot resume"):
    train_run(replace(tiny_train_config, batch_size=4), 2, run_dir, resume=True, progress=False)


def test_corrupted_and_mismatched_checkpoints_give_clear_errors(tmp_path):
  state = {"a": np.arange(3.0), "b": {"c": np.ones((2, 2), np.int32)},
           "key": jax.random.key(0)}
  path = tmp_path / "c.npz"
  ckpt.save_checkpoint(path, state, {"note": "x"})
  template = jax.tree.map(lambda x: x, state)
  loaded, header = ckpt.load_checkpoint(path, template)
  assert header == {"note": "x", "format": ckpt.CHECKPOINT_FORMAT}
  np.testing.assert_array_equal(loaded["b"]["c"], state["b"]["c"])
  np.testing.assert_array_equal(jax.random.key_data(loaded["key"]),
                                jax.random.key_data(state["key"]))

  with pytest.raises(ckpt.CheckpointError, match=r"leaf \['a'\] has shape \(3,\)"):
    ckpt.load_checkpoint(path, {**template, "a": np.zeros(4)})
  with pytest.raises(ckpt.CheckpointError, match="missing leaf"):
    ckpt.load_checkpoint(path, {**template, "extra": np.zeros(1)})
  with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
    ckpt.load_checkpoint(tmp_path / "none.npz", template)

  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(ckpt.CheckpointError, match="corrupted"):
    ckpt.load_checkpoint(path, template)
  path.write_bytes(b"not a zip file at all")
  with pytest.raises(ckpt.CheckpointError, match="corrupted"):
    ckpt.load_checkpoint(path, template)


def test_load_run_on_a_directory_without_a_run(tmp_path):
  with pytest.raises(ckpt.CheckpointError, match="holds no run"):
    load_run(tmp_path)


def test_cli_rejects_invalid_config_with_the_field_name(tmp_path, capsys):
  out = tmp_path / "never"
  assert main(["train", "--out", str(out), "--env", "GoalGrid-OpenRoom", "--batch-size", "0"]) == 2
  assert "batch_size" in capsys.readouterr().err
  assert not out.exists()


def test_cli_trains_the_envs_preset_with_flags_on_top():
  from mbrl_drift.cli import _config_from_args, build_parser
  from mbrl_drift.config import TrainConfig, replace
  from mbrl_drift.presets import preset

  parse = lambda *flags: _config_from_args(build_parser().parse_args(["train", "--out", "x",
                                                                       *flags]))
  assert parse() == preset("GoalGrid-FourRooms")
  assert parse("--env", "CartPole", "--batch-size", "32", "--agent-horizon", "1") == replace(
      preset("CartPole"), batch_size=32, agent__horizon=1)
  assert parse("--env", "CartPole", "--no-preset") == TrainConfig(env="CartPole")


def test_cli_lists_environments(capsys):
  assert main(["envs"]) == 0
  out = capsys.readouterr().out
  assert "GoalGrid-FourRooms" in out and "mbrl_drift/CartPole-v0" in out


def test_fine_tuning_from_a_run_with_a_frozen_world_model_gives_a_goal_swap_reference(
    tiny_run_dir, tmp_path, capsys):
  other_goal = tmp_path / "goal_b"
  flags = [f for f in TINY_FLAGS]
  code = main(["train", "--seeds", "2", "--out", str(other_goal), *flags,
               "--init-from", str(tiny_run_dir), "--env-arg", "intended_goal=1",
               "--freeze", "world_model/encoder,world_model/dynamics"])
  assert code == 0, capsys.readouterr().err
  base, tuned = load_run(tiny_run_dir), load_run(other_goal)
  assert int(tuned.trainer.env_params.intended_goal) == 1
  for path in ("encoder", "dynamics"):
    for a, b in zip(jax.tree.leaves(base.params["world_model"][path]),
                    jax.tree.leaves(tuned.params["world_model"][path])):
      np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(base.params["value"]),
                                                      jax.tree.leaves(tuned.params["value"])))
  capsys.readouterr()
  assert main(["evaluate", "--run", str(tiny_run_dir), "--fault",
               f"value:swap(run={other_goal})", "--severity", "1", "--episodes", "4"]) == 0
  assert "value:swap" in capsys.readouterr().out


def test_unknown_env_argument_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
  out = tmp_path / "never"
  assert main(["train", "--out", str(out), *TINY_FLAGS, "--env-arg", "colour=red"]) == 2
  assert "env_kwargs" in capsys.readouterr().err
  assert not out.exists()


def test_a_checkpoint_of_another_format_is_a_clear_error(tmp_path):
  path = tmp_path / "c.npz"
  ckpt.save_checkpoint(path, {"a": np.zeros(2)}, {"version": "9.9"})
  data = dict(np.load(path))
  data["__header__"] = np.frombuffer(json.dumps({"format": 2, "version": "9.9"}).encode(),
                                     np.uint8)
  np.savez(path, **data)
  with pytest.raises(ckpt.CheckpointError, match=r"has format 2 \(written by mbrl_drift 9.9\); "
                                                 r"this mbrl_drift reads format 1"):
    ckpt.load_checkpoint(path, {"a": np.zeros(2)})


def test_a_run_killed_between_metrics_and_checkpoint_resumes_with_out_and_resume_alone(
    tmp_path, tiny_run_dir, capsys):
  """SIGKILL at a fixed point (chunk 0's metric rows written, its checkpoint not), then
  ``mbrl-drift train --out DIR --resume`` with no other flag: the stored config, seeds and base
  seed continue the run, which ends identical to an uninterrupted one, with no duplicated rows."""
  import os
  import subprocess
  import sys

  from mbrl_drift.runs import KILL_POINT_ENV

  out = tmp_path / "killed"
  command = [sys.executable, "-m", "mbrl_drift.cli", "train", "--seeds", "2", "--out", str(out),
             *TINY_FLAGS]
  killed = subprocess.run(command, env={**os.environ, KILL_POINT_ENV: "metrics_written:0"},
                          capture_output=True, text=True)
  assert killed.returncode == -9, killed.stderr
  rows = (out / "metrics.jsonl").read_text().splitlines()
  assert len(rows) == 2 and not (out / "checkpoint.npz").exists()

  assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
  _assert_same_state(load_run(out).state, load_run(tiny_run_dir).state)
  assert (out / "metrics.jsonl").read_text() == (tiny_run_dir / "metrics.jsonl").read_text()


def test_resume_keeps_only_checkpointed_chunks_rows(tmp_path, tiny_train_config, tiny_run_dir):
  """Rows of a chunk trained again after a kill at 'checkpoint_saved' are not duplicated either:
  a metrics file with an extra (torn) row past the checkpoint is cut back on resume."""
  partial = tmp_path / "partial"
  train_run(tiny_train_config, 2, partial, progress=False, max_chunks=1)
  with open(partial / "metrics.jsonl", "a") as f:
    f.write('{"chunk": 1, "seed": 0, "loss/value": 1.0}\n{"chunk": 1, "se')
  train_run(tiny_train_config, 2, partial, resume=True, progress=False)
  assert (partial / "metrics.jsonl").read_text() == (tiny_run_dir / "metrics.jsonl").read_text()


def test_resume_flags_that_contradict_the_stored_run_are_an_error(tmp_path, tiny_run_dir, capsys):
  run_dir = tmp_path / "run"
  shutil.copytree(tiny_run_dir, run_dir)
  assert main(["train", "--out", str(run_dir), "--resume", "--batch-size", "4", "--seeds", "3",
               "--quiet"]) == 2
  error = capsys.readouterr().err
  assert "--batch-size 4 (stored: 8)" in error and "--seeds 3 (stored: 2)" in error
  # Flags equal to the stored values are fine.
  assert main(["train", "--out", str(run_dir), "--resume", "--batch-size", "8", "--quiet"]) == 0


def test_fine_tuning_from_an_unfinished_base_is_a_clear_error(tmp_path, tiny_train_config):
  unfinished = tmp_path / "unfinished"
  train_run(tiny_train_config, 2, unfinished, progress=False, max_chunks=1)
  with pytest.raises(ValueError, match="the base run is unfinished; finish it with"):
    train_run(tiny_train_config, 2, tmp_path / "fine_tuned", progress=False,
              init_from=unfinished)
  assert not (tmp_path / "fine_tuned").exists()
