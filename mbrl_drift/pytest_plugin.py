"""pytest plugin of mbrl_drift: pin findings about trained agents as regression tests.

Installed with mbrl_drift (entry point ``pytest11``), so every pytest run in an environment
that has mbrl_drift loads it (``-p no:mbrl_drift`` turns it off; with
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, ``-p mbrl_drift.pytest_plugin`` turns it on).

Fixtures:

* ``mbrl_trained_run(config, seeds=2, seed=0)``: a trained
  :class:`~mbrl_drift.runs.TrainedRun`, trained once and cached on disk
  (:class:`mbrl_drift.testing.RunCache`). The fixture object records ``trained`` and
  ``loaded_from_cache`` run directories; the terminal summary reports them.
* ``mbrl_evaluate(run, faults, severities, ...)``: :func:`mbrl_drift.testing.evaluate_faults`,
  memoised for the session.
* ``mbrl_baseline``: a :class:`mbrl_drift.testing.Baseline` of the current test, stored in
  ``<test dir>/baselines/<module>.json``.
* ``mbrl_cache_dir``: the directory of the cached runs.

Options (group ``mbrl_drift``): ``--mbrl-cache-dir``, ``--mbrl-update-baselines``,
``--mbrl-require-baselines`` (on where ``$CI`` is set: a missing baseline fails in CI instead of
being recorded), ``--run-experiments``, ``--skip-experiments``; ini option ``mbrl_cache_dir``.
Markers: ``experiment`` and ``slow``. See docs/pytest_plugin.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

#: Environment variable that overrides the default directory of cached runs.
CACHE_ENV_VAR = "MBRL_DRIFT_AGENT_CACHE"
_WORKER_OUTPUT_KEY = "mbrl_drift"

logger = logging.getLogger("mbrl_drift.testing")


@dataclasses.dataclass
class PluginState:
  """What the plugin did in one pytest session (per process; merged from xdist workers).

  Attributes:
    runs: the session's run cache (``None`` until a test asks for a trained run).
    evaluations: memoised :func:`~mbrl_drift.testing.evaluate_faults` results.
    trained: run directories trained by workers (controller side of pytest-xdist).
    loaded_from_cache: run directories loaded from the cache by workers (controller side).
    baselines: ``(action, file, entry)`` for every baseline entry created or updated.
  """

  runs: Any = None
  evaluations: dict = dataclasses.field(default_factory=dict)
  trained: list[str] = dataclasses.field(default_factory=list)
  loaded_from_cache: list[str] = dataclasses.field(default_factory=list)
  baselines: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

  def summary(self) -> dict[str, list]:
    """Everything done, as JSON-able lists (this process's runs included)."""
    trained = list(self.trained)
    loaded = list(self.loaded_from_cache)
    if self.runs is not None:
      trained += [str(path) for path in self.runs.trained]
      loaded += [str(path) for path in self.runs.loaded_from_cache]
    return {"trained": trained, "loaded_from_cache": loaded,
            "baselines": [list(entry) for entry in self.baselines]}


_STATE_KEY = pytest.StashKey[PluginState]()


def plugin_state(config: pytest.Config) -> PluginState:
  """The plugin's :class:`PluginState` of a pytest session."""
  if _STATE_KEY not in config.stash:
    config.stash[_STATE_KEY] = PluginState()
  return config.stash[_STATE_KEY]


# ---------------------------------------------------------------------------------------------
# Options, markers, selection
# ---------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
  group = parser.getgroup("mbrl_drift", "mbrl_drift: trained agents, findings and baselines")
  group.addoption(
      "--mbrl-cache-dir", default=None, metavar="DIR",
      help=f"directory of trained runs cached across pytest runs (default: ${CACHE_ENV_VAR}, "
           "else the mbrl_cache_dir ini option, else .pytest_cache/d/mbrl_drift_agents)")
  group.addoption(
      "--mbrl-update-baselines", action="store_true", default=False,
      help="rewrite the numeric baselines checked by mbrl_baseline with the new values")
  group.addoption(
      "--mbrl-require-baselines", action="store_true", default=False,
      help="fail a baseline check that has no recorded baseline instead of recording it "
           "(on by default where the environment variable CI is set, as in CI services)")
  group.addoption(
      "--run-experiments", action="store_true", default=False,
      help="run only the tests marked 'experiment' (like -m experiment)")
  group.addoption(
      "--skip-experiments", action="store_true", default=False,
      help="skip the tests marked 'experiment' (like -m 'not experiment', but reported)")
  parser.addini("mbrl_cache_dir", "directory of cached trained runs (relative to the ini "
                "file); --mbrl-cache-dir and $" + CACHE_ENV_VAR + " take precedence",
                default="")


def pytest_configure(config: pytest.Config) -> None:
  config.addinivalue_line(
      "markers", "experiment: trains or evaluates agents to check a research finding "
                 "(select with --run-experiments or -m experiment, skip with "
                 "--skip-experiments or -m 'not experiment')")
  config.addinivalue_line("markers", "slow: long tests (deselect with -m 'not slow')")
  if config.getoption("run_experiments") and config.getoption("skip_experiments"):
    raise pytest.UsageError("--run-experiments and --skip-experiments exclude each other")
  plugin_state(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
  if config.getoption("skip_experiments"):
    skip = pytest.mark.skip(reason="experiment tests skipped by --skip-experiments")
    for item in items:
      if item.get_closest_marker("experiment") is not None:
        item.add_marker(skip)
  elif config.getoption("run_experiments"):
    selected = [item for item in items if item.get_closest_marker("experiment") is not None]
    deselected = [item for item in items if item.get_closest_marker("experiment") is None]
    if deselected:
      config.hook.pytest_deselected(items=deselected)
      items[:] = selected


# ---------------------------------------------------------------------------------------------
# Reporting (merged across pytest-xdist workers)
# ---------------------------------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session) -> None:
  config = session.config
  if hasattr(config, "workeroutput"):  # a pytest-xdist worker: hand the summary over
    config.workeroutput[_WORKER_OUTPUT_KEY] = plugin_state(config).summary()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
  summary = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
  if not summary:
    return
  state = plugin_state(node.config)
  state.trained.extend(summary["trained"])
  state.loaded_from_cache.extend(summary["loaded_from_cache"])
  state.baselines.extend(tuple(entry) for entry in summary["baselines"])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
  summary = plugin_state(config).summary()
  if not any(summary.values()):
    return
  terminalreporter.write_sep("-", "mbrl_drift")
  if summary["trained"] or summary["loaded_from_cache"]:
    terminalreporter.write_line(
        f"mbrl_drift: trained {len(summary['trained'])} run(s), loaded "
        f"{len(summary['loaded_from_cache'])} run(s) from the cache")
    for path in summary["trained"]:
      terminalreporter.write_line(f"  trained: {path}")
    for path in summary["loaded_from_cache"]:
      terminalreporter.write_line(f"  loaded from the cache: {path}")
  for action, path, entry in summary["baselines"]:
    terminalreporter.write_line(f"mbrl_drift: baseline {action}: {entry} in {path}")


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def resolve_cache_dir(config: pytest.Config) -> Path:
  """The cache directory: ``--mbrl-cache-dir``, else ``$MBRL_DRIFT_AGENT_CACHE``, else the
  ``mbrl_cache_dir`` ini option, else ``config.cache.mkdir("mbrl_drift_agents")``."""
  option = config.getoption("mbrl_cache_dir")
  if option:
    path = Path(config.invocation_params.dir, option)
  elif os.environ.get(CACHE_ENV_VAR):
    path = Path(os.environ[CACHE_ENV_VAR])
  elif config.getini("mbrl_cache_dir"):
    base = config.inipath.parent if config.inipath else config.rootpath
    path = Path(base, config.getini("mbrl_cache_dir"))
  elif getattr(config, "cache", None) is not None:
    return Path(config.cache.mkdir("mbrl_drift_agents"))
  else:  # the cache provider is off (-p no:cacheprovider)
    path = Path.home() / ".cache" / "mbrl_drift" / "agents"
  path = path.expanduser().resolve()
  path.mkdir(parents=True, exist_ok=True)
  return path


def _ensure_compilation_cache() -> None:
  """Turns on JAX's persistent compilation cache (mbrl_drift's default location) unless the
  test suite configured one already."""
  import jax

  from mbrl_drift.runs import enable_compilation_cache
  if not jax.config.jax_compilation_cache_dir:
    enable_compilation_cache()


@pytest.fixture(scope="session")
def mbrl_cache_dir(pytestconfig: pytest.Config) -> Path:
  """The directory of trained runs cached across pytest runs."""
  return resolve_cache_dir(pytestconfig)


@pytest.fixture(scope="session")
def mbrl_trained_run(pytestconfig: pytest.Config, mbrl_cache_dir: Path) -> Any:
  """A factory of trained runs: ``mbrl_trained_run(config, seeds=2, seed=0) -> TrainedRun``.

  ``config`` is a :class:`~mbrl_drift.config.TrainConfig` or an environment name (its preset).
  A run is trained once into ``<cache dir>/<config hash>-s<seeds>-b<seed>-v<version>/`` and
  reused by later tests and later pytest runs; see :class:`mbrl_drift.testing.RunCache`. The
  factory's ``trained`` and ``loaded_from_cache`` lists say what this session did.
  """
  from mbrl_drift.testing import RunCache

  state = plugin_state(pytestconfig)
  if state.runs is None:
    _ensure_compilation_cache()
    state.runs = RunCache(mbrl_cache_dir, log=logger.info)
  return state.runs


@pytest.fixture(scope="session")
def mbrl_evaluate(pytestconfig: pytest.Config) -> Callable[..., list]:
  """``mbrl_evaluate(run, faults, severities, horizons=None, policies=("greedy",),
  episodes=64, key_seed=0, thresholds=None) -> list[Condition]``.

  :func:`mbrl_drift.testing.evaluate_faults`, memoised for the session: tests that evaluate the
  same conditions of the same run share one evaluation.
  """
  from mbrl_drift.testing import evaluate_faults

  state = plugin_state(pytestconfig)
  _ensure_compilation_cache()

  def evaluate(run: Any, faults: Sequence[str], severities: Sequence[float],
               horizons: Sequence[int] | None = None, policies: Sequence[str] = ("greedy",),
               episodes: int = 64, key_seed: int = 0, thresholds: Any = None) -> list:
    if isinstance(faults, str):
      faults = [faults]
    key = (str(Path(run.run_dir).resolve()), tuple(faults), tuple(float(s) for s in severities),
           None if horizons is None else tuple(int(h) for h in horizons), tuple(policies),
           int(episodes), int(key_seed), thresholds)
    if key not in state.evaluations:
      state.evaluations[key] = evaluate_faults(run, faults, severities, horizons, policies,
                                               episodes, key_seed, thresholds)
    return list(state.evaluations[key])

  return evaluate


@pytest.fixture
def mbrl_baseline(request: pytest.FixtureRequest) -> Any:
  """Numeric baselines of this test: ``mbrl_baseline.check(name, metrics, rtol=0.05,
  atol=0.02)``, stored in ``<test dir>/baselines/<module>.json`` (see
  :class:`mbrl_drift.testing.Baseline`)."""
  from mbrl_drift.testing import Baseline

  config = request.config
  module_path = Path(request.node.path)
  nodeid = request.node.nodeid
  test_key = nodeid.split("::", 1)[1] if "::" in nodeid else request.node.name
  state = plugin_state(config)

  def on_record(action: str, path: Path, entry: str) -> None:
    state.baselines.append((action, str(path), entry))

  return Baseline(module_path.parent / "baselines" / f"{module_path.stem}.json", test_key,
                  update=config.getoption("mbrl_update_baselines"),
                  require=config.getoption("mbrl_require_baselines") or _in_ci(),
                  on_record=on_record,
                  update_hint="rerun with --mbrl-update-baselines to accept the new values")


def _in_ci() -> bool:
  """Whether this runs in CI (``$CI`` set to anything but empty, ``0`` or ``false``)."""
  return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")
