"""Presets: every tuned configuration is a valid, buildable run of its environment."""

import jax
import pytest

import envs
from mbrl_drift.agents.base import EnvSpec
from mbrl_drift.config import TrainConfig, replace
from mbrl_drift.presets import PRESETS, preset
from mbrl_drift.train import make_train

REQUIRED = ("GoalGrid-OpenRoom", "GoalGrid-FourRooms", "GoalGrid-ForkMaze", "PointGoals",
            "CartPole", "Pendulum")


def test_presets_cover_the_studied_environments():
  assert set(REQUIRED) <= set(PRESETS)
  assert set(PRESETS) <= set(envs.names())


def test_four_rooms_preset_differs_from_the_defaults_in_width_decoder_and_learning_rates():
  four_rooms = preset("GoalGrid-FourRooms")
  assert four_rooms.final_lr_fraction == 0.0 and four_rooms.agent.hidden_dim == 64
  assert replace(four_rooms, agent__hidden_dim=128, agent__use_decoder=True, world_model_lr=1e-3,
                 value_lr=1e-3, final_lr_fraction=1.0) == TrainConfig()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_is_a_valid_config_for_its_env(name):
  config = preset(name)
  assert isinstance(config, TrainConfig)
  assert config.env == name
  # Survives serialisation (as written to a run directory) and keeps its identity.
  assert TrainConfig.from_dict(config.to_dict()) == config
  assert TrainConfig.from_dict(config.to_dict()).config_hash() == config.config_hash()
  env, env_params = envs.make(name, **dict(config.env_kwargs))
  spec = EnvSpec.from_env(env, env_params)
  if spec.discrete:
    assert config.agent.planner in ("exhaustive", "sampling")
  else:
    assert config.agent.planner == "cem"
  # The trainer builds and its state has the expected shapes (traced, not compiled).
  trainer = make_train(config)
  state = jax.eval_shape(trainer.init, jax.random.key(0))
  assert state.obs.shape == (config.num_envs, spec.obs_dim)
  assert state.buffer.reward.shape == (config.buffer_steps, config.num_envs)
  assert set(trainer.agent.component_paths) >= {
      "world_model/encoder", "world_model/dynamics", "world_model/reward",
      "world_model/termination", "value"}


def test_unknown_preset_lists_the_known_names():
  with pytest.raises(ValueError, match="CartPole") as error:
    preset("Breakout")
  assert "Breakout" in str(error.value)
  for name in REQUIRED:
    assert name in str(error.value)
