"""Training runs on disk: the host loop around the jitted trainer, and loading of trained runs.

A run directory holds::

  config.json       the TrainConfig and the number of seeds
  checkpoint.npz    the latest batched TrainState (atomic; see mbrl_drift.checkpoint)
  metrics.jsonl     one line per (chunk, seed): training losses and periodic evaluation
  summary.json      final evaluation per seed and timings

The jitted functions see one chunk at a time, so a run killed mid-way resumes from its last
checkpoint with ``resume=True`` and produces exactly the numbers of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rich.console import Console

from mbrl_drift import checkpoint as ckpt
from mbrl_drift.agents.base import Trainer
from mbrl_drift.config import TrainConfig
from mbrl_drift.evaluate import evaluate, outcome_summary
from mbrl_drift.progress import progress_reporter
from mbrl_drift.train import make_train

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> None:
  """Turns on JAX's persistent compilation cache (``$MBRL_DRIFT_CACHE`` or ``~/.cache``)."""
  if path is None:
    path = os.environ.get("MBRL_DRIFT_CACHE", Path.home() / ".cache" / "mbrl_drift" / "jax")
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A trained run loaded from disk.

  Attributes:
    run_dir: its directory.
    config: its configuration.
    trainer: the trainer rebuilt from the configuration (agent, env, env_params).
    state: the batched training state (the agent's own pytree), leading axis ``[num_seeds]``.
    header: the checkpoint header (progress, version).
  """

  run_dir: Path
  config: TrainConfig
  trainer: Trainer
  state: Any
  header: dict[str, Any]

  @property
  def params(self) -> dict:
    """Agent parameters with a leading ``[num_seeds]`` axis."""
    return self.state.params

  @property
  def num_seeds(self) -> int:
    return int(self.header["num_seeds"])


def _evaluation_fn(trainer: Trainer, num_episodes: int) -> Callable:
  env, env_params = trainer.env, trainer.env_params
  agent = trainer.agent.for_depth(trainer.agent.eval_axes.depth_default)
  max_steps = int(env_params.max_steps)

  def run(params, key):
    trajectories = evaluate(agent, params, env, env_params, key, num_episodes,
                            max_steps=max_steps)
    goal = getattr(env_params, "intended_goal", -1)
    return outcome_summary(trajectories, goal, getattr(env, "num_goals", 0))

  return jax.jit(jax.vmap(run))


def _rows(chunk: int, metrics: dict[str, Any], num_seeds: int) -> list[dict[str, Any]]:
  rows = []
  for seed in range(num_seeds):
    row = {"chunk": chunk, "seed": seed}
    row.update({name: float(np.asarray(value)[seed]) for name, value in metrics.items()})
    rows.append(row)
  return rows


def train_run(config: TrainConfig, num_seeds: int, out_dir: str | os.PathLike, seed: int = 0,
              resume: bool = False, progress: bool = True,
              log: Callable[[str], None] | None = None,
              max_chunks: int | None = None, init_from: str | os.PathLike | None = None,
              freeze: Sequence[str] = ()) -> dict[str, Any]:
  """Trains ``num_seeds`` seeds of one configuration in one vmapped call per chunk.

  Args:
    config: the training configuration (any registered agent).
    num_seeds: seeds trained together (``jax.vmap`` over PRNG keys).
    out_dir: the run directory (created).
    seed: base seed; seed ``i`` uses ``fold_in(key(seed), i)``.
    resume: continue from ``out_dir``'s checkpoint (its config must equal ``config``).
    progress: show progress on stderr (a live display in a terminal, one line per chunk
      otherwise).
    log: called with short status lines (e.g. ``print``).
    max_chunks: train at most this many chunks in this call, then stop as if interrupted (a
      later call with ``resume=True`` continues); ``None`` trains to the end.
    init_from: a finished run whose parameters start this one (fine-tuning; seed ``i`` starts
      from its seed ``i``, or from its only seed): the same as ``config.init_from``. It must be
      of the same agent kind and environment spaces, with parameters of the same shapes.
    freeze: component paths or patterns kept fixed during training (e.g.
      ``("world_model/encoder", "world_model/dynamics")`` to train a value function for another
      goal inside an existing world model): added to ``config.freeze``.

  Returns:
    The summary written to ``summary.json``: final evaluation per seed, env steps, timings.

  Raises:
    ValueError: ``out_dir`` already holds a different run, or a run without ``resume``; the
      base run is missing, unfinished or incompatible.
    CheckpointError: the checkpoint to resume from is corrupted or does not match.
  """
  log = log or (lambda _: None)
  if init_from is not None or freeze:
    config = dataclasses.replace(
        config, init_from=str(init_from) if init_from is not None else config.init_from,
        freeze=tuple(dict.fromkeys((*config.freeze, *freeze))))
  out = Path(out_dir)
  config_path, checkpoint_path = out / ckpt.CONFIG_NAME, out / ckpt.CHECKPOINT_NAME
  run_record = {"config": config.to_dict(), "num_seeds": num_seeds, "seed": seed,
                "config_hash": config.config_hash(),
                "init_from": config.init_from or None, "freeze": list(config.freeze)}
  if config_path.exists():
    existing = json.loads(config_path.read_text())
    if not resume:
      raise ValueError(f"{out} already holds a run; pass resume=True (--resume) to continue it or "
                       f"choose another output directory")
    if {k: existing.get(k) for k in run_record} != run_record:
      raise ValueError(f"cannot resume {out}: its config, seeds or base seed differ from the "
                       f"requested run (stored hash {existing.get('config_hash')}, requested "
                       f"{run_record['config_hash']})")
  start_time = time.time()
  trainer = make_train(config)  # validates before anything is written
  initial_params = None
  if config.init_from:
    initial_params = base_parameters(config, trainer, num_seeds)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(num_seeds))
  out.mkdir(parents=True, exist_ok=True)
  ckpt.atomic_write_json(config_path, run_record)
  init = jax.jit(jax.vmap(trainer.init))
  if initial_params is not None:
    init = jax.jit(jax.vmap(lambda key, params: trainer.init(key, params)))
    init = functools.partial(init, params=initial_params)
  run_chunk = jax.jit(jax.vmap(trainer.run_chunk))
  evaluate_fn = _evaluation_fn(trainer, config.eval_episodes)
  eval_keys = jax.random.split(jax.random.key(seed + 1), num_seeds)

  chunks_done = 0
  if resume and checkpoint_path.exists():
    template = jax.eval_shape(init, keys)
    state, header = ckpt.load_checkpoint(checkpoint_path, template)
    chunks_done = int(header["chunks_done"])
    log(f"resuming {out} after chunk {chunks_done}/{config.num_chunks}")
    # A run killed between writing a chunk's metrics and its checkpoint left rows of a chunk
    # that is trained again now: keep only the rows of checkpointed chunks.
    _truncate_metrics(out / METRICS_NAME, chunks_done)
  else:
    state = init(keys)
    (out / METRICS_NAME).unlink(missing_ok=True)

  evaluation: dict[str, Any] = {}
  last_chunk = config.num_chunks if max_chunks is None else min(config.num_chunks,
                                                                chunks_done + max_chunks)
  with progress_reporter(config.num_chunks, f"training {out.name}", unit="chunks",
                         done=chunks_done, enabled=progress,
                         console=Console(stderr=True)) as bar:
    for chunk in range(chunks_done, last_chunk):
      step = f"chunk {chunk + 1}/{config.num_chunks}"
      bar.status("chunk", f"{step}: training {num_seeds} seed{'s' * (num_seeds > 1)}")
      state, metrics = run_chunk(state)
      bar.status("chunk", f"{step}: evaluating")
      evaluation = evaluate_fn(state.params, _fold_in(eval_keys, chunk))
      metrics = {**metrics, **{f"eval/{k.split('/', 1)[1]}": v for k, v in evaluation.items()}}
      with open(out / METRICS_NAME, "a") as f:
        for row in _rows(chunk, metrics, num_seeds):
          f.write(json.dumps(row) + "\n")
      _kill_point("metrics_written", chunk, out)
      ckpt.save_checkpoint(checkpoint_path, state, {
          "chunks_done": chunk + 1, "num_seeds": num_seeds, "config_hash": config.config_hash(),
          "version": _version()})
      _kill_point("checkpoint_saved", chunk, out)
      bar.done("chunk", f"{step}: greedy success per seed "
                        f"{_per_seed(evaluation['outcome/intended_success'])}, return "
                        f"{_per_seed(evaluation['outcome/mean_return'])}", advance=1)
      chunks_done = chunk + 1

  if not evaluation:  # resumed a finished run: evaluate its final state
    evaluation = evaluate_fn(state.params, _fold_in(eval_keys, config.num_chunks - 1))
  summary = {
      "run_dir": str(out),
      "env": config.env,
      "agent": config.agent_kind,
      "num_seeds": num_seeds,
      "chunks_done": chunks_done,
      "finished": chunks_done == config.num_chunks,
      "env_steps_per_seed": int(np.asarray(state.env_steps)[0]),
      "wall_time_s": round(time.time() - start_time, 2),
      "final_eval": {name: np.asarray(value).round(4).tolist()
                     for name, value in evaluation.items()},
  }
  ckpt.atomic_write_json(out / SUMMARY_NAME, summary)
  return summary


def _per_seed(values: Any) -> str:
  """``"1.00 0.97 ..."``: up to 8 seeds' values."""
  values = np.ravel(np.asarray(values))
  return " ".join(f"{v:.2f}" for v in values[:8]) + (" ..." if values.size > 8 else "")


def base_parameters(config: TrainConfig, trainer: Trainer, num_seeds: int) -> dict:
  """The parameters of ``config.init_from`` that start a fine-tuning run, ``[num_seeds, ...]``.

  Raises:
    ValueError: the base run is missing or unfinished, or is of another agent kind,
      environment or observation/action space, or its parameters do not fit this run's agent
      (each message names what differs and the valid choice).
  """
  base_dir = Path(config.init_from)
  if not (base_dir / ckpt.CONFIG_NAME).exists():
    raise ValueError(f"cannot start from {base_dir}: it holds no run (no {ckpt.CONFIG_NAME}); "
                     f"train the base first (mbrl-drift train --out {base_dir} ...)")
  if not is_finished(base_dir):
    raise ValueError(f"cannot start from {base_dir}: the base run is unfinished; finish it with "
                     f"`mbrl-drift train --out {base_dir} --resume`")
  base = load_run(base_dir)
  if base.config.agent_kind != config.agent_kind:
    raise ValueError(f"cannot start a {config.agent_kind!r} run from {base_dir}, a "
                     f"{base.config.agent_kind!r} run; use a base of agent kind "
                     f"{config.agent_kind!r}")
  if base.config.env != config.env:
    raise ValueError(f"cannot start a run of {config.env} from {base_dir}, a run of "
                     f"{base.config.env}; use a base trained on {config.env}")
  if base.trainer.agent.spec != trainer.agent.spec:
    raise ValueError(f"cannot start from {base_dir}: its observation/action spaces "
                     f"{base.trainer.agent.spec} differ from this run's {trainer.agent.spec}")
  if base.num_seeds not in (1, num_seeds):
    raise ValueError(f"cannot start {num_seeds} seeds from {base_dir}, which has "
                     f"{base.num_seeds}; use a run with as many seeds, or with one")
  template = jax.eval_shape(trainer.agent.init, jax.random.key(0))
  expected = {jax.tree_util.keystr(path): leaf.shape
              for path, leaf in jax.tree_util.tree_leaves_with_path(template)}
  for path, leaf in jax.tree_util.tree_leaves_with_path(base.params):
    name = jax.tree_util.keystr(path)
    if expected.get(name, leaf.shape[1:]) != leaf.shape[1:] or name not in expected:
      raise ValueError(f"cannot start from {base_dir}: its parameter {name} of shape "
                       f"{leaf.shape[1:]} does not fit this run's agent "
                       f"({expected.get(name, 'no such parameter')}); the agent configs differ")
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_seeds, *x.shape[1:])), base.params)


#: ``$MBRL_DRIFT_KILL_POINT=NAME:CHUNK[:TEXT]`` SIGKILLs the training process at that named point
#: of that chunk (``metrics_written``: after the chunk's metric rows, before its checkpoint;
#: ``checkpoint_saved``: after its checkpoint), in runs whose directory contains ``TEXT`` (all
#: runs without it): fixed, repeatable kill points for tests.
KILL_POINT_ENV = "MBRL_DRIFT_KILL_POINT"


def _kill_point(name: str, chunk: int, run_dir: Path) -> None:
  point, _, where = os.environ.get(KILL_POINT_ENV, "").partition(":")
  wanted_chunk, _, text = where.partition(":")
  if point == name and wanted_chunk == str(chunk) and text in str(run_dir):
    os.kill(os.getpid(), signal.SIGKILL)


def _truncate_metrics(path: Path, chunks_done: int) -> None:
  """Keeps the metric rows of chunks before ``chunks_done`` (and drops a torn last line)."""
  if not path.exists():
    return
  kept = []
  for line in path.read_text().splitlines():
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict) and row.get("chunk", chunks_done) < chunks_done:
      kept.append(line)
  ckpt.atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def read_run_record(run_dir: str | os.PathLike) -> tuple[TrainConfig, dict[str, Any]]:
  """The stored config of a run and its record (``config.json``: config, seeds, base seed).

  Raises:
    CheckpointError: the directory holds no run, or its record is unreadable or invalid.
  """
  path = Path(run_dir) / ckpt.CONFIG_NAME
  if not path.exists():
    raise ckpt.CheckpointError(f"{run_dir} holds no run (no {ckpt.CONFIG_NAME})")
  try:
    record = json.loads(path.read_text())
    config = TrainConfig.from_dict(record["config"])
    record["num_seeds"] = int(record["num_seeds"])
    if not config.freeze and record.get("freeze"):  # runs stored before freeze was a field
      config = dataclasses.replace(config, freeze=tuple(record["freeze"]))
  except (ValueError, KeyError, TypeError) as error:
    raise ckpt.CheckpointError(f"{path} is corrupted or invalid: {error}") from error
  return config, record


def _fold_in(keys: jax.Array, data: int) -> jax.Array:
  return jax.vmap(lambda k: jax.random.fold_in(k, data))(keys)


def _version() -> str:
  from mbrl_drift import __version__
  return __version__


def is_finished(run_dir: str | os.PathLike) -> bool:
  """Whether ``run_dir`` holds a run trained to its last chunk (a readable ``summary.json``
  that says so)."""
  try:
    return bool(json.loads((Path(run_dir) / SUMMARY_NAME).read_text()).get("finished"))
  except (OSError, ValueError, AttributeError):
    return False


def load_run(run_dir: str | os.PathLike) -> TrainedRun:
  """Loads a trained run (config and latest checkpoint) from its directory.

  Raises:
    CheckpointError: the directory holds no run, or its checkpoint is corrupted or does not
      match the stored config.
  """
  run_dir = Path(run_dir)
  config, record = read_run_record(run_dir)
  trainer = make_train(config)
  keys = jax.random.split(jax.random.key(0), record["num_seeds"])
  template = jax.eval_shape(jax.vmap(trainer.init), keys)
  state, header = ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT_NAME, template)
  return TrainedRun(run_dir=run_dir, config=config, trainer=trainer, state=state, header=header)
