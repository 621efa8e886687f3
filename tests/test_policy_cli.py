"""The current paradigm end to end from the CLI: clone a base, fine-tune it by RL toward another
goal with a frozen base/actor, break the fine-tuning, and see the reversion metrics."""

import json

import pytest

from mbrl_drift.cli import main
from mbrl_drift.runs import load_run

TINY_POLICY = ["--agent-hidden-dim", "16", "--agent-num-layers", "1", "--agent-rollout-steps", "8",
               "--num-envs", "8", "--num-chunks", "2", "--eval-episodes", "8", "--quiet"]


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
  root = tmp_path_factory.mktemp("paradigm")
  assert main(["pretrain", "--env", "GoalGrid-OpenRoom", "--demonstrator", "goal A",
               "--out", str(root / "base"), "--seeds", "2", "--agent-demo-episodes", "64",
               "--agent-bc-epochs", "4", "--agent-hidden-dim", "16", "--agent-num-layers", "1",
               "--quiet"]) == 0
  assert main(["train", "--agent", "policy", "--env", "GoalGrid-OpenRoom",
               "--init-from", str(root / "base"), "--env-arg", "intended_goal=1",
               "--seeds", "2", "--steps", "512", "--agent-kl-to-base", "0.1", "--out",
               str(root / "fine_tuned"), *TINY_POLICY]) == 0
  return root


def test_the_fine_tuned_run_keeps_its_base_and_names_it_in_its_identity(fine_tuned):
  base, run = load_run(fine_tuned / "base"), load_run(fine_tuned / "fine_tuned")
  assert base.config.agent.algorithm == "bc" and run.config.agent.algorithm == "ppo"
  assert run.config.init_from == str(fine_tuned / "base")
  assert "init_from" in run.config.to_dict()
  # base/actor is the base's actor, unchanged by fine-tuning.
  for path in ("Dense_0", "Dense_1"):
    for leaf in ("kernel", "bias"):
      assert (run.params["base"]["actor"][path][leaf] == base.params["actor"][path][leaf]).all()


def test_moving_the_fine_tuning_delta_back_reverts_to_the_base(fine_tuned, capsys):
  out = fine_tuned / "evaluation.json"
  assert main(["evaluate", "--run", str(fine_tuned / "fine_tuned"), "--fault", "actor:delta_scale",
               "--severity", "1", "--policy", "sample", "--episodes", "8", "--json",
               str(out)]) == 0
  rows = json.loads(out.read_text())["conditions"]
  reverted = next(r for r in rows if r["fault"] == "actor:delta_scale" and r["severity"] == 1.0)
  assert reverted["behaviour"]["reference/base"] == pytest.approx(0.0, abs=1e-6)
  assert reverted["behaviour"]["reversion/coefficient"] == pytest.approx(0.0, abs=0.01)
  intact = next(r for r in rows if r["fault"] == "intact")
  assert intact["behaviour"]["reference/healthy"] == pytest.approx(0.0, abs=1e-6)


def test_bad_fine_tuning_bases_are_clear_errors(fine_tuned, tmp_path, capsys):
  # A base of another agent kind, of another environment, and one that does not exist.
  assert main(["train", "--agent", "planner", "--env", "GoalGrid-OpenRoom", "--init-from",
               str(fine_tuned / "base"), "--out", str(tmp_path / "a"), "--quiet"]) == 2
  assert "a 'policy' run; use a base of agent kind 'planner'" in capsys.readouterr().err
  assert main(["train", "--agent", "policy", "--env", "GoalGrid-FourRooms", "--init-from",
               str(fine_tuned / "base"), "--out", str(tmp_path / "b"), *TINY_POLICY]) == 2
  assert "use a base trained on GoalGrid-FourRooms" in capsys.readouterr().err
  assert main(["train", "--agent", "policy", "--init-from", str(tmp_path / "nothing"),
               "--out", str(tmp_path / "c"), *TINY_POLICY]) == 2
  assert "holds no run" in capsys.readouterr().err
  # A base whose networks do not fit the fine-tuned agent's.
  wider = [flag if flag != "16" else "32" for flag in TINY_POLICY]
  assert main(["train", "--agent", "policy", "--env", "GoalGrid-OpenRoom", "--init-from",
               str(fine_tuned / "base"), "--seeds", "2", "--out", str(tmp_path / "d"),
               *wider]) == 2
  assert "does not fit this run's agent" in capsys.readouterr().err
  assert not any((tmp_path / name).exists() for name in "abcd")


def test_an_unknown_agent_and_a_foreign_agent_flag_are_clear_errors(tmp_path, capsys):
  with pytest.raises(SystemExit):
    main(["train", "--agent", "dreamer", "--out", str(tmp_path / "x")])
  assert "invalid choice: 'dreamer'" in capsys.readouterr().err
  assert main(["train", "--agent", "policy", "--agent-horizon", "3", "--out",
               str(tmp_path / "y")]) == 2
  assert "--agent-horizon is not a setting of the 'policy' agent" in capsys.readouterr().err
