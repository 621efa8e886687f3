"""Sweeps: grids of (environment, agent, seed, fault, severity, horizon, policy) trials, run on
local processes or a Ray cluster, with a resumable SQLite results store.

Typical use::

  from mbrl_drift import sweep

  spec = sweep.SweepSpec.from_file("experiments/component_faults.toml")
  sweep.run_sweep(spec, "runs/e1", log=print)      # re-run after a crash to resume
  frame = sweep.load_results("runs/e1")           # one row per trial
"""

from mbrl_drift.sweep.analysis import relabel
from mbrl_drift.sweep.runner import RUNNERS, SweepError, SweepSummary, execute_job, run_sweep
from mbrl_drift.sweep.spec import (INTACT, FaultEntry, Job, ReferenceRun, SweepSpec, Trial,
                                   Variant)
from mbrl_drift.sweep.store import (SCHEMA_VERSION, Calibration, ResultsStore, StoreError,
                                    StoreLockedError, load_results)

__all__ = [
    "INTACT",
    "RUNNERS",
    "SCHEMA_VERSION",
    "Calibration",
    "FaultEntry",
    "Job",
    "ReferenceRun",
    "ResultsStore",
    "StoreError",
    "StoreLockedError",
    "SweepError",
    "SweepSpec",
    "SweepSummary",
    "Trial",
    "Variant",
    "execute_job",
    "load_results",
    "relabel",
    "run_sweep",
]
