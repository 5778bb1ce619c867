"""Progress display and timing helpers for training loops and run_all."""

from __future__ import annotations

import sys
import time

import jax
import tqdm

# A bar appears only once its loop has run this long (tqdm's `delay`), so
# short loops stay quiet and every phase longer than this shows progress.
MIN_SECONDS_FOR_BAR = 3.0


def progress_bar(
  total: int,
  *,
  initial: int = 0,
  desc: str = '',
  enabled: bool | None = None,
  unit: str = 'it',
) -> tqdm.tqdm:
  """A tqdm bar over steps `initial..total`, on stderr, process 0 only.

  Args:
    total: the last step.
    initial: the step the loop starts from (e.g. a restored checkpoint's).
    desc: label shown left of the bar (the phase's name).
    enabled: show the bar; default: on process 0, and only after the loop
      has run `MIN_SECONDS_FOR_BAR` seconds (short loops stay quiet).
    unit: what one step is (`'it'`, `'unit'`, ...).

  Returns:
    A `tqdm.tqdm`; call `.update(n)`, `.set_postfix(...)` and `.close()`.
  """
  if enabled is None:
    enabled = jax.process_index() == 0
  return tqdm.tqdm(
    total=total,
    initial=initial,
    desc=desc,
    unit=unit,
    disable=not enabled,
    file=sys.stderr,
    dynamic_ncols=True,
    leave=False,
    delay=MIN_SECONDS_FOR_BAR,
  )


def format_duration(seconds: float) -> str:
  """Human-readable duration: `'0.42 s'`, `'12.3 s'`, `'4 min 05 s'`."""
  if seconds < 0:
    raise ValueError(f'format_duration: seconds={seconds} is negative.')
  if seconds < 10:
    return f'{seconds:.2f} s'
  if seconds < 60:
    return f'{seconds:.1f} s'
  minutes, secs = divmod(int(round(seconds)), 60)
  if minutes < 60:
    return f'{minutes} min {secs:02d} s'
  hours, minutes = divmod(minutes, 60)
  return f'{hours} h {minutes:02d} min'


class Stopwatch:
  """Measures steps per second between successive `lap` calls.

  Example:
    sw = Stopwatch(step=0)
    ...  # run 50 steps
    rate = sw.lap(step=50)  # steps per second over those 50 steps
  """

  def __init__(self, step: int = 0):
    self._step = step
    self._time = time.perf_counter()
    self.start = self._time

  def lap(self, step: int) -> float:
    """Steps per second since the previous lap (or construction)."""
    now = time.perf_counter()
    rate = (step - self._step) / max(now - self._time, 1e-9)
    self._step, self._time = step, now
    return rate

  def elapsed(self) -> float:
    """Seconds since construction."""
    return time.perf_counter() - self.start
