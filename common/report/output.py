"""The one way an experiment writes its `metrics.json`.

    result = {'title': ..., 'summary': {...}, 'curves': [...]}
    write_metrics(workdir, result)   # validated, then written atomically

`write_metrics` checks the object against the schema (README.md) before
anything touches the disk, so a malformed result fails in the run that made
it, naming the field, and never reaches the report; the write is atomic, so
a crash leaves the previous `metrics.json` in place.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

from common.metrics import jsonio
from common.report import schema


def write_metrics(
  workdir: str | os.PathLike, metrics: Mapping[str, Any]
) -> dict[str, Any]:
  """Validates `metrics` and writes `<workdir>/metrics.json` atomically.

  Args:
    workdir: the run's folder (created if missing).
    metrics: the run's results in the schema of `common/report/README.md`;
      numpy/JAX scalars and arrays are converted to JSON numbers and lists.

  Returns:
    The plain-JSON dict that was written (what `run` should return).

  Raises:
    MetricsSchemaError: the object breaks the schema (names the field);
      nothing is written.
    TypeError: a value has no JSON form (names its path).
  """
  path = pathlib.Path(workdir) / schema.METRICS_FILE
  data = jsonio.to_jsonable(metrics)
  schema.validate_metrics(data, str(path), run_dir=path.parent)
  jsonio.write_json(path, data)
  return data
