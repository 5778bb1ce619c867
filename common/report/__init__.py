"""Reports: validate runs' `metrics.json` and render them to Markdown.

Public API:
  build_report: `report.md` with an overview table and one section per run
    (summary, tables, curve plots, figures, notes); failed runs marked.
  validate_metrics / load_metrics / MetricsSchemaError: the schema of
    README.md, enforced with errors that name the file and field.
  plot_curve, markdown_table, format_cell: the rendering pieces.
  write_metrics: the one validated, atomic `metrics.json` writer.
"""

from common.report.builder import build_report
from common.report.builder import format_cell
from common.report.builder import markdown_table
from common.report.output import write_metrics
from common.report.plots import plot_curve
from common.report.schema import METRICS_FILE
from common.report.schema import MetricsSchemaError
from common.report.schema import load_metrics
from common.report.schema import validate_metrics

__all__ = [
  'METRICS_FILE',
  'MetricsSchemaError',
  'build_report',
  'format_cell',
  'load_metrics',
  'markdown_table',
  'plot_curve',
  'validate_metrics',
  'write_metrics',
]
