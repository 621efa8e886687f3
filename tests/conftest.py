"""Shared test setup: persistent compilation cache, small configs."""

import os

import pytest

from mbrl_drift.runs import enable_compilation_cache

enable_compilation_cache(os.environ.get("MBRL_DRIFT_TEST_CACHE"))


@pytest.fixture(scope="session")
def tiny_train_config():
  """A GoalGrid run small enough to compile and train in seconds."""
  from mbrl_drift.config import AgentConfig, TrainConfig

  return TrainConfig(
      env="GoalGrid-OpenRoom", total_steps=256, num_envs=8, buffer_size=256, batch_size=8,
      learning_starts=64, num_chunks=2, eval_episodes=8,
      agent=AgentConfig(latent_dim=8, hidden_dim=16, num_layers=1, horizon=1, max_horizon=2))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_train_config):
  """A trained tiny GoalGrid run (2 seeds) on disk, shared by the tests that load runs."""
  from mbrl_drift.runs import train_run

  out = tmp_path_factory.mktemp("runs") / "tiny"
  train_run(tiny_train_config, 2, out, progress=False)
  return out
