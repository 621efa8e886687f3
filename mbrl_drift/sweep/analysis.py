"""Analysis of stored trial records."""

from __future__ import annotations

import copy
from typing import Any, Sequence

from mbrl_drift.metrics import FailureThresholds, classify_failure
from mbrl_drift.sweep.spec import INTACT
from mbrl_drift.sweep.store import from_json_number


def relabel(records: Sequence[dict[str, Any]], thresholds: FailureThresholds | None = None
            ) -> list[dict[str, Any]]:
  """Failure labels of stored trials under (possibly new) thresholds.

  Each trial is judged against the intact trial of the same job, horizon and action selection:
  the same agent, episodes and random numbers without the fault, which is the reference the
  sweep itself labelled with.

  Args:
    records: trial records (``ResultsStore.records()``).
    thresholds: the thresholds (defaults of :class:`FailureThresholds` when ``None``).

  Returns:
    Copies of the records with ``label`` and ``label_reasons`` recomputed; a record whose
    intact reference is not in ``records`` keeps its stored label.
  """
  healthy = {(r["job_id"], r["config"]["horizon"], r["config"]["policy"]): r["metrics"]
             for r in records if r["config"]["fault"] == INTACT}
  relabelled = []
  for record in records:
    record = copy.deepcopy(record)
    config = record["config"]
    reference = healthy.get((record["job_id"], config["horizon"], config["policy"]))
    if reference is not None:
      metrics = {k: from_json_number(v) for k, v in record["metrics"].items() if not isinstance(v, list)}
      reference = {k: from_json_number(v) for k, v in reference.items() if not isinstance(v, list)}
      label = classify_failure(metrics, thresholds, reference)
      record["label"], record["label_reasons"] = label.label, list(label.reasons)
    relabelled.append(record)
  return relabelled
