"""Progress of long loops (sweeps, training, evaluation): live in a terminal, plain lines in a log.

One helper, :func:`progress_reporter`, returns a :class:`ProgressReporter` for ``total`` units of
work. The reporter chooses its output once, from its console:

* a terminal: a live ``rich`` display, one bar (units done / total, elapsed, ETA) and a status
  line with a spinner per running item (a job, a seed, ...), redrawn four times a second;
* anything else (a log file, a pipe, CI): plain lines, one per status change, each prefixed by
  ``[done/total unit  elapsed  ETA]``, with no carriage return and no escape code.

Typical use::

  from mbrl_drift.progress import progress_reporter

  with progress_reporter(len(jobs), "sweep", unit="jobs") as progress:
    for job in jobs:
      progress.status(job.name, f"training {job.name}")
      ...
      progress.done(job.name, f"{job.name} done", advance=1)

The ETA is the time left at the average rate of the units done since the reporter started
(units already done when it started, ``done=``, count towards the bar but not the rate), so it
holds between coarse steps and counts down while nothing finishes.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Hashable

from rich.console import Console, Group, RenderableType
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task,
                           TaskProgressColumn, TextColumn, TimeElapsedColumn)
from rich.spinner import Spinner
from rich.text import Text

__all__ = ["ProgressReporter", "format_duration", "progress_reporter"]


def format_duration(seconds: float | None) -> str:
  """``h:mm:ss``, or ``-:--:--`` when unknown."""
  if seconds is None:
    return "-:--:--"
  seconds = max(int(round(seconds)), 0)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressReporter:
  """Progress of ``total`` units of work; see :func:`progress_reporter`.

  A context manager: the live display starts on entering and stops on leaving (plain output
  needs neither). Every method is thread-safe and cheap; a disabled reporter does nothing.

  Attributes:
    total: units of work in all.
    completed: units done, including those done before the reporter started.
    unit: the name of a unit (``"trials"``, ``"chunks"``).
    live: whether it draws a live display (False: plain lines, or disabled).
    enabled: whether it writes anything.
  """

  def __init__(self, total: int, description: str = "", *, unit: str = "items", done: int = 0,
               enabled: bool = True, console: Console | None = None,
               write: Callable[[str], None] | None = None):
    self.total, self.completed, self.unit = int(total), int(done), unit
    self.description = description
    self.enabled = enabled
    self._initial = int(done)
    self._start = time.monotonic()
    self._finish_at: float | None = None  # estimated, updated on each advance
    self._lock = threading.RLock()
    self._statuses: dict[Hashable, tuple[str, Spinner]] = {}
    self.console = console if console is not None else Console()
    self.live = enabled and self.console.is_terminal
    self._write = write if write is not None else self._write_to_console
    self._progress: _LiveProgress | None = None
    if self.live:
      self._progress = _LiveProgress(self, console=self.console)
      self._task = self._progress.add_task(description, total=self.total, completed=done)

  # -- state ---------------------------------------------------------------------------------

  @property
  def elapsed_s(self) -> float:
    """Seconds since the reporter started."""
    return time.monotonic() - self._start

  @property
  def eta_s(self) -> float | None:
    """Estimated seconds left (``None`` until a unit is done in this reporter's lifetime)."""
    with self._lock:
      if self.completed >= self.total:
        return 0.0
      if self._finish_at is None:
        return None
      return max(self._finish_at - time.monotonic(), 0.0)

  def prefix(self) -> str:
    """``done/total unit  elapsed  ETA``, as the plain lines start."""
    return (f"{self.completed}/{self.total} {self.unit}  {format_duration(self.elapsed_s)} elapsed"
            f"  ETA {format_duration(self.eta_s)}")

  # -- reporting -----------------------------------------------------------------------------

  def advance(self, units: int = 1) -> None:
    """Counts ``units`` more units done."""
    if units == 0:
      return
    with self._lock:
      self.completed = min(self.completed + int(units), self.total)
      done_here = self.completed - self._initial
      if done_here > 0:
        now = time.monotonic()
        rate = done_here / max(now - self._start, 1e-9)
        self._finish_at = now + (self.total - self.completed) / rate
      if self._progress is not None:
        self._progress.update(self._task, completed=self.completed)

  def status(self, key: Hashable, text: str) -> None:
    """Sets the status line of a running item ``key`` (plain output: a line when it changes)."""
    if not self.enabled:
      return
    with self._lock:
      previous = self._statuses.get(key)
      if previous is not None and previous[0] == text:
        return
      spinner = previous[1] if previous is not None else Spinner("dots", style="cyan")
      spinner.update(text=Text(text))
      self._statuses[key] = (text, spinner)
    if not self.live:
      self._line(text)

  def done(self, key: Hashable | None, text: str | None = None, advance: int = 0) -> None:
    """Ends item ``key``'s status line, counts ``advance`` units, and prints ``text`` (if any)
    as a line that stays."""
    with self._lock:
      if key is not None:
        self._statuses.pop(key, None)
      self.advance(advance)
    if text is not None:
      self.log(text)

  def log(self, text: str) -> None:
    """Prints a line that stays (above the live display; plain output: with the prefix)."""
    if not self.enabled:
      return
    if self.live:
      self.console.print(Text(text))
    else:
      self._line(text)

  # -- output --------------------------------------------------------------------------------

  def _line(self, text: str) -> None:
    self._write(f"[{self.prefix()}] {text}")

  def _write_to_console(self, line: str) -> None:
    # The console's file, not console.print: no markup, wrapping or escape code.
    self.console.file.write(line + "\n")
    self.console.file.flush()

  def status_lines(self) -> list[RenderableType]:
    with self._lock:
      return [spinner for _, spinner in self._statuses.values()]

  def __enter__(self) -> "ProgressReporter":
    if self._progress is not None:
      self._progress.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    """Stops the live display (its last frame stays on screen)."""
    with self._lock:
      self._statuses.clear()
    if self._progress is not None:
      self._progress.stop()


class _EtaColumn(ProgressColumn):
  """The reporter's ETA (rich's own estimate needs fine-grained steps)."""

  def __init__(self, reporter: ProgressReporter):
    super().__init__()
    self.reporter = reporter

  def render(self, task: Task) -> Text:
    return Text(f"ETA {format_duration(self.reporter.eta_s)}", style="progress.remaining")


class _LiveProgress(Progress):
  """A rich Progress bar followed by the reporter's status lines."""

  def __init__(self, reporter: ProgressReporter, console: Console):
    self.reporter = reporter  # before super().__init__, which renders once
    super().__init__(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TextColumn(reporter.unit), TaskProgressColumn(),
        TimeElapsedColumn(), _EtaColumn(reporter), console=console)

  def get_renderable(self) -> RenderableType:
    return Group(self.make_tasks_table(self.tasks), *self.reporter.status_lines())


def progress_reporter(total: int, description: str = "", *, unit: str = "items", done: int = 0,
                      enabled: bool = True, console: Console | None = None,
                      write: Callable[[str], None] | None = None) -> ProgressReporter:
  """A progress reporter for ``total`` units: live in a terminal, plain lines otherwise.

  Args:
    total: units of work in all.
    description: the bar's label (live display only).
    unit: the name of a unit, e.g. ``"trials"``.
    done: units already done (they fill the bar but do not count towards the ETA's rate).
    enabled: False returns a reporter that writes nothing.
    console: the rich Console to draw on (default: one on stdout). Its ``is_terminal`` picks the
      output: ``Console(force_terminal=True)`` forces the live display, ``Console(file=f)`` of a
      file gives plain lines. Rich honours ``FORCE_COLOR``/``TTY_COMPATIBLE`` as usual.
    write: where plain lines go (default: the console's file); e.g. ``print`` or a logger.

  Returns:
    A :class:`ProgressReporter`; use it as a context manager.
  """
  return ProgressReporter(total, description, unit=unit, done=done, enabled=enabled,
                          console=console, write=write)


if __name__ == "__main__":  # a demonstration: python -m mbrl_drift.progress
  with progress_reporter(6, "demo", unit="steps") as demo:
    for step in range(6):
      demo.status("worker", f"step {step}")
      time.sleep(0.3)
      demo.done(None, advance=1)
    demo.log("finished")
