"""Metrics: JSONL + TensorBoard writers, atomic JSON results, progress.

Public API:
  MetricsWriter: one `metrics.jsonl` record per logged step + TensorBoard.
  read_jsonl: read a `metrics.jsonl` back.
  write_json / read_json: atomic `metrics.json` writes (numpy/JAX scalars
    converted) and reads with clear errors.
  to_jsonable: the conversion `write_json` applies.
  progress_bar, Stopwatch, format_duration: progress display and timing.
  ResultCache, config_hash: per-unit results keyed by the config's hash.
"""

from common.metrics.cache import ResultCache
from common.metrics.cache import config_hash
from common.metrics.jsonio import iter_jsonl_objects
from common.metrics.jsonio import read_json
from common.metrics.jsonio import to_jsonable
from common.metrics.jsonio import to_scalar
from common.metrics.jsonio import write_json
from common.metrics.progress import Stopwatch
from common.metrics.progress import format_duration
from common.metrics.progress import progress_bar
from common.metrics.writer import JSONL_NAME
from common.metrics.writer import TENSORBOARD_DIR
from common.metrics.writer import MetricsWriter
from common.metrics.writer import read_jsonl

__all__ = [
  'JSONL_NAME',
  'TENSORBOARD_DIR',
  'MetricsWriter',
  'ResultCache',
  'Stopwatch',
  'config_hash',
  'format_duration',
  'iter_jsonl_objects',
  'progress_bar',
  'read_json',
  'read_jsonl',
  'to_jsonable',
  'to_scalar',
  'write_json',
]
