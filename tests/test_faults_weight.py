"""Weight faults: addressing, identity at severity 0, monotone damage, determinism, jit/vmap."""

from __future__ import annotations

import copy
import functools

import flax.linen as nn
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mbrl_drift import faults

SEVERITIES = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)
HIDDEN = 8


class _MLP(nn.Module):
  """Dense -> LayerNorm -> ELU -> Dense, like the agent's components."""

  out_dim: int

  @nn.compact
  def __call__(self, x):
    x = nn.elu(nn.LayerNorm()(nn.Dense(HIDDEN)(x)))
    return nn.Dense(self.out_dim)(x)


_SHAPES = {"world_model/encoder": (4, 6), "world_model/dynamics": (8, 6),
           "world_model/reward": (8, 1), "world_model/termination": (8, 1),
           "value": (6, 1), "actor": (6, 2)}


def make_params(seed: int, random_biases: bool = True) -> dict:
  """An agent-shaped parameter tree; biases randomised so that it looks trained."""
  params: dict = {}
  keys = jax.random.split(jax.random.key(seed), len(_SHAPES))
  for key, (path, (in_dim, out_dim)) in zip(keys, _SHAPES.items()):
    init_key, bias_key = jax.random.split(key)
    tree = _MLP(out_dim).init(init_key, jnp.zeros((in_dim,)))["params"]
    if random_biases:
      tree = jax.tree_util.tree_map_with_path(
          lambda p, x, k=bias_key: (0.1 * jax.random.normal(k, x.shape)
                                    if p[-1].key == "bias" and p[0].key.startswith("Dense")
                                    else x), tree)
    node = params
    *parents, name = path.split("/")
    for parent in parents:
      node = node.setdefault(parent, {})
    node[name] = tree
  return params


def value_apply(params: dict, x: jax.Array) -> jax.Array:
  return _MLP(1).apply({"params": params["value"]}, x)


PARAMS = make_params(0)
PARAMS_NUMPY = jax.tree_util.tree_map(np.asarray, PARAMS)
REFERENCE = make_params(1)
KEY = jax.random.key(42)
distance = jax.jit(faults.param_distance, static_argnames="target")


# Each case: fault, and the components it must change (all others stay bit-identical).
CASES = {
    "gaussian": (faults.gaussian_noise("value", scale=0.3), {"value"}),
    "gaussian_relative": (faults.gaussian_noise("world_model/*", 0.5, relative=True),
                          {"world_model"}),
    "bit_flip_sign": (faults.bit_flip("actor", rate=0.3, bits="sign"), {"actor"}),
    "bit_flip_mantissa": (faults.bit_flip("value", rate=0.3, bits="mantissa"), {"value"}),
    "stuck_at": (faults.stuck_at("world_model/dynamics", value=0.5), {"world_model/dynamics"}),
    "unit_ablation": (faults.unit_ablation("world_model"), {"world_model"}),
    "output_scale": (faults.output_scale("value+actor", factor=3.0), {"value", "actor"}),
    "sign_flip": (faults.sign_flip("world_model/reward"), {"world_model/reward"}),
    "interpolate": (faults.interpolate("world_model/encoder", REFERENCE),
                    {"world_model/encoder"}),
    "swap": (faults.swap("value", REFERENCE), {"value"}),
    "reinitialize": (faults.reinitialize("actor", REFERENCE), {"actor"}),
    "compose": (faults.compose(faults.sign_flip("value"),
                               faults.gaussian_noise("world_model/reward", 0.2)),
                {"value", "world_model/reward"}),
}
RANDOM_CASES = ["gaussian", "gaussian_relative", "bit_flip_sign", "bit_flip_mantissa", "stuck_at",
                "unit_ablation", "compose"]


@functools.cache
def sweep_fn(case: str):
  """The fault vmapped over severities and jitted (compiled once per case)."""
  return jax.jit(jax.vmap(CASES[case][0], in_axes=(None, None, 0)))


@functools.cache
def sweep(case: str):
  """The fault over SEVERITIES with KEY, as numpy leaves."""
  return jax.tree_util.tree_map(np.asarray, sweep_fn(case)(KEY, PARAMS, SEVERITIES))


@functools.cache
def eager(case: str):
  """The fault applied without jit at SEVERITIES[2]."""
  return CASES[case][0](KEY, PARAMS, jnp.float32(SEVERITIES[2]))


def _bits(x) -> np.ndarray:
  x = np.asarray(x)
  return x.view(np.uint32) if x.dtype == np.float32 else x


def _at(tree, index):
  return jax.tree_util.tree_map(lambda x: x[index], tree)


def _components(tree, paths):
  return {path: faults.paths.get_subtree(tree, path) for path in paths}


def _untouched_paths(changed: set[str]) -> list[str]:
  return [p for p in faults.component_paths(PARAMS)
          if not any(faults.paths.is_under(p, c) or faults.paths.is_under(c, p) for c in changed)]


def _assert_bit_identical(a, b):
  flat_a, tree_a = jax.tree_util.tree_flatten(a)
  flat_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(_bits(x), _bits(y))


# ---------------------------------------------------------------------------------------------
# Contract, for every fault
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_severity_zero_is_bit_identical(case):
  _assert_bit_identical(_at(sweep(case), 0), PARAMS)


@pytest.mark.parametrize("case", list(CASES))
def test_only_addressed_components_change(case):
  _, changed = CASES[case]
  out = sweep(case)
  for path in _untouched_paths(changed):
    for index in range(len(SEVERITIES)):
      _assert_bit_identical(faults.paths.get_subtree(_at(out, index), path),
                            faults.paths.get_subtree(PARAMS, path))
  distances = distance(_at(out, -1), PARAMS)  # every component, one compilation for all cases
  for path in changed:
    assert distances[path] > 0, path


@pytest.mark.parametrize("case", list(CASES))
def test_untouched_leaves_are_the_same_objects(case):
  out = eager(case)
  for path in _untouched_paths(CASES[case][1]):
    for a, b in zip(jax.tree_util.tree_leaves(faults.paths.get_subtree(out, path)),
                    jax.tree_util.tree_leaves(faults.paths.get_subtree(PARAMS, path))):
      assert a is b


@pytest.mark.parametrize("case", list(CASES))
def test_distance_grows_strictly_with_severity(case):
  _, changed = CASES[case]
  out = sweep(case)
  # The distance of every component (one compilation for all cases), summed over the changed ones.
  per_component = [distance(_at(out, i), PARAMS) for i in range(len(SEVERITIES))]
  distances = [sum(float(d[path]) for path in sorted(changed)) for d in per_component]
  assert distances[0] == 0.0
  assert all(np.diff(distances) > 0), distances


@pytest.mark.parametrize("case", list(CASES))
def test_eager_matches_jit_vmap(case):
  for x, y in zip(jax.tree_util.tree_leaves(eager(case)),
                  jax.tree_util.tree_leaves(_at(sweep(case), 2))):
    np.testing.assert_allclose(np.asarray(x), y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", RANDOM_CASES)
def test_same_key_same_result_and_keys_matter(case):
  first = sweep(case)
  _assert_bit_identical(first, sweep_fn(case)(KEY, PARAMS, SEVERITIES))
  other = sweep_fn(case)(jax.random.key(7), PARAMS, SEVERITIES)
  assert any(not np.array_equal(_bits(x), _bits(y)) for x, y in
             zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(other)))


@pytest.mark.parametrize("case", list(CASES))
def test_input_is_never_modified(case):
  params = jax.tree_util.tree_map(jnp.asarray, PARAMS_NUMPY)
  snapshot = copy.deepcopy(PARAMS_NUMPY)
  containers = {id(params): sorted(params),
                id(params["world_model"]): sorted(params["world_model"])}
  leaves = jax.tree_util.tree_leaves(params)
  out = sweep_fn(case)(KEY, params, SEVERITIES)  # the jitted fault (compiled once per case)
  assert out is not params
  _assert_bit_identical(params, snapshot)
  assert all(a is b for a, b in zip(jax.tree_util.tree_leaves(params), leaves))
  assert containers == {id(params): sorted(params),
                        id(params["world_model"]): sorted(params["world_model"])}


def test_vmap_over_keys():
  fault = faults.gaussian_noise("value", 0.3)
  keys = jax.random.split(KEY, 3)
  out = jax.jit(jax.vmap(fault, in_axes=(0, None, None)))(keys, PARAMS, jnp.float32(1.0))
  kernels = np.asarray(out["value"]["Dense_0"]["kernel"])
  assert kernels.shape == (3,) + PARAMS["value"]["Dense_0"]["kernel"].shape
  assert not np.array_equal(kernels[0], kernels[1])
  np.testing.assert_array_equal(out["actor"]["Dense_0"]["kernel"][2],
                                PARAMS["actor"]["Dense_0"]["kernel"])


def test_fault_as_jit_argument_compiles_once_per_kind():
  apply = jax.jit(chex.assert_max_traces(
      lambda fault, key, params, severity: fault(key, params, severity), n=1))
  small = apply(faults.gaussian_noise("value", 0.1), KEY, PARAMS, 1.0)
  large = apply(faults.gaussian_noise("value", 0.2), KEY, PARAMS, 1.0)  # no second trace
  delta_small = small["value"]["Dense_0"]["kernel"] - PARAMS["value"]["Dense_0"]["kernel"]
  delta_large = large["value"]["Dense_0"]["kernel"] - PARAMS["value"]["Dense_0"]["kernel"]
  np.testing.assert_allclose(delta_large, 2 * delta_small, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Fault-specific semantics
# ---------------------------------------------------------------------------------------------


def test_gaussian_noise_has_the_requested_scale():
  big = make_params(3)
  out = faults.gaussian_noise("world_model", 0.5)(KEY, big, 0.5)
  deltas = np.concatenate([np.ravel(np.asarray(a) - np.asarray(b)) for a, b in zip(
      jax.tree_util.tree_leaves(out["world_model"]),
      jax.tree_util.tree_leaves(big["world_model"]))])
  assert deltas.size > 300
  assert 0.2 < deltas.std() < 0.3  # std 0.25 = scale * severity


def test_stuck_at_sets_a_fraction_to_the_value():
  out = faults.stuck_at("world_model", value=0.5)(KEY, PARAMS, 0.3)
  stuck = np.concatenate([np.ravel(np.asarray(x) == 0.5) for x in
                          jax.tree_util.tree_leaves(out["world_model"])])
  assert 0.2 < stuck.mean() < 0.4


def test_bit_flip_sign_negates_chosen_weights_only():
  out = faults.bit_flip("actor", rate=1.0, bits="sign")(KEY, PARAMS, 1.0)
  for x, y in zip(jax.tree_util.tree_leaves(out["actor"]),
                  jax.tree_util.tree_leaves(PARAMS["actor"])):
    np.testing.assert_array_equal(_bits(x), _bits(-y))


def test_bit_flip_exponent_reports_nonfinite_instead_of_raising():
  params = make_params(0, random_biases=False)  # zero biases: all-ones bits are NaN
  fault = faults.bit_flip("value", rate=1.0, bits="any")
  out = jax.jit(fault)(KEY, params, 1.0)
  zero_exponent = sum(int(np.sum((_bits(x) & 0x7F800000) == 0))
                      for x in jax.tree_util.tree_leaves(params["value"]))
  assert zero_exponent > 0
  count = jax.jit(faults.count_nonfinite)
  assert int(count(out)) == zero_exponent
  assert int(count(params)) == 0
  exponent = jax.jit(faults.bit_flip("*", rate=0.5, bits="exponent"))(KEY, params, 1.0)
  expected = sum(int(np.sum(~np.isfinite(np.asarray(x))))
                 for x in jax.tree_util.tree_leaves(exponent))
  assert expected > 0
  assert int(count(exponent)) == expected
  for path, value in distance(exponent, params).items():
    broken = int(np.sum([np.sum(~np.isfinite(np.asarray(x))) for x in
                         jax.tree_util.tree_leaves(faults.paths.get_subtree(exponent, path))]))
    assert np.isfinite(float(value)) == (broken == 0), path


def test_unit_ablation_silences_whole_units():
  out = faults.unit_ablation("value")(KEY, PARAMS, 0.5)
  kernel = np.asarray(out["value"]["Dense_0"]["kernel"])
  dead = np.all(kernel == 0, axis=0)
  assert dead.sum() == HIDDEN // 2
  np.testing.assert_array_equal(np.asarray(out["value"]["Dense_0"]["bias"])[dead], 0)
  np.testing.assert_array_equal(np.asarray(out["value"]["Dense_1"]["kernel"])[dead], 0)
  np.testing.assert_array_equal(kernel[:, ~dead], PARAMS["value"]["Dense_0"]["kernel"][:, ~dead])
  np.testing.assert_array_equal(np.asarray(out["value"]["Dense_1"]["kernel"])[~dead],
                                PARAMS["value"]["Dense_1"]["kernel"][~dead])


def test_unit_ablation_nested_sets_and_full_severity():
  low = faults.unit_ablation("value")(KEY, PARAMS, 0.25)
  high = faults.unit_ablation("value")(KEY, PARAMS, 0.75)
  dead_low = np.all(np.asarray(low["value"]["Dense_0"]["kernel"]) == 0, axis=0)
  dead_high = np.all(np.asarray(high["value"]["Dense_0"]["kernel"]) == 0, axis=0)
  assert dead_low.sum() == 2 and dead_high.sum() == 6
  assert np.all(dead_high[dead_low])
  full = faults.unit_ablation("value")(KEY, PARAMS, 1.0)
  x = jax.random.normal(KEY, (5, 6))
  np.testing.assert_allclose(value_apply(full, x),
                             np.broadcast_to(PARAMS["value"]["Dense_1"]["bias"], (5, 1)), atol=1e-6)


def test_unit_ablation_needs_a_hidden_layer():
  linear = {"value": {"Dense_0": {"kernel": jnp.ones((3, 1)), "bias": jnp.zeros(1)}}}
  with pytest.raises(ValueError, match="no hidden layer"):
    faults.unit_ablation("value")(KEY, linear, 0.5)


@pytest.mark.parametrize("make,scale", [(lambda: faults.output_scale("value", 3.0), 3.0),
                                        (lambda: faults.sign_flip("value"), -1.0)])
def test_output_layer_faults_scale_the_output(make, scale):
  x = jax.random.normal(KEY, (5, 6))
  out = make()(KEY, PARAMS, 1.0)
  np.testing.assert_allclose(value_apply(out, x), scale * value_apply(PARAMS, x), rtol=1e-5,
                             atol=1e-6)
  half = make()(KEY, PARAMS, 0.5)
  np.testing.assert_allclose(value_apply(half, x), (1 + (scale - 1) / 2) * value_apply(PARAMS, x),
                             rtol=1e-5, atol=1e-6)


def test_swap_at_full_severity_is_the_reference_exactly():
  out = faults.swap("value+world_model/reward", REFERENCE)(KEY, PARAMS, 1.0)
  _assert_bit_identical(out["value"], REFERENCE["value"])
  _assert_bit_identical(out["world_model"]["reward"], REFERENCE["world_model"]["reward"])
  _assert_bit_identical(out["world_model"]["dynamics"], PARAMS["world_model"]["dynamics"])
  half = faults.interpolate("value", REFERENCE)(KEY, PARAMS, 0.5)
  np.testing.assert_allclose(half["value"]["Dense_0"]["kernel"],
                             0.5 * (PARAMS["value"]["Dense_0"]["kernel"]
                                    + REFERENCE["value"]["Dense_0"]["kernel"]), rtol=1e-6)


def test_swap_reference_needs_only_the_target():
  out = faults.swap("value", {"value": REFERENCE["value"]})(KEY, PARAMS, 1.0)
  _assert_bit_identical(out["value"], REFERENCE["value"])


def test_reference_mismatch_names_the_path():
  wrong_shape = jax.tree_util.tree_map(lambda x: x, REFERENCE)  # new containers
  wrong_shape["value"]["Dense_1"] = {"kernel": jnp.zeros((HIDDEN, 3)), "bias": jnp.zeros(3)}
  with pytest.raises(ValueError, match=r"value/Dense_1/(kernel|bias)"):
    faults.swap("value", wrong_shape)(KEY, PARAMS, 1.0)
  missing = jax.tree_util.tree_map(lambda x: x, REFERENCE)
  del missing["value"]["Dense_1"]
  with pytest.raises(ValueError, match="value/Dense_1"):
    faults.swap("value", missing)(KEY, PARAMS, 1.0)
  with pytest.raises(ValueError, match="no component 'actor'"):
    faults.interpolate("actor", {"value": REFERENCE["value"]})(KEY, PARAMS, 1.0)


def test_reinitialize_with_init_fn_uses_the_key():
  init_fn = lambda key: {"actor": _MLP(2).init(key, jnp.zeros((6,)))["params"]}
  fault = faults.reinitialize("actor", init_fn)
  out_a = jax.jit(fault)(jax.random.key(1), PARAMS, 1.0)
  out_b = jax.jit(fault)(jax.random.key(2), PARAMS, 1.0)
  _assert_bit_identical(out_a["actor"], init_fn(jax.random.key(1))["actor"])
  assert not np.array_equal(out_a["actor"]["Dense_0"]["kernel"],
                            out_b["actor"]["Dense_0"]["kernel"])
  _assert_bit_identical(fault(KEY, PARAMS, 0.0), PARAMS)


def test_compose_applies_in_order_with_split_keys():
  first = faults.gaussian_noise("value", 0.3)
  second = faults.sign_flip("value")
  out = faults.compose(first, second)(KEY, PARAMS, 1.0)
  key_first, key_second = jax.random.split(KEY)
  expected = second(key_second, first(key_first, PARAMS, 1.0), 1.0)
  _assert_bit_identical(out, expected)
  assert faults.compose(first, second).target == "value"
  with pytest.raises(ValueError, match="at least one"):
    faults.compose()


def test_target_covering_a_subcomponent_perturbs_it_identically():
  whole = faults.gaussian_noise("world_model", 0.3)(KEY, PARAMS, 1.0)
  part = faults.gaussian_noise("world_model/dynamics", 0.3)(KEY, PARAMS, 1.0)
  _assert_bit_identical(whole["world_model"]["dynamics"], part["world_model"]["dynamics"])


# ---------------------------------------------------------------------------------------------
# Errors and diagnostics
# ---------------------------------------------------------------------------------------------


def test_unknown_target_lists_valid_paths():
  with pytest.raises(ValueError, match=r"'valeu'.*matches no component.*world_model/dynamics"):
    faults.gaussian_noise("valeu", 0.1)(KEY, PARAMS, 1.0)
  with pytest.raises(ValueError, match="'policy'"):
    faults.sign_flip("value+policy")(KEY, PARAMS, 1.0)
  with pytest.raises(ValueError, match="empty term"):
    faults.gaussian_noise("value++actor", 0.1)
  with pytest.raises(ValueError, match="invalid characters"):
    faults.stuck_at("value:actor")


def test_bad_settings_raise():
  with pytest.raises(ValueError, match="bits must be one of any, sign, exponent, mantissa"):
    faults.bit_flip("value", bits="fraction")
  with pytest.raises(ValueError, match="scale must be >= 0"):
    faults.gaussian_noise("value", scale=-1.0)
  with pytest.raises(ValueError, match="severity must be a scalar"):
    faults.gaussian_noise("value")(KEY, PARAMS, jnp.ones(3))


def test_component_paths_rule():
  assert faults.component_paths(PARAMS) == (
      "actor", "value", "world_model", "world_model/dynamics", "world_model/encoder",
      "world_model/reward", "world_model/termination")
  nested = {"actor": {"MLP_0": {"Dense_0": {"kernel": jnp.ones((2, 2))}}}}
  assert faults.component_paths(nested) == ("actor",)
  assert faults.resolve_target(PARAMS, "world_model+world_model/reward") == ("world_model",)
  assert faults.resolve_target(PARAMS, "world_model/*") == (
      "world_model/dynamics", "world_model/encoder", "world_model/reward",
      "world_model/termination")
  assert faults.resolve_target(PARAMS, "*") == ("actor", "value", "world_model")


def test_param_distance_values():
  doubled = jax.tree_util.tree_map(lambda x: 2 * x, PARAMS)
  distances = distance(doubled, PARAMS)
  assert set(distances) == set(faults.component_paths(PARAMS))
  for value in distances.values():
    np.testing.assert_allclose(float(value), 1.0, rtol=1e-6)
  same = distance(PARAMS, PARAMS, target="value")
  assert set(same) == {"value"} and float(same["value"]) == 0.0
  with pytest.raises(ValueError, match="structures differ at 'value'"):
    faults.param_distance({"value": {"Dense_0": PARAMS["value"]["Dense_0"]}}, PARAMS, "value")
  with pytest.raises(ValueError, match="shapes differ at value/Dense_1/bias"):
    faults.param_distance({"value": PARAMS["actor"]}, PARAMS, "value")


def test_spec_property_round_trips():
  fault = faults.compose(faults.bit_flip("world_model/*", 1e-4, "exponent"),
                         faults.gaussian_noise("value", 0.5, relative=True))
  parsed = faults.parse_fault_spec(fault.spec)
  assert parsed.spec == fault.spec
  _assert_bit_identical(parsed(KEY, PARAMS, 0.7), fault(KEY, PARAMS, 0.7))
