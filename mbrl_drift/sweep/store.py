"""The results store of a sweep: an SQLite ledger plus one atomically written file per trial.

A sweep directory holds::

  ledger.sqlite        jobs, trials (status, attempts, completions, timings, metrics) and
                       matched-damage calibrations
  sweep.lock           held (flock) by the one sweep process writing to the directory
  trials/<id>.json     the full record of each finished trial (atomic rename)
  runs/<job>/<run>/    the trained runs (mbrl_drift.runs layout: checkpoints, metrics.jsonl)
  report/              written by ``mbrl-drift report``

Only the sweep's driver process writes the ledger. A trial becomes ``done`` in one transaction
after its record file is on disk, so a sweep killed at any moment loses at most the trials in
flight, and re-running it redoes nothing that finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from mbrl_drift import checkpoint as ckpt
from mbrl_drift.sweep.spec import Job, SweepSpec, Trial

#: Version of the ledger layout and trial-record format; a store of another version is refused.
SCHEMA_VERSION = 1
LEDGER_NAME = "ledger.sqlite"
LOCK_NAME = "sweep.lock"
TRIALS_DIR = "trials"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY, env TEXT, variant TEXT, config TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending', train_s REAL, finished_at REAL);
CREATE TABLE IF NOT EXISTS trials (
  trial_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, config TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
  completions INTEGER NOT NULL DEFAULT 0, started_at REAL, finished_at REAL, duration_s REAL,
  result_path TEXT, metrics TEXT, label TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS calibrations (
  job_id TEXT NOT NULL, fault TEXT NOT NULL, target_drop REAL NOT NULL, severity REAL NOT NULL,
  achieved_drop REAL, reached INTEGER, PRIMARY KEY (job_id, fault, target_drop));
"""


class StoreError(RuntimeError):
  """A sweep directory that cannot be used: another version, another sweep, corrupted."""


class StoreLockedError(StoreError):
  """Another sweep process is writing to the same directory."""


@dataclasses.dataclass(frozen=True)
class Calibration:
  """A matched-damage severity found for one (job, fault, target drop)."""

  severity: float
  achieved_drop: float
  reached: bool


def _version() -> str:
  from mbrl_drift import __version__
  return __version__


class ResultsStore:
  """The ledger and trial files of one sweep directory.

  Open it with :meth:`create` (the sweep's driver: creates or checks the directory, takes the
  lock) or :meth:`open_readonly` (reports, analysis).
  """

  def __init__(self, root: Path, connection: sqlite3.Connection, lock_file: Any = None):
    self.root = root
    self._db = connection
    self._lock_file = lock_file

  # -- opening ---------------------------------------------------------------------------------

  @classmethod
  def create(cls, root: str | os.PathLike, spec: SweepSpec) -> "ResultsStore":
    """Opens ``root`` for writing ``spec``'s sweep (created if new) and locks it.

    Raises:
      StoreLockedError: another process holds the directory's lock.
      StoreError: the directory holds a store of another schema version or another sweep.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock_file = open(root / LOCK_NAME, "a+")
    try:
      fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock_file.seek(0)
      owner = lock_file.read().strip() or "unknown"
      lock_file.close()
      raise StoreLockedError(f"another sweep ({owner}) is writing to {root}; wait for it to "
                             f"finish or use another directory") from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"pid {os.getpid()}")
    lock_file.flush()
    try:
      store = cls(root, cls._connect(root / LEDGER_NAME), lock_file)
      store._check_or_write_meta(spec)
    except BaseException:
      fcntl.flock(lock_file, fcntl.LOCK_UN)
      lock_file.close()
      raise
    (root / TRIALS_DIR).mkdir(exist_ok=True)
    return store

  @classmethod
  def open_readonly(cls, root: str | os.PathLike) -> "ResultsStore":
    """Opens an existing store for reading (no lock; safe while a sweep is running).

    Raises:
      StoreError: no store there, or one of another schema version.
    """
    root = Path(root)
    if not (root / LEDGER_NAME).exists():
      raise StoreError(f"{root} holds no sweep (no {LEDGER_NAME})")
    store = cls(root, cls._connect(root / LEDGER_NAME))
    store._check_schema()
    return store

  @staticmethod
  def _connect(path: Path) -> sqlite3.Connection:
    try:
      connection = sqlite3.connect(path, timeout=30.0, isolation_level=None)
      connection.execute("PRAGMA journal_mode=WAL")
      connection.execute("PRAGMA synchronous=NORMAL")
      connection.executescript(_SCHEMA)
    except sqlite3.DatabaseError as error:
      raise StoreError(f"{path} is not a usable SQLite ledger: {error}") from error
    return connection

  def _meta(self) -> dict[str, str]:
    return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

  def _check_schema(self) -> dict[str, str]:
    meta = self._meta()
    if meta and int(meta.get("schema_version", -1)) != SCHEMA_VERSION:
      raise StoreError(
          f"{self.root} was written by mbrl_drift {meta.get('mbrl_drift_version', '?')} with "
          f"store schema {meta.get('schema_version')}; this mbrl_drift ({_version()}) reads "
          f"schema {SCHEMA_VERSION}. Re-run the sweep into a new directory (or with the "
          f"version that wrote it)")
    return meta

  def _check_or_write_meta(self, spec: SweepSpec) -> None:
    meta = self._check_schema()
    if not meta:
      with self._transaction():
        self._db.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("schema_version", str(SCHEMA_VERSION)), ("mbrl_drift_version", _version()),
            ("spec_hash", spec.spec_hash()), ("spec", json.dumps(spec.to_dict())),
            ("created_at", str(time.time()))])
      return
    if meta.get("spec_hash") != spec.spec_hash():
      raise StoreError(f"{self.root} holds sweep {json.loads(meta['spec'])['name']!r} with a "
                       f"different spec (hash {meta['spec_hash']}, requested "
                       f"{spec.spec_hash()}); use a new directory for a changed sweep")

  def spec(self) -> SweepSpec:
    """The sweep spec this store was created for."""
    return SweepSpec.from_dict(json.loads(self._meta()["spec"]))

  @contextlib.contextmanager
  def _transaction(self) -> Iterator[None]:
    self._db.execute("BEGIN IMMEDIATE")
    try:
      yield
    except BaseException:
      self._db.execute("ROLLBACK")
      raise
    self._db.execute("COMMIT")

  def close(self) -> None:
    self._db.close()
    if self._lock_file is not None:
      fcntl.flock(self._lock_file, fcntl.LOCK_UN)
      self._lock_file.close()
      self._lock_file = None

  def __enter__(self) -> "ResultsStore":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()

  # -- writing ---------------------------------------------------------------------------------

  def register(self, jobs: Sequence[Job], trials: Sequence[Trial]) -> None:
    """Adds jobs and trials not yet in the ledger (existing rows are left untouched)."""
    with self._transaction():
      self._db.executemany(
          "INSERT OR IGNORE INTO jobs (job_id, env, variant, config) VALUES (?, ?, ?, ?)",
          [(j.job_id, j.env, j.variant, json.dumps(j.config.to_dict())) for j in jobs])
      self._db.executemany(
          "INSERT OR IGNORE INTO trials (trial_id, job_id, config) VALUES (?, ?, ?)",
          [(t.trial_id, t.job_id, json.dumps(t.to_dict())) for t in trials])

  def mark_started(self, trial_ids: Sequence[str]) -> None:
    now = time.time()
    with self._transaction():
      self._db.executemany(
          "UPDATE trials SET status = 'running', attempts = attempts + 1, started_at = ? "
          "WHERE trial_id = ? AND status != 'done'", [(now, t) for t in trial_ids])

  def mark_failed(self, trial_ids: Sequence[str], error: str) -> None:
    with self._transaction():
      self._db.executemany("UPDATE trials SET status = 'failed', error = ? WHERE trial_id = ? "
                           "AND status != 'done'", [(error, t) for t in trial_ids])

  def record_calibration(self, job_id: str, fault: str, target_drop: float,
                         calibration: Calibration) -> None:
    with self._transaction():
      self._db.execute(
          "INSERT OR REPLACE INTO calibrations VALUES (?, ?, ?, ?, ?, ?)",
          (job_id, fault, float(target_drop), float(calibration.severity),
           float(calibration.achieved_drop), int(calibration.reached)))

  def record_job(self, job_id: str, train_s: float) -> None:
    with self._transaction():
      self._db.execute("UPDATE jobs SET status = 'trained', train_s = ?, finished_at = ? "
                       "WHERE job_id = ?", (train_s, time.time(), job_id))

  def complete(self, records: Sequence[dict[str, Any]]) -> int:
    """Writes each trial's record file, then marks the trials done in one transaction.

    A trial already done is left as it is (its file is not rewritten), so every trial
    completes exactly once.

    Returns:
      The number of trials newly completed.
    """
    done = self.status_of([r["trial_id"] for r in records])
    fresh = [r for r in records if done.get(r["trial_id"]) != "done"]
    for record in fresh:
      ckpt.atomic_write_json(self.root / TRIALS_DIR / f"{record['trial_id']}.json",
                             _finite(record))
    now = time.time()
    with self._transaction():
      for record in fresh:
        metrics = {k: v for k, v in record["metrics"].items() if not isinstance(v, list)}
        self._db.execute(
            "UPDATE trials SET status = 'done', completions = completions + 1, finished_at = ?, "
            "duration_s = ?, result_path = ?, metrics = ?, label = ?, error = NULL "
            "WHERE trial_id = ? AND status != 'done'",
            (now, record.get("timings", {}).get("trial_s"),
             f"{TRIALS_DIR}/{record['trial_id']}.json", json.dumps(_finite(metrics)),
             record.get("label"), record["trial_id"]))
    return len(fresh)

  # -- reading ---------------------------------------------------------------------------------

  def status_of(self, trial_ids: Sequence[str] | None = None) -> dict[str, str]:
    """``trial_id -> status`` (``pending``, ``running``, ``done``, ``failed``)."""
    rows = self._db.execute("SELECT trial_id, status FROM trials").fetchall()
    status = dict(rows)
    return status if trial_ids is None else {t: status.get(t, "unknown") for t in trial_ids}

  def calibration(self, job_id: str, fault: str, target_drop: float) -> Calibration | None:
    row = self._db.execute(
        "SELECT severity, achieved_drop, reached FROM calibrations WHERE job_id = ? AND "
        "fault = ? AND target_drop = ?", (job_id, fault, float(target_drop))).fetchone()
    return None if row is None else Calibration(row[0], row[1], bool(row[2]))

  def ledger(self) -> list[dict[str, Any]]:
    """Every trial's ledger row (config, status, attempts, completions, timings)."""
    cursor = self._db.execute(
        "SELECT trial_id, job_id, config, status, attempts, completions, duration_s, "
        "result_path, label, error FROM trials ORDER BY rowid")
    names = [c[0] for c in cursor.description]
    rows = []
    for values in cursor.fetchall():
      row = dict(zip(names, values))
      row["config"] = json.loads(row["config"])
      rows.append(row)
    return rows

  def records(self, include_pending: bool = False) -> list[dict[str, Any]]:
    """The full records of finished trials, in ledger order.

    Raises:
      StoreError: a finished trial's record file is missing or corrupted.
    """
    records = []
    for row in self.ledger():
      if row["status"] != "done":
        continue
      path = self.root / row["result_path"]
      try:
        records.append(json.loads(path.read_text()))
      except (OSError, ValueError) as error:
        raise StoreError(f"record of finished trial {row['trial_id']} ({path}) is missing or "
                         f"corrupted: {error}") from error
    return records


def _finite(value: Any) -> Any:
  """JSON-safe copy: non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
  if isinstance(value, float) and not math.isfinite(value):
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


def from_json_number(value: Any) -> Any:
  """Inverse of the non-finite encoding of trial records: ``"nan"``/``"inf"``/``"-inf"`` ->
  float, anything else unchanged."""
  return float(value) if value in ("nan", "inf", "-inf") else value


def load_results(sweep_dir: str | os.PathLike) -> "Any":
  """Loads a sweep's finished trials into a pandas DataFrame, one row per trial.

  Columns: ``trial_id``, ``job_id``, the trial config (``env``, ``variant``, ``fault``,
  ``component``, ``fault_name``, ``severity``, ``target_drop``, ``horizon``, ``policy``, ...),
  every scalar metric under its ``"group/name"`` key, ``label`` and ``label_reasons``.
  Non-finite values stored as strings are read back as floats.
  """
  import pandas as pd

  with ResultsStore.open_readonly(sweep_dir) as store:
    records = store.records()
  rows = []
  for record in records:
    row: dict[str, Any] = {"trial_id": record["trial_id"], "job_id": record["job_id"]}
    row.update(record["config"])
    for name, value in record["metrics"].items():
      if isinstance(value, list):
        continue
      row[name] = from_json_number(value)
    row["label"] = record.get("label")
    row["label_reasons"] = "; ".join(record.get("label_reasons", []))
    rows.append(row)
  return pd.DataFrame(rows)
