"""Sweep reports: a Markdown page and a self-contained HTML page per sweep, figures first.

:func:`write_report` turns a sweep's trial records into ``report.md``, ``report.html`` (figures
embedded as base64 PNG, so the page can be mailed alone) and ``figures/*.png``. The page opens
with the figures (coherence map, goal reach, sampled trajectories, planning-horizon curves,
training curves), then the experiment's own Markdown (its question and answer), then one table
row per condition (:func:`headline_table`).

A trial record is ``{"config": {"env", "env_kwargs", "fault", "severity", "target_drop",
"horizon", "policy", ...}, "metrics": {"group/name": value}, "label": str, "label_reasons":
[str], "sample": {"state_index": [[...]], ...}, "run_dir": str}``. Any key may be missing: tables
then show "–" and figures leave the gap blank. Non-finite numbers show as "nan".

Example::

  paths = report.write_report("sweeps/faults", records, preamble="**Question.** ...")
  print(report.format_markdown_table(report.headline_table(records)))
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import html
import json
import math
import re
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure  # no pyplot: figures render off-screen with Agg
from matplotlib.ticker import MaxNLocator

import envs
from envs.goal_grid import GOAL_COLOURS

Record = Mapping[str, Any]

MISSING = "–"
INTACT = "intact"
HEADLINE_COLUMNS = (
    "fault", "level", "horizon", "policy", "success", "success_iqm", "success_iqm_ci",
    "success_seed_range", "coherence", "coherence_ci", "coherence_seed_range", "inferred_goal", "off_target", "timeout", "spl_inferred",
    "nonfinite_episodes", "label", "reasons")
NON_GOAL_OUTCOMES = ("other", "timeout")  # outcome/p_other (hazards), outcome/p_timeout
_REACH_KEY = re.compile(r"^outcome/p_(?P<name>[^/]+?)(?<!_ci_low)(?<!_ci_high)$")
_DPI = 100
_MAX_PANELS = 12
_OUTCOME_COLOURS = {"other": "0.3", "timeout": "0.8"}


@dataclasses.dataclass(frozen=True)
class ReportPaths:
  """Files written by :func:`write_report`.

  Attributes:
    markdown: ``report.md`` (figures referenced as ``figures/<name>.png``).
    html: ``report.html`` with the figures embedded.
    figures: figure name (``"coherence_map"``, ``"goal_reach"``, ``"trajectories"``,
      ``"horizon"``, ``"training"``) -> PNG path, for the figures the records allowed.
  """

  markdown: Path
  html: Path
  figures: dict[str, Path]


@dataclasses.dataclass(frozen=True)
class CoherenceMatrix:
  """The numbers behind one panel of the coherence map.

  Attributes:
    horizon: planning horizon of the panel (``None`` when the records have none).
    policy: action selection of the panel.
    faults: ``F`` row labels (fault specs, ``"intact"`` first, then in order of appearance).
    levels: ``L`` column labels: severities (``"0.5"``) or matched-damage targets
      (``"drop 0.5"``), severities first, each in increasing order.
    coherence: ``[F, L]`` ``goal/coherence`` (mean over the trials of a cell); NaN where no
      trial has a value.
    success: ``[F, L]`` ``outcome/intended_success``, likewise.
  """

  horizon: int | None
  policy: str | None
  faults: tuple[str, ...]
  levels: tuple[str, ...]
  coherence: np.ndarray
  success: np.ndarray


# -- reading records ---------------------------------------------------------------------------

def _section(record: Record, name: str) -> Mapping[str, Any]:
  """``record[name]`` when it is a dict, else an empty one."""
  value = record.get(name)
  return value if isinstance(value, Mapping) else {}


def _config(record: Record) -> Mapping[str, Any]:
  return _section(record, "config")


def _metrics(record: Record) -> Mapping[str, Any]:
  return _section(record, "metrics")


def _number(value: Any) -> float | int | None:
  """A scalar as int or float (NaN kept); ``None`` for missing or non-scalar values."""
  if isinstance(value, (bool, np.bool_)) or value is None:
    return None
  if isinstance(value, (int, np.integer)):
    return int(value)
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


def _metric(record: Record, key: str) -> float | int | None:
  return _number(_metrics(record).get(key))


def _float(value: Any) -> float:
  """A scalar as float, NaN when missing or non-finite."""
  number = _number(value)
  return float(number) if number is not None and math.isfinite(number) else math.nan


def _value(record: Record, key: str) -> float:
  """A metric as float, NaN when missing or non-finite."""
  return _float(_metrics(record).get(key))


def _interval(record: Record, key: str) -> tuple[Any, Any] | None:
  """The confidence interval of ``key``: over seeds (``key/ci_low``, from 10 seeds up) or the
  older per-episode one (``key_ci_low``); ``None`` when the record has neither."""
  for low_key, high_key in ((key + "/ci_low", key + "/ci_high"),
                            (key + "_ci_low", key + "_ci_high")):
    low, high = _metric(record, low_key), _metric(record, high_key)
    if low is not None or high is not None:
      return (low, high)
  return None


def _seed_range(record: Record, key: str) -> tuple[Any, Any] | None:
  """The range over seeds of ``key`` (``key/min`` .. ``key/max``, or ``seeds/<x>_min`` ..
  ``_max`` for ``seeds/<x>_iqm``); ``None`` when the record has none."""
  base = key.removesuffix("_iqm")
  for low_key, high_key in ((key + "/min", key + "/max"), (base + "_min", base + "_max")):
    low, high = _metric(record, low_key), _metric(record, high_key)
    if low is not None and high is not None:
      return (low, high)
  return None


def _nanmean(values: Sequence[float]) -> float:
  """Mean of the non-NaN values; NaN when there are none."""
  finite = [v for v in values if not math.isnan(v)]
  return float(np.mean(finite)) if finite else math.nan


def _fault(record: Record) -> str:
  config = _config(record)
  return str(config.get("fault") or config.get("component") or MISSING)


def _level(record: Record) -> tuple[tuple[int, float], str]:
  """Sort key and label of a trial's damage: its matched-damage target, else its severity."""
  config = _config(record)
  drop, severity = _number(config.get("target_drop")), _number(config.get("severity"))
  if drop is not None:
    return (1, drop), f"drop {drop:g}"
  if severity is not None:
    return (0, severity), f"{severity:g}"
  return (2, 0.0), MISSING


def _horizon(record: Record) -> int | None:
  horizon = _number(_config(record).get("horizon"))
  return int(horizon) if horizon is not None and abs(horizon) < 2**31 else None  # NaN too


def _policy(record: Record) -> str | None:
  policy = _config(record).get("policy")
  return None if policy is None else str(policy)


def _panel(record: Record) -> tuple[int | None, str | None]:
  return _horizon(record), _policy(record)


def _fault_order(records: Sequence[Record]) -> list[str]:
  return sorted(dict.fromkeys(map(_fault, records)), key=lambda fault: fault != INTACT)


def _panels(records: Sequence[Record]) -> list[tuple[int | None, str | None]]:
  """(horizon, policy) combinations: horizons ascending, policies in order of appearance."""
  return sorted(dict.fromkeys(map(_panel, records)), key=lambda p: (p[0] is None, p[0] or 0))


def _sorted(records: Sequence[Record]) -> list[Record]:
  faults, panels = _fault_order(records), _panels(records)
  return sorted(records, key=lambda r: (faults.index(_fault(r)), _level(r)[0],
                                        panels.index(_panel(r))))


def _goal_names(records: Sequence[Record]) -> list[str]:
  """Goal names from ``outcome/p_<goal>`` keys, in the order the metrics list them (goal index)."""
  names: dict[str, None] = {}
  for record in records:
    for key in _metrics(record):
      match = _REACH_KEY.match(key)
      if match and match["name"] not in NON_GOAL_OUTCOMES:
        names.setdefault(match["name"])
  return list(names)


# -- tables ------------------------------------------------------------------------------------

def format_value(value: Any) -> str:
  """Formats a table cell: ``None`` -> "–", non-finite -> "nan", floats with two decimals,
  ``(low, high)`` intervals as ``[low, high]``."""
  if value is None or (isinstance(value, str) and not value):
    return MISSING
  if isinstance(value, str):
    return value
  if isinstance(value, tuple) and len(value) == 2:
    return f"[{format_value(value[0])}, {format_value(value[1])}]"
  number = _number(value)
  if number is None:
    return str(value)
  if isinstance(number, int):
    return str(number)
  return f"{number:.2f}" if math.isfinite(number) else "nan"


def headline_table(records: Sequence[Record]) -> list[dict[str, Any]]:
  """One row per condition (fault, severity or target, horizon, policy), sorted.

  Args:
    records: trial records.

  Returns:
    Dicts with the keys :data:`HEADLINE_COLUMNS`: ``success`` is the mean over seeds of the
    intended success, ``success_iqm`` its interquartile mean across seeds, ``*_ci`` bootstrap
    intervals ``(low, high)`` (over seeds only from 10 seeds up), ``*_seed_range`` the lowest and
    highest seed's value, ``coherence`` the goal coherence C, ``inferred_goal`` the goal
    name, ``off_target`` the largest share of episodes at one non-intended goal, ``timeout``
    the timeout share, ``spl_inferred`` the SPL toward the inferred goal, ``reasons`` the
    label's reasons joined by "; ". Values the record lacks are ``None``.
  """
  goals = _goal_names(records)
  rows = []
  for record in _sorted(records):
    per_seed = _metrics(record).get("outcome/intended_success/per_seed")
    success = (_nanmean([_float(v) for v in per_seed]) if isinstance(per_seed, (list, tuple))
               and per_seed else _metric(record, "outcome/intended_success"))
    inferred = _metric(record, "goal/inferred_goal")
    goal = None
    if inferred is not None and math.isfinite(inferred):
      goal = goals[int(inferred)] if 0 <= int(inferred) < len(goals) else str(int(inferred))
    timeout = _metric(record, "outcome/p_timeout")
    reasons = record.get("label_reasons")
    rows.append({
        "fault": _fault(record), "level": _level(record)[1], "horizon": _horizon(record),
        "policy": _policy(record), "success": success,
        "success_iqm": _metric(record, "seeds/intended_success_iqm"),
        "success_iqm_ci": _interval(record, "seeds/intended_success_iqm"),
        "success_seed_range": _seed_range(record, "seeds/intended_success_iqm"),
        "coherence": _metric(record, "goal/coherence"),
        "coherence_ci": _interval(record, "goal/coherence"),
        "coherence_seed_range": _seed_range(record, "goal/coherence"),
        "inferred_goal": goal,
        "off_target": _metric(record, "outcome/off_target_mass"),
        "timeout": _metric(record, "outcome/timeout") if timeout is None else timeout,
        "spl_inferred": None if goal is None else _metric(record, f"outcome/spl_{goal}"),
        "nonfinite_episodes": _metric(record, "nonfinite/episodes"),
        "label": record.get("label"),
        "reasons": "; ".join(map(str, reasons)) if isinstance(reasons, (list, tuple)) else reasons,
    })
  return rows


def format_markdown_table(rows: Sequence[Mapping[str, Any]],
                          columns: Sequence[str] | None = None) -> str:
  """A GitHub-flavoured Markdown table; cells go through :func:`format_value`.

  Args:
    rows: one dict per row (e.g. :func:`headline_table`).
    columns: keys to show, in order (also the header); default: the keys of the first row
      (:data:`HEADLINE_COLUMNS` without rows).

  Returns:
    The table, one line per row plus the header and separator lines.
  """
  columns = list(columns if columns is not None else (rows[0] if rows else HEADLINE_COLUMNS))

  def cell(value: Any) -> str:
    return format_value(value).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
  lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
  return "\n".join(lines)


# -- figures -----------------------------------------------------------------------------------

def coherence_matrix(records: Sequence[Record], horizon: int | None = None,
                     policy: str | None = None) -> CoherenceMatrix:
  """The fault x level matrix of coherence and intended success drawn in the coherence map.

  Args:
    records: trial records.
    horizon: planning horizon of the panel; ``None`` takes the first (smallest) one.
    policy: action selection of the panel; ``None`` takes the first one.

  Returns:
    A :class:`CoherenceMatrix` (empty when no record matches).
  """
  panels = [p for p in _panels(records)
            if (horizon is None or p[0] == horizon) and (policy is None or p[1] == policy)]
  if not panels:
    return CoherenceMatrix(horizon, policy, (), (), np.zeros((0, 0)), np.zeros((0, 0)))
  selected = [r for r in records if _panel(r) == panels[0]]
  faults = _fault_order(selected)
  levels = [label for _, label in sorted(dict.fromkeys(map(_level, selected)))]
  coherence = np.full((len(faults), len(levels)), np.nan)
  success = np.full_like(coherence, np.nan)
  for i, fault in enumerate(faults):
    for j, level in enumerate(levels):
      cell = [r for r in selected if _fault(r) == fault and _level(r)[1] == level]
      coherence[i, j] = _nanmean([_value(r, "goal/coherence") for r in cell])
      success[i, j] = _nanmean([_value(r, "outcome/intended_success") for r in cell])
  return CoherenceMatrix(*panels[0], tuple(faults), tuple(levels), coherence, success)


def _figure(width: float, height: float) -> Figure:
  return Figure(figsize=(min(width, 16.0), min(max(height, 2.0), 24.0)), dpi=_DPI,
                layout="constrained")


def _grid(figure: Figure, count: int, max_columns: int) -> list[Any]:
  columns = min(max_columns, count)
  axes = list(figure.subplots(-(-count // columns), columns, squeeze=False).ravel())
  for unused in axes[count:]:
    unused.set_visible(False)
  return axes[:count]


def _plot_coherence_map(records: Sequence[Record], notes: list[str]) -> Figure | None:
  matrices = [coherence_matrix(records, *panel) for panel in _panels(records)]
  if not any(np.isfinite(m.coherence).any() or np.isfinite(m.success).any() for m in matrices):
    notes.append("No trial has goal/coherence or outcome/intended_success.")
    return None
  rows, columns = max(len(m.faults) for m in matrices), max(len(m.levels) for m in matrices)
  per_row = min(3, len(matrices))
  figure = _figure(per_row * (2.5 + 0.7 * columns) + 1.5,
                   -(-len(matrices) // per_row) * (1.3 + 0.4 * rows))
  axes = _grid(figure, len(matrices), per_row)
  cmap = colormaps["viridis"].with_extremes(bad="0.85")
  for ax, matrix in zip(axes, matrices):
    image = ax.imshow(np.ma.masked_invalid(matrix.coherence), cmap=cmap, vmin=0.0, vmax=1.0,
                      aspect="auto")
    for (i, j), value in np.ndenumerate(matrix.success):
      if not math.isnan(value):
        ax.text(j, i, format_value(value), ha="center", va="center", fontsize=8,
                color="white" if matrix.coherence[i, j] < 0.6 else "black")  # NaN: grey cell
    ax.set_xticks(range(len(matrix.levels)), matrix.levels, fontsize=8)
    ax.set_yticks(range(len(matrix.faults)), matrix.faults, fontsize=8)
    drops = [level.startswith("drop") for level in matrix.levels]
    ax.set_xlabel("matched damage (target drop)" if all(drops) else
                  "severity" if not any(drops) else "severity / target drop")
    ax.set_title(f"horizon {format_value(matrix.horizon)}, {format_value(matrix.policy)}",
                 fontsize=9)
  figure.colorbar(image, ax=axes, label="coherence C", shrink=0.9)
  return figure


def _plot_goal_reach(records: Sequence[Record], notes: list[str]) -> Figure | None:
  goals = _goal_names(records)
  categories = goals + [name for name in NON_GOAL_OUTCOMES
                        if any(f"outcome/p_{name}" in _metrics(r) for r in records)]
  if not categories:
    notes.append("No trial has goal-reach shares (outcome/p_ metrics).")
    return None
  colours = [tuple(c / 255 for c in GOAL_COLOURS[k % len(GOAL_COLOURS)])
             for k in range(len(goals))] + [_OUTCOME_COLOURS[n] for n in categories[len(goals):]]
  panels = _panels(records)
  per_panel = max(sum(_panel(r) == panel for r in records) for panel in panels)
  per_row = min(3, len(panels))
  figure = _figure(per_row * 5.0, -(-len(panels) // per_row) * (0.8 + 0.22 * per_panel) + 0.6)
  for ax, panel in zip(_grid(figure, len(panels), per_row), panels):
    selected = [r for r in _sorted(records) if _panel(r) == panel]
    positions, left = np.arange(len(selected)), np.zeros(len(selected))
    for name, colour in zip(categories, colours):
      shares = np.clip(np.nan_to_num([_value(r, f"outcome/p_{name}") for r in selected]), 0, 1)
      ax.barh(positions, shares, left=left, color=colour, label=name)
      left += shares
    ax.set_yticks(positions, [f"{_fault(r)} @ {_level(r)[1]}" for r in selected], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("share of episodes")
    ax.set_title(f"horizon {format_value(panel[0])}, {format_value(panel[1])}", fontsize=9)
  figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="outside upper center",
                ncols=min(len(categories), 8), fontsize=8)
  return figure


def _trajectory_records(records: Sequence[Record]) -> list[Record]:
  """Intact plus, per fault, its most damaged condition, at the first (horizon, policy)."""
  panels = _panels(records)
  first = [r for r in records if _panel(r) == panels[0]] if panels else []
  return [max((r for r in first if _fault(r) == fault), key=lambda r: _level(r)[0])
          for fault in _fault_order(first)]


def _environment(record: Record, cache: dict[str, Any]) -> Any:
  """``(env, env_params)`` of a record, or the error that prevented building it."""
  config = _config(record)
  key = repr((config.get("env"), config.get("env_kwargs")))
  if key not in cache:
    try:
      cache[key] = envs.make(config.get("env"), **dict(config.get("env_kwargs") or {}))
    except Exception as error:  # an unknown or broken environment must not stop the report
      cache[key] = error
  return cache[key]


def _plot_trajectories(records: Sequence[Record], notes: list[str]) -> Figure | None:
  images, titles, cache = [], [], {}
  for record in _trajectory_records(records):
    title = f"{_fault(record)} @ {_level(record)[1]}: {format_value(record.get('label'))}"
    built = _environment(record, cache)
    if isinstance(built, Exception):
      notes.append(f"Trajectories skipped for {title} (environment: {built}).")
      continue
    if not hasattr(built[0], "render_trajectory"):
      notes.append(f"Trajectory pictures skipped: {_config(record).get('env')} has no "
                   "render_trajectory.")
      continue
    try:
      indices = np.asarray(_section(record, "sample").get("state_index", []), np.int64)
      if indices.size == 0:
        notes.append(f"No sampled episodes for {title}.")
        continue
      images.append(built[0].render_trajectory(state_indices=indices, params=built[1]))
      titles.append(title)
    except (TypeError, ValueError, OverflowError) as error:  # ragged or misshapen episodes
      notes.append(f"Trajectories skipped for {title}: {error}")
  if not images:
    return None
  notes.append("Drawn: " + "; ".join(titles) + ".")
  per_row = min(4, len(images))
  aspect = max(image.shape[0] / image.shape[1] for image in images)
  figure = _figure(per_row * 3.2, -(-len(images) // per_row) * (3.2 * aspect + 0.5))
  for ax, image, title in zip(_grid(figure, len(images), per_row), images, titles):
    ax.imshow(image, interpolation="nearest")
    ax.set_title(textwrap.fill(title, 38), fontsize=7)
    ax.axis("off")
  return figure


def _plot_horizon_curves(records: Sequence[Record], notes: list[str]) -> Figure | None:
  horizons = sorted({h for h in map(_horizon, records) if h is not None})
  if len(horizons) < 2:
    notes.append(f"Only one planning horizon ({format_value(horizons[0] if horizons else None)})"
                 ": no horizon curves.")
    return None
  policies = list(dict.fromkeys(map(_policy, records)))
  figure = _figure(12.0, 3.0 * len(policies) + 0.8)
  axes = figure.subplots(len(policies), 2, squeeze=False)
  palette = colormaps["tab10"]
  for row, policy in enumerate(policies):
    for column, (key, name) in enumerate([("outcome/intended_success", "intended success"),
                                          ("goal/coherence", "coherence C")]):
      ax, line = axes[row, column], 0
      for index, fault in enumerate(_fault_order(records)):
        trials = [r for r in records if _fault(r) == fault and _policy(r) == policy]
        levels = sorted(dict.fromkeys(map(_level, trials)))
        if len(levels) > 1:  # severity 0 repeats the intact agent; show up to 3 levels
          levels = [lv for lv in levels if lv[0] != (0, 0.0)] or levels
          levels = [levels[i] for i in sorted({round(x) for x in
                                               np.linspace(0, len(levels) - 1, 3)})]
        for rank, level in enumerate(levels):
          points = sorted(((_horizon(r), r) for r in trials if _level(r) == level
                           and _horizon(r) is not None), key=lambda point: point[0])
          if not points:
            continue
          xs = np.array([h for h, _ in points]) + 0.03 * (line % 5 - 2)  # keep bars apart
          line += 1
          ys, low, high = (np.array([_value(r, key + suffix) for _, r in points])
                           for suffix in ("", "_ci_low", "_ci_high"))
          errors = np.nan_to_num(np.clip(np.stack([ys - low, high - ys]), 0.0, None))
          ax.errorbar(xs, ys, yerr=errors, color=palette(index % 10), marker="o", capsize=2,
                      linestyle=("-", "--", ":")[rank % 3], label=f"{fault} @ {level[1]}")
      ax.set_xticks(horizons)
      ax.set_ylim(-0.05, 1.05)
      ax.set_xlabel("planning horizon")
      ax.set_ylabel(name)
      ax.set_title(format_value(policy), fontsize=9)
  handles, labels = axes[0, 0].get_legend_handles_labels()  # the same lines in every panel
  figure.legend(handles, labels, loc="outside right upper", fontsize=7)
  return figure


def _training_rows(path: Path) -> list[dict[str, Any]]:
  """The rows of a run's ``metrics.jsonl`` that carry ``eval/intended_success``."""
  rows = []
  with contextlib.suppress(OSError):
    for line in path.read_text().splitlines():
      with contextlib.suppress(json.JSONDecodeError):
        rows.append(json.loads(line))
  return [row for row in rows
          if isinstance(row, dict) and _number(row.get("eval/intended_success")) is not None]


def _plot_training(sweep_dir: Path, records: Sequence[Record],
                   notes: list[str]) -> Figure | None:
  run_dirs = list(dict.fromkeys(str(r["run_dir"]) for r in records if r.get("run_dir")))
  curves = {d: rows for d in run_dirs if (rows := _training_rows(sweep_dir / d / "metrics.jsonl"))}
  if len(curves) < len(run_dirs):
    notes.append(f"{len(run_dirs) - len(curves)} of {len(run_dirs)} runs have no training "
                 "metrics (metrics.jsonl with eval/intended_success).")
  if not curves:
    if not run_dirs:
      notes.append("No trial names its run directory.")
    return None
  if len(curves) > _MAX_PANELS:
    notes.append(f"Training curves of the first {_MAX_PANELS} of {len(curves)} runs.")
  shown = list(curves)[:_MAX_PANELS]
  per_row = min(4, len(shown))
  figure = _figure(per_row * 3.5, -(-len(shown) // per_row) * 2.6)
  for ax, run_dir in zip(_grid(figure, len(shown), per_row), shown):
    by_seed: dict[Any, list[tuple[float, float]]] = {}
    for index, row in enumerate(curves[run_dir]):
      chunk = _number(row.get("chunk"))
      by_seed.setdefault(str(row.get("seed", 0)), []).append(
          (index if chunk is None else chunk, float(row["eval/intended_success"])))
    for seed, points in by_seed.items():
      ax.plot(*zip(*sorted(points)), marker=".", label=f"seed {seed}")
    ax.set_ylim(-0.05, 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("chunk")
    ax.set_ylabel("eval success")
    ax.set_title(Path(run_dir).name[:16], fontsize=8)
    ax.legend(fontsize=6)
  return figure


# -- documents ---------------------------------------------------------------------------------

# name -> (heading, caption), in the order the report shows them
_FIGURES = {
    "coherence_map": ("Coherence map", "Rows: faults; columns: severity or matched-damage "
                      "target; colour: coherence C (goal/coherence; 0 aimless, 1 fully "
                      "goal-directed); numbers: intended success; grey: no value."),
    "goal_reach": ("Goal reach", "Share of episodes ending at each goal, at a hazard (other) "
                   "or in a timeout."),
    "trajectories": ("Trajectories", "Sampled episodes (one seed) of the intact agent and of "
                     "each fault at its largest damage; the intended goal is framed."),
    "horizon": ("Planning horizon", "Intended success and coherence against the planning "
                "horizon, with bootstrap intervals where available."),
    "training": ("Training curves", "Evaluation success during training, per chunk and seed."),
}


def _markdown_to_html(text: str) -> str:
  try:
    from markdown_it import MarkdownIt
  except ImportError:  # plain paragraphs without it
    return "".join(f"<p>{html.escape(p)}</p>\n" for p in re.split(r"\n\s*\n", text) if p.strip())
  return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
  head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
  body = "".join("<tr>" + "".join(f"<td>{html.escape(format_value(row.get(c)))}</td>"
                                  for c in columns) + "</tr>\n" for row in rows)
  return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _render(blocks: Sequence[tuple], figures: Mapping[str, Path], title: str
            ) -> tuple[str, str]:
  """Markdown and HTML of the report's blocks: ``("heading", level, text)``, ``("figure",
  name)``, ``("note", text)``, ``("rule",)``, ``("markdown", text)``, ``("table", rows,
  columns)``."""
  markdown, body = [], []
  for kind, *args in blocks:
    if kind == "heading":
      level, text = args
      markdown.append(f"{'#' * level} {text}")
      body.append(f"<h{level}>{html.escape(text)}</h{level}>")
    elif kind == "figure":
      name, (heading, caption) = args[0], _FIGURES[args[0]]
      markdown.append(f"![{heading}](figures/{name}.png)\n\n*{caption}*")
      data = base64.b64encode(figures[name].read_bytes()).decode("ascii")
      body.append(f'<figure><img alt="{html.escape(heading)}" '
                  f'src="data:image/png;base64,{data}">'
                  f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    elif kind == "note":
      markdown.append(f"*{args[0]}*")
      body.append(f'<p class="note">{html.escape(args[0])}</p>')
    elif kind == "rule":
      markdown.append("---")
      body.append("<hr>")
    elif kind == "markdown":
      markdown.append(args[0].strip())
      body.append(_markdown_to_html(args[0]))
    elif kind == "table":
      markdown.append(format_markdown_table(*args))
      body.append(_html_table(*args))
  style = ("body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}"
           "img{max-width:100%}table{border-collapse:collapse;font-size:13px}"
           "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
           ".note{color:#555;font-style:italic}figcaption{color:#444;font-size:13px}")
  page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
          f"</title><style>{style}</style></head>\n<body>\n" + "\n".join(body)
          + "\n</body></html>\n")
  return "\n\n".join(markdown) + "\n", page


def write_report(sweep_dir: str | Path, records: Sequence[Record],
                 out_dir: str | Path | None = None, title: str = "Sweep report",
                 preamble: str = "", thresholds_note: str | None = None) -> ReportPaths:
  """Writes the report of a sweep: figures, then ``preamble``, then the condition table.

  Args:
    sweep_dir: the sweep directory; records' ``run_dir`` paths are relative to it.
    records: trial records (see the module docstring); not modified.
    out_dir: output directory (default ``sweep_dir / "report"``); created.
    title: the page title.
    preamble: Markdown placed after the figures (the experiment's question and answer).
    thresholds_note: Markdown describing the failure-label thresholds, placed after the table.

  Returns:
    :class:`ReportPaths` of ``report.md``, ``report.html`` and the figure PNGs. Figures the
    records cannot support are left out (with a note in the report) and their stale PNGs
    removed.
  """
  sweep_dir = Path(sweep_dir)
  out = sweep_dir / "report" if out_dir is None else Path(out_dir)
  (out / "figures").mkdir(parents=True, exist_ok=True)
  records = list(records)
  plots = {"coherence_map": _plot_coherence_map, "goal_reach": _plot_goal_reach,
           "trajectories": _plot_trajectories, "horizon": _plot_horizon_curves,
           "training": functools.partial(_plot_training, sweep_dir)}
  blocks: list[tuple] = [("heading", 1, title), ("heading", 2, "Figures")]
  figures: dict[str, Path] = {}
  for name, (heading, _) in _FIGURES.items():
    notes: list[str] = []
    figure = plots[name](records, notes) if records else None
    path = out / "figures" / f"{name}.png"
    path.unlink(missing_ok=True)
    blocks.append(("heading", 3, heading))
    if figure is not None:
      figure.savefig(path, dpi=_DPI)
      figures[name] = path
      blocks.append(("figure", name))
    if figure is None and not notes:
      notes.append("No trials to draw.")
    blocks += [("note", note) for note in dict.fromkeys(notes)]
  if preamble.strip():
    blocks += [("rule",), ("markdown", preamble)]
  blocks += [("heading", 2, "Conditions"), ("table", headline_table(records), HEADLINE_COLUMNS)]
  if thresholds_note:
    blocks += [("heading", 3, "Failure-label thresholds"), ("markdown", thresholds_note)]
  markdown, page = _render(blocks, figures, title)
  paths = ReportPaths(markdown=out / "report.md", html=out / "report.html", figures=figures)
  paths.markdown.write_text(markdown, encoding="utf-8")
  paths.html.write_text(page, encoding="utf-8")
  return paths


__all__ = [
    "HEADLINE_COLUMNS",
    "CoherenceMatrix",
    "ReportPaths",
    "coherence_matrix",
    "format_markdown_table",
    "format_value",
    "headline_table",
    "write_report",
]
