"""Curves from `metrics.json` rendered to PNG (matplotlib, Agg canvas).

Uses `matplotlib.figure.Figure` with the Agg canvas directly rather than
`pyplot`, so it never changes the process-wide backend or keeps figures
alive in a global registry.
"""

from __future__ import annotations

import os
import pathlib
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from matplotlib import ticker
from matplotlib.backends import backend_agg
from matplotlib.figure import Figure

# Characters per title line (a 6-inch figure at the default font size).
TITLE_WIDTH = 56

# Series with at most this many points get a marker on each point; longer
# ones get markers spaced along the line.
_MARKER_MAX_POINTS = 30
# Series that lie on top of each other stay distinguishable: each gets its
# own line style and marker, cycled in this order.
_STYLES = ('-', '--', '-.', ':')
_MARKERS = ('o', 's', '^', 'D', 'v', 'x', '*', 'P')
_INSIDE_LEGEND_MAX = 4  # more series than this: the legend goes outside


def slugify(text: str, max_len: int = 40) -> str:
  """File-name-safe lower-case slug: `'Loss (train)'` -> `'loss-train'`."""
  slug = re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')
  return slug[:max_len].rstrip('-') or 'plot'


def plot_curve(
  curve: Mapping[str, Any], path: str | os.PathLike, *, dpi: int = 100
) -> pathlib.Path:
  """Draws one validated curve (all its series on shared axes) to a PNG.

  Args:
    curve: `{'title', 'xlabel', 'ylabel', 'series': {name: {'x', 'y'}}}`.
    path: output PNG path (parent folders are created).
    dpi: resolution.

  Returns:
    The written path.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig = Figure(figsize=(6.0, 3.8), layout='constrained')
  backend_agg.FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  integer_x = True
  for i, (name, s) in enumerate(curve['series'].items()):
    n = len(s['x'])
    every = 1 if n <= _MARKER_MAX_POINTS else max(1, n // 12)
    ax.plot(
      s['x'],
      s['y'],
      label=name,
      linestyle=_STYLES[i % len(_STYLES)],
      marker=_MARKERS[i % len(_MARKERS)],
      markevery=(i % every, every) if every > 1 else None,
      markersize=4,
      markerfacecolor='none',
      linewidth=1.4,
    )
    integer_x &= all(float(x).is_integer() for x in s['x'])
  if integer_x:  # steps, device counts: no 2.5 or 0.25 ticks
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  # Long titles wrap instead of running off the figure's edge.
  ax.set_title('\n'.join(textwrap.wrap(curve['title'], TITLE_WIDTH)))
  ax.set_xlabel(curve.get('xlabel', ''))
  ax.set_ylabel(curve.get('ylabel', ''))
  ax.grid(alpha=0.3)
  if len(curve['series']) > _INSIDE_LEGEND_MAX:
    # Many series: the legend goes beside the axes, so it hides no line.
    fig.legend(fontsize='small', loc='outside right upper')
  elif len(curve['series']) > 1:
    ax.legend(fontsize='small')
  fig.savefig(path, dpi=dpi)
  return path
