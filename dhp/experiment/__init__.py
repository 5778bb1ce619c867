"""The DHP experiment: simulated throughput, planner latency, optimality gap,
and real execution of a tiny transformer on 8 CPU devices.

``run(config, workdir)`` (``pipeline.run``) writes ``workdir/metrics.json``
(schema in ``common/report/README.md``) and one PNG per curve, and returns
the metrics dict. Stages: ``simulation``, ``planner_study``,
``runtime_check``; ``config`` checks the config, ``report`` builds the
metrics.

Simulated numbers come from the cost model stated in the report (times are
the model's milliseconds, not measurements). The real-execution part checks
correctness (DHP losses equal the single-device run) and counts compiled
executables; its CPU wall-clock is not a training speedup and is not
reported as one.
"""

from dhp.experiment.config import cost_from_config
from dhp.experiment.config import validate_config
from dhp.experiment.pipeline import run

__all__ = ['cost_from_config', 'run', 'validate_config']
