"""The fault spec grammar: parsing, composition, reference loading, precise errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mbrl_drift import faults

KEY = jax.random.key(0)


def _dense(seed, in_dim, out_dim):
  keys = jax.random.split(jax.random.key(seed))
  return {"kernel": jax.random.normal(keys[0], (in_dim, out_dim)),
          "bias": jax.random.normal(keys[1], (out_dim,))}


def _params(seed):
  mlp = lambda s, i, o: {"Dense_0": _dense(s, i, 4), "Dense_1": _dense(s + 1, 4, o)}
  return {"world_model": {"dynamics": mlp(seed, 3, 3), "reward": mlp(seed + 2, 3, 1)},
          "value": mlp(seed + 4, 3, 1)}


PARAMS = _params(0)
OTHER = _params(10)


def test_examples_parse_to_the_right_faults():
  fault = faults.parse_fault_spec("value:gaussian(scale=0.5)")
  assert (fault.name, fault.target, float(fault.settings["scale"])) == ("gaussian_noise", "value",
                                                                       0.5)
  assert fault.option("relative") is False
  fault = faults.parse_fault_spec(" world_model/dynamics : bitflip( rate=1e-4 , bits=exponent ) ")
  assert (fault.name, fault.target, fault.option("bits")) == (
      "bit_flip", "world_model/dynamics", "exponent")
  np.testing.assert_allclose(float(fault.settings["rate"]), 1e-4)
  fault = faults.parse_fault_spec("world_model/*:ablate()")
  assert (fault.name, fault.target) == ("unit_ablation", "world_model/*")
  assert faults.parse_fault_spec("value:ablate").name == "unit_ablation"
  fault = faults.parse_fault_spec("value:gaussian(relative=true)")
  assert fault.option("relative") is True and float(fault.settings["scale"]) == pytest.approx(0.1)
  assert float(faults.parse_fault_spec("value:scale(factor=-2)").settings["factor"]) == -2.0


def test_semicolon_composes_in_order():
  fault = faults.parse_fault_spec("value:signflip(); world_model/reward:stuck(value=1)")
  assert fault.name == "compose"
  assert [f.name for f in fault.settings["faults"]] == ["sign_flip", "stuck_at"]
  manual = faults.compose(faults.sign_flip("value"), faults.stuck_at("world_model/reward", 1.0))
  for x, y in zip(jax.tree_util.tree_leaves(fault(KEY, PARAMS, 0.5)),
                  jax.tree_util.tree_leaves(manual(KEY, PARAMS, 0.5))):
    np.testing.assert_array_equal(x, y)


def test_swap_loads_the_reference_by_run():
  loaded = []

  def load_reference(run):
    loaded.append(run)
    return OTHER

  fault = faults.parse_fault_spec("value+world_model/reward:swap(run=runs/goal2)", load_reference)
  assert loaded == ["runs/goal2"]
  out = fault(KEY, PARAMS, 1.0)
  for x, y in zip(jax.tree_util.tree_leaves(out["value"]),
                  jax.tree_util.tree_leaves(OTHER["value"])):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(jax.tree_util.tree_leaves(out["world_model"]["dynamics"]),
                  jax.tree_util.tree_leaves(PARAMS["world_model"]["dynamics"])):
    np.testing.assert_array_equal(x, y)
  assert fault.spec == "value+world_model/reward:swap(run=runs/goal2)"
  faults.parse_fault_spec("value:interpolate(run='runs/a, b (old)')", load_reference)
  assert loaded[-1] == "runs/a, b (old)"


def test_reinit_takes_params_or_init_fn():
  fault = faults.parse_fault_spec("value:reinit()", init_params=lambda key: _params(3))
  out = fault(KEY, PARAMS, 1.0)
  np.testing.assert_array_equal(out["value"]["Dense_0"]["kernel"],
                                _params(3)["value"]["Dense_0"]["kernel"])
  fault = faults.parse_fault_spec("value:reinit", init_params=OTHER)
  np.testing.assert_array_equal(fault(KEY, PARAMS, 1.0)["value"]["Dense_1"]["bias"],
                                OTHER["value"]["Dense_1"]["bias"])


@pytest.mark.parametrize("spec,message", [
    ("value gaussian()", r"missing ':' in fault 'value gaussian\(\)'"),
    ("value:gausian(scale=1)", r"unknown fault 'gausian'.*known faults: ablate, act_ablate, act_noise, act_stuck, bitflip, "
                               r"delta_dropout, delta_noise, delta_scale, gaussian, interpolate, reinit, scale, signflip, stuck, swap"),
    ("value:gaussian(sigma=1)", r"fault 'gaussian' has no parameter 'sigma'; allowed: scale, "
                                r"relative"),
    ("value:ablate(rate=1)", r"fault 'ablate' has no parameter 'rate'; allowed: none"),
    ("value:gaussian(scale=big)", r"fault 'gaussian' parameter 'scale': expected a number, "
                                  r"got 'big'"),
    ("value:gaussian(scale=nan)", r"expected a finite number"),
    ("value:gaussian(relative=maybe)", r"parameter 'relative': expected true or false"),
    ("value:bitflip(bits=fraction)", r"'fraction' is not one of any, sign, exponent, mantissa"),
    ("value:gaussian(scale=0.5", r"unbalanced parentheses.*1 unclosed '\('"),
    ("value:gaussian(scale=0.5))", r"unbalanced parentheses.*unexpected '\)'"),
    ("value:gaussian)", r"unbalanced parentheses"),
    ("value:gaussian(scale=(0.5))", r"unexpected parenthesis inside the arguments"),
    ("value:gaussian(scale=0.5) x", r"unexpected text after '\)'"),
    ("value:swap(run='runs/a)", r"unterminated quote"),
    ("value:gaussian(0.5)", r"argument '0.5'.*is not param=value"),
    ("value:gaussian(scale=0.5,)", r"empty argument"),
    ("value:gaussian(scale=1, scale=2)", r"parameter 'scale' given twice"),
    ("value:scale()", r"fault 'scale' requires parameter 'factor'"),
    ("value:swap(run=runs/x)", r"fault 'swap' needs a load_reference"),
    ("value:reinit()", r"fault 'reinit' needs init_params"),
    (":gaussian()", r"missing target before ':'"),
    ("value:", r"missing fault name"),
    ("value++actor:ablate()", r"empty term"),
    ("value:ablate();", r"empty fault in spec"),
    ("", r"empty fault in spec"),
])
def test_malformed_specs_raise_precise_errors(spec, message):
  with pytest.raises(ValueError, match=message):
    faults.parse_fault_spec(spec)


def test_unknown_target_is_reported_when_applied():
  fault = faults.parse_fault_spec("critic:gaussian()")
  with pytest.raises(ValueError, match="'critic'.*valid component paths: value, world_model"):
    fault(KEY, PARAMS, 1.0)


def test_list_and_describe():
  listed = {info.name: info for info in faults.list_faults()}
  assert set(listed) == {"gaussian", "bitflip", "stuck", "ablate", "scale", "signflip", "reinit",
                         "interpolate", "swap", "act_noise", "act_stuck", "act_ablate",
                         "delta_scale", "delta_noise", "delta_dropout"}
  assert listed["gaussian"].params == {"scale": 0.1, "relative": False}
  assert listed["scale"].params == {"factor": faults.REQUIRED}
  assert listed["bitflip"].params["bits"] == "any"
  assert all(info.doc for info in listed.values())
  table = faults.describe_faults()
  for name in listed:
    assert f"\n{name} " in table
  assert "factor=<required>" in table and "any|sign|exponent|mantissa" in table


@pytest.mark.parametrize("spec", [
    "value:gaussian(scale=0.5, relative=true)",
    "world_model/*:bitflip(rate=0.0001, bits=exponent)",
    "value+world_model/reward:stuck(value=-1)",
    "world_model:ablate()",
    "value:scale(factor=3)",
    "value:signflip(); world_model/dynamics:gaussian(scale=0.1, relative=false)",
])
def test_spec_round_trips(spec):
  fault = faults.parse_fault_spec(spec)
  assert faults.parse_fault_spec(fault.spec).spec == fault.spec
  assert fault.spec.replace(" ", "") == spec.replace(" ", "")


def test_activation_faults_parse_and_refuse_composition():
  fault = faults.parse_fault_spec("world_model/dynamics:act_stuck(value=2, seed=3)")
  assert isinstance(fault, faults.ActivationFault)
  assert fault.target == "world_model/dynamics"
  assert faults.parse_fault_spec(fault.spec).spec == fault.spec
  with pytest.raises(ValueError, match="expected an integer"):
    faults.parse_fault_spec("value:act_ablate(seed=1.5)")
  with pytest.raises(ValueError, match="cannot be composed"):
    faults.parse_fault_spec("value:act_noise(scale=1); value:gaussian(scale=1)")
