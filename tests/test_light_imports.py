"""The pytest plugin, the package and the CLI's parser load without JAX."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("statement", [
    "import mbrl_drift.pytest_plugin",
    "import mbrl_drift, mbrl_drift.agents, mbrl_drift.config",
    "from mbrl_drift.cli import build_parser; build_parser().parse_args(['agents'])",
])
def test_loading_imports_no_jax(statement):
  check = (f"import sys; {statement}; "
           "heavy = sorted(m for m in ('jax', 'flax', 'optax', 'envs') if m in sys.modules); "
           "print(heavy); sys.exit(1 if heavy else 0)")
  result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
  assert result.returncode == 0, f"{statement} imported {result.stdout.strip()}{result.stderr}"


def test_package_names_still_load_on_first_use():
  import mbrl_drift

  assert mbrl_drift.make_train.__module__ == "mbrl_drift.train"
  assert "TrainConfig" in mbrl_drift.__all__
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    mbrl_drift.nope  # noqa: B018
