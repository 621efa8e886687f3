"""The spec grammar of training-time faults: parsing, the config field and the CLI.

Parsed specs are compared with the hooks the Python factories build, by their settings and by
applying both to the same inputs (eager, tiny arrays: no training compile). One tiny run through
the CLI checks that the specs reach the saved config, that ``load_run`` rebuilds them and that
they act on training.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import config as config_lib
from mbrl_drift import faults
from mbrl_drift.cli import main
from mbrl_drift.config import TrainConfig
from mbrl_drift.faults.paths import get_subtree, kernel_layers
from mbrl_drift.faults.training import ResetState, ScheduledFaultState
from mbrl_drift.runs import load_run
from mbrl_drift.agents.mpc.train import GRADIENT_FAULTS
from mbrl_drift.train import TrainingHooks, make_train

TINY_FLAGS = ["--env", "GoalGrid-OpenRoom", "--steps", "256", "--num-envs", "8",
              "--buffer-size", "256", "--batch-size", "8", "--learning-starts", "64",
              "--num-chunks", "2", "--eval-episodes", "8", "--agent-latent-dim", "8",
              "--agent-hidden-dim", "16", "--agent-num-layers", "1", "--agent-horizon", "1",
              "--agent-max-horizon", "2", "--quiet"]
KEY = jax.random.PRNGKey(0)
STEPS = (0, 16, 47, 48, 999, 1000, 2000, 3000, 3099, 3100, 5000)


def _only(hooks, field):
  """The single entry of ``hooks.field``; every other field must be empty."""
  for other in TrainingHooks._fields:
    if other != field:
      assert getattr(hooks, other) == (), other
  (entry,) = getattr(hooks, field)
  return entry


# ---------------------------------------------------------------------------------------------
# Specs -> hooks equal to the Python factories
# ---------------------------------------------------------------------------------------------


SIGNAL_CASES = [
    ("world_model/reward:reward_signflip(start_step=5000)", "reward_faults",
     faults.reward_sign_flip(target="world_model/reward", start_step=5000)),
    ("*:reward_swap(goal_index=1, start_step=0)", "reward_faults",
     faults.reward_swap(goal_index=1, target="*")),
    ("value:reward_noise(scale=0.3, end_step=1000, severity=0.5)", "reward_faults",
     faults.reward_noise(0.3, target="value", end_step=1000, severity=0.5)),
    ("value:target_noise(scale=0.5, start_step=2000, end_step=4000)", "target_faults",
     faults.target_noise(0.5, start_step=2000, end_step=4000)),
    ("value:target_signflip(severity=0.25)", "target_faults",
     faults.target_sign_flip(severity=0.25)),
    ("*:target_offset(offset=-2, start_step=48)", "target_faults",
     faults.target_offset(-2.0, target="*", start_step=48)),
]


@pytest.mark.parametrize("spec, field, expected", SIGNAL_CASES,
                         ids=[case[0] for case in SIGNAL_CASES])
def test_signal_fault_specs_equal_the_factories(spec, field, expected):
  parsed = _only(faults.parse_training_fault_spec(spec), field)
  assert type(parsed) is type(expected)
  for name in ("name", "kind", "target", "goal_index"):
    assert getattr(parsed, name) == getattr(expected, name), name
  assert (parsed.end_step is None) == (expected.end_step is None)
  for a, b in zip(jax.tree.leaves((parsed.severity, parsed.start_step, parsed.end_step,
                                   parsed.settings)),
                  jax.tree.leaves((expected.severity, expected.start_step, expected.end_step,
                                   expected.settings)), strict=True):
    assert a.dtype == b.dtype and np.array_equal(a, b)

  values = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
  goal_rewards = jnp.stack([values + 1.0, values - 3.0], axis=-1)  # [2, 3, K=2]
  extra = (goal_rewards,) if field == "reward_faults" else ()
  acted = False
  for step in STEPS:
    out = parsed(KEY, jnp.int32(step), values, *extra)
    np.testing.assert_array_equal(out, expected(KEY, jnp.int32(step), values, *extra))
    acted |= not np.array_equal(out, values)
  assert acted  # the case exercises a fault that does something


TRANSFORM_CASES = [
    ("value:gradient_noise(scale=0.1)", "gradient_transforms",
     faults.gradient_noise(0.1, target="value")),
    ("world_model/*:gradient_noise(scale=0.2, seed=3, start_step=16, end_step=48)",
     "gradient_transforms",
     faults.gradient_noise(0.2, target="world_model/*", seed=3, start_step=16, end_step=48)),
    ("world_model/dynamics:freeze(start_step=1000)", "update_transforms",
     faults.freeze(target="world_model/dynamics", start_step=1000)),
    ("value+world_model/reward:freeze(severity=0.5)", "update_transforms",
     faults.freeze(target="value+world_model/reward", severity=0.5)),
    ("value:lr_spike(factor=10, start_step=3000, end_step=3100)", "update_transforms",
     faults.lr_spike(10.0, target="value", start_step=3000, end_step=3100)),
]


@pytest.mark.parametrize("spec, field, expected", TRANSFORM_CASES,
                         ids=[case[0] for case in TRANSFORM_CASES])
def test_transform_specs_equal_the_factories(spec, field, expected):
  parsed = _only(faults.parse_training_fault_spec(spec), field)
  layer = lambda *shape: {"Dense_0": {"kernel": jnp.ones(shape), "bias": jnp.ones(shape[-1:])}}
  params = {"world_model": {"dynamics": layer(2, 3), "reward": layer(2, 1)}, "value": layer(4, 1)}
  updates = jax.tree.map(lambda x: jnp.arange(1.0, x.size + 1.0).reshape(x.shape), params)
  parsed_state, expected_state = parsed.init(params), expected.init(params)
  acted = False
  for step in STEPS:
    out, parsed_state = parsed.update(updates, parsed_state, params, step=jnp.int32(step))
    want, expected_state = expected.update(updates, expected_state, params, step=jnp.int32(step))
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(want), strict=True):
      np.testing.assert_array_equal(a, b)
    acted |= any(not np.array_equal(a, b)
                 for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(updates)))
  assert acted


def test_optimizer_reset_specs_give_one_reset_per_component():
  hooks = faults.parse_training_fault_spec("value:optimizer_reset(start_step=5000)")
  assert _only(hooks, "optimizer_resets") == ("value", 5000, 1.0)
  hooks = faults.parse_training_fault_spec(
      "world_model/dynamics+value:optimizer_reset(start_step=64, severity=0.5)")
  assert hooks.optimizer_resets == (("world_model/dynamics", 64, 0.5), ("value", 64, 0.5))


def test_semicolons_and_combine_hooks_join_faults_in_order():
  first, second, third = ("value:target_noise(scale=0.5)", "world_model:freeze()",
                          "value:lr_spike(factor=3)")
  joined = faults.parse_training_fault_spec(f"{first}; {second}; {third}")
  combined = faults.combine_hooks(*(faults.parse_training_fault_spec(s)
                                    for s in (first, second, third)))
  for hooks in (joined, combined):
    assert len(hooks.target_faults) == 1 and len(hooks.update_transforms) == 2
  # The update transforms keep their order: freeze first, then the spike of what is left.
  params = {"world_model": {"w": jnp.ones(2)}, "value": {"w": jnp.ones(2)}}
  out = params
  for transform in joined.update_transforms:
    out, _ = transform.update(out, transform.init(params), params, step=jnp.int32(0))
  np.testing.assert_array_equal(out["world_model"]["w"], 0.0)
  np.testing.assert_array_equal(out["value"]["w"], 3.0)

  assert faults.combine_hooks() == TrainingHooks()
  with pytest.raises(ValueError, match="reset value more than once"):
    faults.combine_hooks(faults.parse_training_fault_spec("value:optimizer_reset(start_step=8)"),
                         TrainingHooks(optimizer_resets=(("value", 16, 1.0),)))
  with pytest.raises(TypeError, match="TrainingHooks"):
    faults.combine_hooks("value:freeze()")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    ("value:nonsense()", r"unknown training fault 'nonsense'.*known training faults: "
                         r"reward_noise, .*optimizer_reset"),
    ("value:target_sign_flip()", r"did you mean 'target_signflip'"),
    ("value:gaussian(scale=1)", r"evaluation-time weight fault.*training-time faults: "),
    ("value:freeze(scael=1)", r"'freeze' has no parameter 'scael'; allowed: start_step, "
                              r"end_step, severity"),
    ("value:lr_spike()", r"'lr_spike' requires parameter 'factor'"),
    ("value:optimizer_reset()", r"requires parameter 'start_step'"),
    ("value:freeze(start_step=1.5)", r"'start_step': expected an integer, got '1.5'"),
    ("value:freeze(start_step)", r"not param=value; parameters of 'freeze': start_step"),
    ("value freeze()", r"missing ':'.*e\.g\. value:target_noise"),
    (":freeze()", r"missing target"),
    ("value:freeze(start_step=1", r"unbalanced parentheses"),
    ("value:freeze() extra", r"unexpected text after '\)'"),
    ("value:freeze();", r"empty fault"),
    ("value:target_noise(scale=-1)", r"scale must be >= 0"),
    ("value:freeze(start_step=10, end_step=10)", r"end_step must be None or > start_step"),
    ("value:freeze(severity=-1)", r"severity must be >= 0"),
    ("world_model/dynamics:reward_noise(scale=1)",
     r"'world_model/dynamics'.*no loss that sees rewards; valid targets: world_model/reward, "
     r"value, actor, critic, \*"),
    ("world_model:target_noise(scale=1)", r"no value targets; valid targets: value, critic, \*"),
    ("critique:gradient_noise(scale=1)", r"'critique'.*matches no component; valid component "
                                         r"paths: actor, base, base/actor, critic, value, "
                                         r"world_model, "),
    ("world_model/*:optimizer_reset(start_step=0)",
     r"not a component with its own optimiser; valid targets.*world_model/dynamics"),
    ("value+value:optimizer_reset(start_step=0)", r"reset twice"),
    ("val ue:freeze()", r"invalid characters"),
])
def test_bad_specs_name_the_problem_and_the_choices(spec, message):
  with pytest.raises(ValueError, match=message):
    faults.parse_training_fault_spec(spec)


def test_a_spec_must_be_a_string():
  with pytest.raises(ValueError, match="must be a string"):
    faults.parse_training_fault_spec(["value:freeze()"])


# ---------------------------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------------------------


def test_list_and_describe_cover_every_fault_and_each_parses():
  listed = {info.name: info for info in faults.list_training_faults()}
  assert set(listed) == {"reward_noise", "reward_signflip", "reward_swap", "target_noise",
                         "target_signflip", "target_offset", "gradient_noise", "freeze",
                         "lr_spike", "optimizer_reset"}
  assert listed["target_noise"].params == {"scale": faults.REQUIRED, "start_step": 0,
                                           "end_step": None, "severity": 1.0}
  assert listed["optimizer_reset"].params == {"start_step": faults.REQUIRED, "severity": 1.0}
  assert all(info.doc for info in listed.values())
  table = faults.describe_training_faults()
  for name, info in listed.items():
    assert f"\n{name} " in table
    required = ", ".join(f"{p}=1" for p, d in info.params.items() if d is faults.REQUIRED)
    hooks = faults.parse_training_fault_spec(f"value:{name}({required})")
    assert sum(len(entries) for entries in hooks) == 1, name
  assert "end_step=none" in table and "scale=<required>" in table


# ---------------------------------------------------------------------------------------------
# TrainConfig.training_faults
# ---------------------------------------------------------------------------------------------


SPECS = ("world_model/reward:reward_signflip(start_step=128)",
         "value:optimizer_reset(start_step=160)")


def test_config_field_round_trips_through_json_and_enters_the_hash():
  plain = TrainConfig()
  assert plain.training_faults == () and "training_faults" not in plain.to_dict()
  config = TrainConfig(training_faults=list(SPECS))  # a list is stored as a tuple
  assert config.training_faults == SPECS and hash(config)
  data = json.loads(json.dumps(config.to_dict()))
  assert data["training_faults"] == list(SPECS)
  again = TrainConfig.from_dict(data)
  assert again == config and isinstance(again.training_faults, tuple)
  assert again.config_hash() == config.config_hash()
  assert config.config_hash() != plain.config_hash()
  assert config.config_hash() != TrainConfig(training_faults=SPECS[:1]).config_hash()
  assert TrainConfig.from_dict(plain.to_dict()) == plain
  assert config_lib.replace(plain, training_faults=[SPECS[0]]).training_faults == SPECS[:1]


@pytest.mark.parametrize("training_faults, message", [
    (("value:nonsense()",), r"invalid config field training_faults: unknown training fault"),
    (("value:optimizer_reset(start_step=100)",),
     r"invalid config field training_faults=.*multiple of num_envs=16"),
    (("value:optimizer_reset(start_step=16)", "value:optimizer_reset(start_step=32)"),
     r"invalid config field training_faults=.*reset value more than once"),
    ((3,), r"invalid config field training_faults=.*tuple of training fault spec strings"),
])
def test_config_rejects_bad_training_faults_naming_the_field(training_faults, message):
  with pytest.raises(ValueError, match=message):
    TrainConfig(training_faults=training_faults)


def test_make_train_combines_the_config_faults_with_the_given_hooks(tiny_train_config):
  config = dataclasses.replace(tiny_train_config, training_faults=(
      "value:gradient_noise(scale=0.1, seed=7)",
      "world_model/dynamics:optimizer_reset(start_step=64)"))
  state = jax.eval_shape(make_train(config).init, jax.random.key(0))  # traced, not compiled
  gradient_states = [s for s in state.opt_states[GRADIENT_FAULTS]
                     if isinstance(s, ScheduledFaultState)]
  assert len(gradient_states) == 1 and gradient_states[0].key is not None
  assert isinstance(state.opt_states["world_model/dynamics"], ResetState)
  assert not isinstance(state.opt_states["value"], ResetState)
  extra = TrainingHooks(optimizer_resets=(("value", 128, 1.0),))
  state = jax.eval_shape(make_train(config, extra).init, jax.random.key(0))
  assert isinstance(state.opt_states["value"], ResetState)
  with pytest.raises(ValueError, match="world_model/dynamics more than once"):
    make_train(config, TrainingHooks(optimizer_resets=(("world_model/dynamics", 128, 1.0),)))


def test_sweep_variants_set_training_faults():
  from mbrl_drift import sweep

  spec = sweep.SweepSpec.from_dict({
      "name": "training_faults", "seeds": 1,
      "train": {"env": "GoalGrid-OpenRoom", "total_steps": 256, "num_envs": 8,
                "buffer_size": 256, "learning_starts": 64},
      "variants": [{"name": "healthy"},
                   {"name": "flipped", "train": {"training_faults": [SPECS[0]]}}],
      "evaluate": {"faults": ["value:gaussian(scale=1.0)"], "severities": [1.0]}})
  configs = {job.variant: job.config for job in spec.jobs()}
  assert configs["healthy"].training_faults == ()
  assert configs["flipped"].training_faults == SPECS[:1]


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_faults_lists_the_training_faults_in_a_second_section(capsys):
  assert main(["faults"]) == 0
  out = capsys.readouterr().out
  weight_part, _, training_part = out.partition("training-time faults")
  assert "gaussian" in weight_part and "bitflip" in weight_part
  for info in faults.list_training_faults():
    assert info.name in training_part
  assert "--train-fault" in training_part


def test_cli_train_fault_reaches_the_saved_config_and_acts(tmp_path, capsys):
  out = tmp_path / "run"
  specs = ["world_model/termination:freeze()", "value:target_noise(scale=0.1, start_step=128)"]
  code = main(["train", "--seeds", "2", "--out", str(out), *TINY_FLAGS,
               "--train-fault", specs[0], "--train-fault", specs[1]])
  assert code == 0, capsys.readouterr().err
  record = json.loads((out / "config.json").read_text())
  assert record["config"]["training_faults"] == specs
  run = load_run(out)  # its checkpoint holds the fault states: rebuilt from the config
  assert run.config.training_faults == tuple(specs)
  # Zero-initialised output layers: the frozen termination head stays exactly zero, the reward
  # head trained on the same batches does not.
  for component, frozen in (("world_model/termination", True), ("world_model/reward", False)):
    layer = get_subtree(run.params, kernel_layers(run.params, component)[-1])
    assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(layer)) == frozen, component


def test_cli_rejects_a_bad_train_fault_before_writing(tmp_path, capsys):
  out = tmp_path / "never"
  assert main(["train", "--out", str(out), *TINY_FLAGS,
               "--train-fault", "value:freeze(scael=1)"]) == 2
  err = capsys.readouterr().err
  assert "training_faults" in err and "allowed: start_step, end_step, severity" in err
  assert not out.exists()
