"""Shared test setup: persistent compilation cache, small configs and trained runs, and the
distribution of the tests over pytest-xdist workers."""

import os
from typing import Any, Callable, NamedTuple

import pytest

# The suite compiles hundreds of small programs whose run time is negligible next to their
# compilation, and most of that is LLVM's optimisation passes. Without the expensive ones XLA:CPU
# compiles in about half the time; the programs compute the same numbers bit for bit (checked on
# the tiny run's trained parameters). Set before JAX creates its CPU client; inherited by the
# subprocesses the CLI tests start. $XLA_FLAGS that already decide the flag are respected.
_FAST_COMPILE_FLAG = "--xla_llvm_disable_expensive_passes"
if _FAST_COMPILE_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE_FLAG}=true".strip()

from mbrl_drift.runs import enable_compilation_cache  # noqa: E402  (after XLA_FLAGS)

if os.environ.get("MBRL_DRIFT_TEST_CACHE"):
  # The CLI turns on the cache at $MBRL_DRIFT_CACHE: point it at the same directory, so that a
  # test calling the CLI first in its process does not use (and fill) the user's cache.
  os.environ["MBRL_DRIFT_CACHE"] = os.environ["MBRL_DRIFT_TEST_CACHE"]
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


class TinyTrainedSeeds(NamedTuple):
  """Two seeds of the tiny run trained in one vmapped call, with its compiled functions.

  Attributes:
    trainer: the :class:`~mbrl_drift.train.Trainer` of ``tiny_train_config``.
    keys: ``[2]`` PRNG keys, one per seed.
    train: ``jax.jit(jax.vmap(trainer.train))``.
    init: ``jax.jit(jax.vmap(trainer.init))`` (the program ``train_run`` compiles too).
    run_chunk: ``jax.jit(jax.vmap(trainer.run_chunk))`` (likewise).
    state: ``train(keys)[0]``, leading axis ``[2]``.
    metrics: ``train(keys)[1]``, ``[2, num_chunks]`` per name.
  """

  trainer: Any
  keys: Any
  train: Callable
  init: Callable
  run_chunk: Callable
  state: Any
  metrics: dict


@pytest.fixture(scope="session")
def tiny_trained_seeds(tiny_train_config):
  """Two seeds of the tiny run trained once per test session (see :class:`TinyTrainedSeeds`)."""
  import jax

  from mbrl_drift.train import make_train

  trainer = make_train(tiny_train_config)
  keys = jax.random.split(jax.random.key(0), 2)
  train = jax.jit(jax.vmap(trainer.train))
  state, metrics = train(keys)
  return TinyTrainedSeeds(trainer=trainer, keys=keys, train=train,
                          init=jax.jit(jax.vmap(trainer.init)),
                          run_chunk=jax.jit(jax.vmap(trainer.run_chunk)), state=state,
                          metrics=metrics)


# -- pytest-xdist: which tests share a worker ---------------------------------------------------
#
# The suite is compile-bound, and each xdist worker compiles for itself: plain ``-n`` (load
# scheduling) deals the tests out one by one, so both workers would compile most programs and
# build most module-scoped fixtures. Instead, each module goes to one worker as a whole, and the
# modules that train the tiny run go together, so that its session fixtures (and the programs
# they compile) are built once. Work units are handed out longest first.

# Modules sharing the session fixtures that train the tiny run (tiny_trained_seeds, tiny_run_dir,
# which compile the same programs): module file name -> work unit.
SHARED_WORK_UNITS = {
    name: "tiny_run" for name in ("test_agent.py", "test_metrics_health.py",
                                  "test_training_faults.py", "test_runs.py",
                                  "test_fault_evaluation.py", "test_report.py",
                                  "test_agent_contract.py")}
# Rough cold-cache cost (seconds of one core) of the heaviest work units; any other unit is
# estimated from its number of tests.
WORK_UNIT_COST = {
    "tiny_run": 260.0, "test_faults_weight.py": 40.0, "test_metrics_goal_directedness.py": 25.0,
    "test_exploration.py": 25.0, "test_sweep.py": 240.0, "test_e1_regression.py": 70.0,
    "test_pytest_plugin.py": 50.0, "test_metrics_controls.py": 30.0,
}
SECONDS_PER_TEST = 0.3


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """Module (or shared work unit) scheduling in place of xdist's default ``--dist load``."""
  if config.getvalue("dist") != "load":
    return None  # xdist's default with -n is load; any other --dist is respected
  try:
    from xdist.scheduler import LoadScopeScheduling
  except ImportError:
    return None

  class ModuleScheduling(LoadScopeScheduling):
    """One work unit per test module (or per entry of ``SHARED_WORK_UNITS``), longest first."""

    def _split_scope(self, nodeid):
      module = nodeid.split("::", 1)[0]
      return SHARED_WORK_UNITS.get(os.path.basename(module), module)

    def _assign_work_unit(self, node):
      if not getattr(self, "_ordered", False):
        self._ordered = True
        cost = lambda scope: WORK_UNIT_COST.get(
            os.path.basename(scope), SECONDS_PER_TEST * len(self.workqueue[scope]))
        for scope in sorted(self.workqueue, key=cost, reverse=True):
          self.workqueue.move_to_end(scope)
      super()._assign_work_unit(node)

  return ModuleScheduling(config, log)
