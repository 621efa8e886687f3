"""Config validation: every field type-checked, one canonical form for the hash."""

import dataclasses
import typing

import pytest

from mbrl_drift import agents
from mbrl_drift.config import AgentConfig, TrainConfig

_WRONG = {bool: ["false", 1, None], int: ["64", 64.5, True, None], float: ["0.1", False, None],
          str: [3, None]}


def _typed_fields(cls):
  hints = typing.get_type_hints(cls)
  return [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if hints[f.name] in _WRONG]


@pytest.mark.parametrize("name,kind", _typed_fields(TrainConfig))
def test_every_train_config_field_rejects_a_value_of_the_wrong_type(name, kind):
  for value in _WRONG[kind]:
    with pytest.raises(ValueError, match=f"invalid config field {name}="):
      TrainConfig.from_dict({name: value})


@pytest.mark.parametrize("agent_kind", agents.names())
def test_every_agent_config_field_rejects_a_value_of_the_wrong_type(agent_kind):
  config_type = agents.get(agent_kind).config_type
  fields = _typed_fields(config_type)
  assert fields, f"{config_type.__name__} has no typed fields"
  for name, kind in fields:
    for value in _WRONG[kind]:
      with pytest.raises(ValueError, match=f"invalid config field {name}="):
        TrainConfig.from_dict({"agent_kind": agent_kind, "agent": {name: value}})


def test_integral_floats_and_ints_are_one_canonical_config():
  as_int = TrainConfig(agent=AgentConfig(hidden_dim=128), batch_size=64, value_lr=1)
  as_float = TrainConfig(agent=AgentConfig(hidden_dim=128.0), batch_size=64.0, value_lr=1.0)
  assert as_int == as_float and as_int.config_hash() == as_float.config_hash()
  assert type(as_float.batch_size) is int and type(as_int.value_lr) is float
  from_json = TrainConfig.from_dict({"agent": {"hidden_dim": 128.0}, "batch_size": 64.0,
                                     "value_lr": 1})
  assert from_json.config_hash() == as_int.config_hash()


def test_the_string_false_is_not_true():
  with pytest.raises(ValueError, match="use_decoder='false'.*a bool"):
    TrainConfig.from_dict({"agent": {"use_decoder": "false"}})


def test_planner_hashes_are_those_of_configs_stored_before_agents_were_plug_ins():
  # Hashes recorded by the code before TrainConfig gained agent_kind, init_from and freeze:
  # runs, sweep jobs and cached agents keep their identity.
  from mbrl_drift.presets import PRESETS

  assert TrainConfig().config_hash() == "fdb3a7a554f4"
  assert PRESETS["GoalGrid-FourRooms"].config_hash() == "458e217bcda9"
  assert PRESETS["CartPole"].config_hash() == "8fa883469845"


def test_a_field_the_agent_does_not_read_must_stay_at_its_default():
  others = [name for name in agents.names()
            if agents.get(name).train_fields is not None]
  for name in others:
    definition = agents.get(name)
    unused = [f.name for f in dataclasses.fields(TrainConfig)
              if f.name not in definition.train_fields and f.name == "buffer_size"]
    for field in unused:
      with pytest.raises(ValueError, match=f"{field}=.*does not read it"):
        TrainConfig(agent_kind=name, agent=definition.config_type(), buffer_size=123)
