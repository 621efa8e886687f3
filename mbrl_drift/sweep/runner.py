"""Running sweeps: one job (train once, break many times) per task, on local processes or Ray.

The driver (:func:`run_sweep`) owns the results store. Each job runs as one task,
:func:`execute_job`: it trains (or resumes) the job's runs under ``runs/<job>/``, calibrates the
matched-damage severities the store does not know yet, evaluates every pending trial of the job
in one compiled call, and returns the trial records. The driver commits them. A task is a plain
function of picklable arguments, so the local process pool and Ray run exactly the same code and
give the same numbers.

Jobs are idempotent: a job that runs again resumes its checkpointed training and redoes only its
unfinished trials. Ray therefore retries a task whose worker or node dies (``RAY_MAX_RETRIES``),
while an exception raised by the job itself fails it at once.

Progress: the driver shows a :mod:`mbrl_drift.progress` reporter (trials done / total, elapsed,
ETA, a status line per running job). A job reports its phase (training, evaluating) through a
``status`` callable: a direct call when it runs in the driver, otherwise a small file
``runs/<job>/status`` that the driver polls.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import dataclasses
import fcntl
import multiprocessing
import os
import signal
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from rich.console import Console

from mbrl_drift.progress import ProgressReporter, progress_reporter
from mbrl_drift.sweep.spec import INTACT, MAIN_RUN, Job, SweepSpec, Trial
from mbrl_drift.sweep.store import Calibration, ResultsStore

RUNNERS = ("local", "ray")
RAY_MAX_RETRIES = 3  # retries of a Ray task whose worker or node died (not of a job's errors)
STATUS_NAME = "status"  # runs/<job>/status: the running job's phase, polled by the driver
_POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class SweepSummary:
  """What one call of :func:`run_sweep` did.

  Attributes:
    sweep_dir: the store's directory.
    num_trials: trials in the sweep.
    completed: trials completed by this call.
    skipped: trials already done before this call.
    failed: ``(job_id, error)`` of the jobs that raised.
    wall_time_s: duration of the call.
  """

  sweep_dir: Path
  num_trials: int
  completed: int
  skipped: int
  failed: tuple[tuple[str, str], ...]
  wall_time_s: float


class SweepError(RuntimeError):
  """Some jobs of a sweep failed (their trials stay pending and are retried on the next run)."""


# -- one job -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def _train_job(root: Path, job: Job) -> float:
  """Trains (or resumes) the job's main and reference runs; returns the seconds spent."""
  from mbrl_drift.runs import is_finished, train_run

  start = time.time()
  main_dir = root / job.run_dir
  with _file_lock(root / "runs" / job.job_id / "job.lock"):
    if not is_finished(main_dir):
      train_run(job.config, job.seeds, main_dir, seed=job.base_seed, resume=True, progress=False)
    for name, config, init_from, freeze in job.references:
      reference_dir = root / job.reference_dir(name)
      if not is_finished(reference_dir):
        train_run(config, job.seeds, reference_dir, seed=job.base_seed, resume=True,
                  progress=False, init_from=main_dir if init_from == MAIN_RUN else None,
                  freeze=freeze)
  return time.time() - start


def _resolve_references(spec: str, root: Path, job: Job) -> str:
  """Replaces ``run=@name`` by the path of the job's reference run ``name``."""
  for name, *_ in job.references:
    spec = spec.replace(f"run=@{name}", f"run={root / job.reference_dir(name)}")
  return spec


def _describe(fault: Any) -> tuple[str, str]:
  """``(component, fault_name)`` of a parsed fault (``intact`` for none)."""
  if fault is None:
    return INTACT, INTACT
  return fault.target, fault.name


def execute_job(sweep_dir: str, spec: SweepSpec, job: Job, trials: Sequence[Trial],
                calibrations: dict[tuple[str, float], Calibration],
                cache_dir: str | None = None,
                status: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Runs one job: trains its runs, calibrates, evaluates ``trials``.

  Args:
    sweep_dir: the sweep directory (absolute; shared storage on a cluster).
    spec: the sweep.
    job: the job.
    trials: the job's pending trials.
    calibrations: matched-damage severities already known, ``(fault, target_drop) -> ...``.
    cache_dir: JAX compilation cache directory (default: mbrl_drift's).
    status: called with the job's phase (``"training"``, ``"evaluating N trials"``).

  Returns:
    ``{"job_id", "train_s", "calibrations": [(fault, target_drop, Calibration)],
    "records": [trial record, ...]}``.
  """
  import jax

  from mbrl_drift.fault_evaluation import FaultRequest, evaluate_faults
  from mbrl_drift.runs import enable_compilation_cache, load_run

  status = status or (lambda _: None)
  enable_compilation_cache(cache_dir)
  root = Path(sweep_dir)
  status("training")
  train_s = _train_job(root, job)
  run = load_run(root / job.run_dir)
  key = jax.random.key(spec.eval_seed)
  axes = run.trainer.agent.eval_axes
  horizons = [None] if axes.depth_name is None else (list(spec.horizons) or [axes.depth_default])

  # -- one request per pending fault: its severities and matched drops --------------------------
  specs = list(dict.fromkeys(t.fault for t in trials))
  requests = [FaultRequest(
      spec=s, severities=tuple(t.severity for t in trials if t.fault == s and t.target_drop is None),
      matched_drops=tuple(dict.fromkeys(t.target_drop for t in trials
                                        if t.fault == s and t.target_drop is not None)))
      for s in specs]
  known = dict(calibrations)
  status(f"evaluating {len(trials)} trials")
  start = time.time()
  evaluation = evaluate_faults(
      run, requests, None if axes.depth_name is None else horizons, list(spec.policies),
      spec.episodes, key, calibration_episodes=spec.calibration_episodes,
      known_calibrations=known, resolve_spec=lambda s: _resolve_references(s, root, job))
  evaluate_s = time.time() - start
  new_calibrations = [(s, d, Calibration(float(c.severity), float(c.drop), bool(c.reached)))
                      for (s, d), c in evaluation.calibrations.items() if (s, d) not in known]

  by_trial = {(r.fault, r.target_drop, r.severity if r.target_drop is None else None, r.horizon,
               r.policy): r for r in evaluation.records}
  records = []
  for trial in trials:
    severity = None if trial.target_drop is not None else float(np.float32(trial.severity))
    record = by_trial[(trial.fault, trial.target_drop, severity, trial.horizon, trial.policy)]
    component, fault_name = _describe(evaluation.faults[trial.fault])
    calibration = None if record.calibration is None else Calibration(
        float(record.calibration.severity), float(record.calibration.drop),
        bool(record.calibration.reached))
    trajectories = evaluation.results.trajectories
    sample = slice(0, spec.sample_episodes)
    f, s, h, p = record.position
    pick = lambda x: np.asarray(x[f, s, h, p, 0, sample]).tolist()
    records.append({
        "trial_id": trial.trial_id,
        "job_id": job.job_id,
        "run_dir": job.run_dir,
        "config": {
            "sweep": spec.name, "env": job.env, "env_kwargs": [list(kv) for kv in
                                                              job.config.env_kwargs],
            "variant": job.variant, "agent": job.config.agent_kind, "seeds": job.seeds,
            "fault": trial.fault, "component": component, "fault_name": fault_name,
            "severity": record.severity, "target_drop": trial.target_drop,
            "horizon": trial.horizon, "policy": trial.policy, "episodes": trial.episodes,
            "calibration": None if calibration is None else dataclasses.asdict(calibration),
        },
        "metrics": dict(record.metrics),
        "label": record.label,
        "label_reasons": list(record.label_reasons),
        "sample": {"seed": 0, "state_index": pick(trajectories.state_index),
                   "position": pick(trajectories.position), "length": pick(trajectories.length),
                   "reached_goal": pick(trajectories.reached_goal)},
        "timings": {"train_s": round(train_s, 3), "evaluate_s": round(evaluate_s, 3),
                    "trial_s": round(evaluate_s / max(len(trials), 1), 4)},
    })
  return {"job_id": job.job_id, "train_s": train_s, "calibrations": new_calibrations,
          "records": records}


# -- runners -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _StatusFile:
  """A job's ``status`` callable when it runs in another process: writes ``path`` atomically."""

  path: str

  def __call__(self, text: str) -> None:
    path = Path(self.path)
    with contextlib.suppress(OSError):  # progress only: never fail a job over it
      path.parent.mkdir(parents=True, exist_ok=True)
      partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
      partial.write_text(text)
      os.replace(partial, path)


def _read_status(path: Path) -> str | None:
  try:
    return path.read_text().strip() or None
  except OSError:
    return None


def _init_local_worker(cores: Any, parent_pid: int) -> None:
  """Pool-worker setup: die with the driver, and pin to one core."""
  try:  # PR_SET_PDEATHSIG: a driver killed with SIGKILL takes its workers with it (Linux)
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
  except (OSError, AttributeError):
    pass
  if os.getppid() != parent_pid:
    os._exit(1)
  with contextlib.suppress(Exception):
    os.sched_setaffinity(0, {cores.get()})


# The runners yield ``(task index, result or _Failure)`` as tasks finish, and ``(None, None)``
# every _POLL_S seconds while none does (the driver then polls the jobs' status files).


def _in_process(tasks: Sequence[tuple]) -> Iterator[tuple[int | None, Any]]:
  for index, args in enumerate(tasks):
    try:
      yield index, execute_job(*args)
    except Exception as error:  # noqa: BLE001 -- reported per job, the sweep goes on
      yield index, _failure(error)


def _local_results(tasks: Sequence[tuple], workers: int) -> Iterator[tuple[int | None, Any]]:
  context = multiprocessing.get_context("spawn")
  cores = context.Queue()
  available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
  for i in range(workers):
    cores.put(available[i % len(available)] if available else 0)
  with concurrent.futures.ProcessPoolExecutor(
      max_workers=workers, mp_context=context, initializer=_init_local_worker,
      initargs=(cores, os.getpid())) as pool:
    futures = {pool.submit(execute_job, *args): index for index, args in enumerate(tasks)}
    while futures:
      done, _ = concurrent.futures.wait(list(futures), timeout=_POLL_S,
                                        return_when=concurrent.futures.FIRST_COMPLETED)
      if not done:
        yield None, None
      for future in done:
        index = futures.pop(future)
        try:
          yield index, future.result()
        except Exception as error:  # noqa: BLE001
          yield index, _failure(error)


def _ray_results(tasks: Sequence[tuple], address: str | None,
                 workers: int | None) -> Iterator[tuple[int | None, Any]]:
  try:
    import ray
  except ImportError as error:
    raise ImportError("the Ray runner needs Ray: pip install 'mbrl_drift[ray]'") from error
  started_here = not ray.is_initialized()
  if started_here:
    options: dict[str, Any] = {"address": address, "include_dashboard": False,
                               "log_to_driver": False, "configure_logging": False}
    if address is None and workers:
      options["num_cpus"] = workers
    with warnings.catch_warnings():
      # Ray starts its processes with fork + exec, which JAX's fork warning cannot tell apart
      # from a bare fork.
      warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
      ray.init(**options)
  try:
    # A job is idempotent, so a task whose worker or node died is simply run again; an exception
    # raised by the job is a real error and is not retried.
    remote = ray.remote(num_cpus=1, max_retries=RAY_MAX_RETRIES,
                        retry_exceptions=False)(execute_job)
    pending = {remote.remote(*args): index for index, args in enumerate(tasks)}
    while pending:
      done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
      if not done:
        yield None, None
        continue
      index = pending.pop(done[0])
      try:
        yield index, ray.get(done[0])
      except Exception as error:  # noqa: BLE001
        yield index, _failure(error)
  finally:
    if started_here:
      ray.shutdown()


@dataclasses.dataclass(frozen=True)
class _Failure:
  error: str


def _failure(error: BaseException) -> _Failure:
  return _Failure("".join(traceback.format_exception_only(type(error), error)).strip())


def _reporter(progress: bool | Console | None, log: Callable[[str], None] | None, total: int,
              done: int, name: str) -> ProgressReporter:
  """The sweep's progress reporter; see :func:`run_sweep`'s ``progress``."""
  if isinstance(progress, Console):
    console, enabled = progress, True
  elif progress is False:
    console, enabled = Console(force_terminal=False), log is not None
  else:
    console, enabled = Console(), progress is True or log is not None
  return progress_reporter(total, f"sweep {name!r}", unit="trials", done=done, enabled=enabled,
                           console=console, write=log)


def run_sweep(spec: SweepSpec, sweep_dir: str | os.PathLike, runner: str = "local",
              workers: int | None = None, address: str | None = None,
              log: Callable[[str], None] | None = None, raise_on_failure: bool = True,
              progress: bool | Console | None = None) -> SweepSummary:
  """Runs every trial of ``spec`` not yet done in ``sweep_dir``.

  Re-running after a crash (or a kill at any moment) resumes: finished trials are skipped,
  interrupted training resumes from its last checkpoint, and every trial completes exactly once
  with the numbers an uninterrupted sweep gives.

  Progress: in a terminal, a live display (a bar of trials done / total with the elapsed time
  and an ETA, and a status line per running job: training, evaluating N trials); otherwise plain
  lines through ``log``, ``[done/total trials  elapsed  ETA] message``, one when a job starts,
  changes phase, finishes or fails. Trials finish a job at a time (a job evaluates all its trials
  in one compiled call), so the bar moves by a job's trials.

  Args:
    spec: the sweep.
    sweep_dir: its results store (created if new).
    runner: ``"local"`` (a pool of spawned processes, one job each, pinned one per core; jobs
      run in this process when there is one job or one worker) or ``"ray"`` (a task whose worker
      or node dies is retried, up to ``RAY_MAX_RETRIES`` times).
    workers: parallel jobs (default: one per core, at most the number of jobs).
    address: Ray cluster address (``None`` starts a local Ray instance).
    log: called with the plain progress lines (e.g. ``print``); giving it turns progress on.
    raise_on_failure: raise :class:`SweepError` at the end if a job failed.
    progress: ``None`` (default): a live display when stdout is a terminal and ``log`` is given,
      else plain lines through ``log`` (if given). ``True``: progress even without ``log``
      (plain lines then go to stdout). ``False``: never a live display, only ``log``'s lines.
      A rich ``Console``: the display is drawn on it (live when it is a terminal).

  Returns:
    A :class:`SweepSummary`.

  Raises:
    ValueError: an unknown runner.
    StoreLockedError: another sweep is writing to ``sweep_dir``.
    StoreError: ``sweep_dir`` holds another sweep or a store of another version.
    SweepError: a job failed (after every other job finished).
  """
  import jax

  if runner not in RUNNERS:
    raise ValueError(f"unknown runner {runner!r}; choose from {list(RUNNERS)}")
  start = time.time()
  root = Path(sweep_dir).resolve()
  with ResultsStore.create(root, spec) as store:
    jobs = spec.jobs()
    trials = {job.job_id: spec.trials(job) for job in jobs}
    store.register(jobs, [t for job_trials in trials.values() for t in job_trials])
    status = store.status_of()
    total = sum(len(t) for t in trials.values())
    task_jobs = []
    for job in jobs:
      pending = [t for t in trials[job.job_id] if status.get(t.trial_id) != "done"]
      if pending:
        task_jobs.append((job, pending))
    skipped = total - sum(len(p) for _, p in task_jobs)
    if workers is None:
      workers = min(len(task_jobs), os.cpu_count() or 1)
    in_process = runner == "local" and (workers <= 1 or len(task_jobs) <= 1)
    reporter = _reporter(progress, log, total, skipped, spec.name)
    labels = [f"job {job.job_id} ({job.env}, {job.variant})" for job, _ in task_jobs]
    status_paths = [root / "runs" / job.job_id / STATUS_NAME for job, _ in task_jobs]
    shown: dict[int, str] = {}

    def show(index: int, text: str) -> None:
      if shown.get(index) != text:
        shown[index] = text
        reporter.status(index, f"{labels[index]}: {text}")

    tasks = []
    cache_dir = jax.config.jax_compilation_cache_dir
    for index, (job, pending) in enumerate(task_jobs):
      known = {}
      for trial in pending:
        if trial.target_drop is not None:
          calibration = store.calibration(job.job_id, trial.fault, trial.target_drop)
          if calibration is not None:
            known[(trial.fault, trial.target_drop)] = calibration
      status_paths[index].unlink(missing_ok=True)  # a stale phase from an interrupted sweep
      job_status = (lambda text, i=index: show(i, text)) if in_process else _StatusFile(
          str(status_paths[index]))
      tasks.append((str(root), spec, job, pending, known, cache_dir, job_status))

    with reporter:
      reporter.log(f"sweep {spec.name!r}: {total} trials in {len(jobs)} jobs; {skipped} already "
                   f"done, {total - skipped} to run ({runner} runner)")
      for _, pending in task_jobs:
        store.mark_started([t.trial_id for t in pending])
      results: Iterable[tuple[int | None, Any]]
      if not tasks:
        results = iter(())
      elif runner == "ray":
        results = _ray_results(tasks, address, workers)
      elif in_process:
        results = _in_process(tasks)
      else:
        results = _local_results(tasks, workers)
      completed, failed, finished = 0, [], set()
      for index, result in results:
        if index is None:  # nothing finished for a while: poll the running jobs' phases
          for i, path in enumerate(status_paths):
            text = None if i in finished else _read_status(path)
            if text is not None:
              show(i, text)
          continue
        finished.add(index)
        status_paths[index].unlink(missing_ok=True)
        job, pending = task_jobs[index]
        if isinstance(result, _Failure):
          store.mark_failed([t.trial_id for t in pending], result.error)
          failed.append((job.job_id, result.error))
          reporter.done(index, f"{labels[index]} failed: {result.error}")
          continue
        for fault, target_drop, calibration in result["calibrations"]:
          store.record_calibration(job.job_id, fault, target_drop, calibration)
        store.record_job(job.job_id, result["train_s"])
        newly = store.complete(result["records"])
        completed += newly
        reporter.done(index, f"{labels[index]}: {len(result['records'])} trials done",
                      advance=newly)
  summary = SweepSummary(sweep_dir=root, num_trials=total, completed=completed, skipped=skipped,
                         failed=tuple(failed), wall_time_s=round(time.time() - start, 2))
  if failed and raise_on_failure:
    raise SweepError(f"{len(failed)} job(s) of sweep {spec.name!r} failed; their trials stay "
                     f"pending and re-running the sweep retries them. First error: "
                     f"{failed[0][1]}")
  return summary
