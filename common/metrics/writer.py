"""Scalar metrics to `metrics.jsonl` and TensorBoard event files."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax

from common.metrics import jsonio

JSONL_NAME = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'


class MetricsWriter:
  """Writes one JSON record per logged step, plus TensorBoard scalars.

  Layout under `workdir`:

  * `metrics.jsonl`: one line `{"step": int, name: number, ...}` per
    `write` call, appended (a resumed run continues the same file);
  * `tensorboard/events.out.tfevents.*`: the same scalars, one tag per name
    (view with `tensorboard --logdir workdir/tensorboard`).

  In a multi-process job only process 0 writes (the others' writers are
  no-ops), since every process holds the same replicated metrics.

  Example:
    with MetricsWriter(workdir) as w:
      w.write(10, {'loss': 0.5, 'lr': 1e-3})
  """

  def __init__(
    self,
    workdir: str | os.PathLike,
    *,
    tensorboard: bool = True,
    resume_step: int | None = None,
    enabled: bool | None = None,
  ):
    """Opens (or continues) the metrics files of a run.

    Args:
      workdir: the run's folder (created if missing).
      tensorboard: also write TensorBoard event files.
      resume_step: when a run resumes from a checkpoint at this step, the
        JSONL records after it (written before the crash, about to be
        recomputed) are dropped, and TensorBoard is told to purge its events
        after it, so each step appears once.
      enabled: write at all; default: only on process 0.
    """
    self.workdir = pathlib.Path(workdir)
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.jsonl_path = self.workdir / JSONL_NAME
    self._tb = None
    self._jsonl = None
    if not self.enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    if resume_step is not None:
      self.truncate_after(resume_step)
    elif self.jsonl_path.exists():
      # A fresh run in a used folder: the old records are stale.
      self.jsonl_path.unlink()
    self._jsonl = open(self.jsonl_path, 'a')
    if tensorboard:
      import tensorboardX  # noqa: PLC0415  (heavy; only when used)

      self._tb = tensorboardX.SummaryWriter(
        str(self.workdir / TENSORBOARD_DIR),
        # Tells TensorBoard to drop older events at or after this step.
        purge_step=0 if resume_step is None else resume_step + 1,
        flush_secs=30,
      )

  def write(self, step: int, scalars: Mapping[str, Any]) -> dict[str, Any]:
    """Logs scalars for one step.

    Args:
      step: the training step (int).
      scalars: name -> number (Python, numpy or 0-d JAX array).

    Returns:
      The record written: `{'step': step, name: python number, ...}`.

    Raises:
      ValueError: a value is not a numeric scalar, or a name is `'step'`.
    """
    if 'step' in scalars:
      raise ValueError("MetricsWriter.write: 'step' is reserved; rename it.")
    record = {'step': int(step)}
    for name, value in scalars.items():
      record[name] = jsonio.to_scalar(value, name)
    if self.enabled:
      self._jsonl.write(json.dumps(record) + '\n')
      self._jsonl.flush()
      if self._tb is not None:
        for name, value in record.items():
          if name != 'step':
            self._tb.add_scalar(name, float(value), global_step=int(step))
    return record

  def read(self) -> list[dict[str, Any]]:
    """All records of `metrics.jsonl` in order (see `read_jsonl`)."""
    return read_jsonl(self.jsonl_path)

  def truncate_after(self, step: int) -> None:
    """Drops the JSONL records whose step is greater than `step` (atomic)."""
    if not self.jsonl_path.exists():
      return
    kept = [r for r in read_jsonl(self.jsonl_path) if r['step'] <= step]
    tmp = self.jsonl_path.with_suffix('.jsonl.tmp')
    tmp.write_text(''.join(json.dumps(r) + '\n' for r in kept))
    os.replace(tmp, self.jsonl_path)

  def flush(self) -> None:
    if self._jsonl is not None:
      self._jsonl.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self) -> MetricsWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads a metrics JSONL file.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: a line is not a JSON object with an int `step` (names the
      file and line number).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'read_jsonl: no such file: {path}')
  records = []
  for i, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}:{i}: not valid JSON: {e}') from e
    if not isinstance(record, dict) or not isinstance(record.get('step'), int):
      raise ValueError(f'{path}:{i}: expected an object with an int "step".')
    records.append(record)
  return records
