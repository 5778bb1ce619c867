"""The main job: every registered experiment, then one report.

  python -m experiments.run_all --workdir=runs/demo --config_name=default
  python -m experiments.run_all --config_name=tiny --only=lm_core,nspo

For each experiment NAME of `experiments/registry.py` (in registry order),
loads `experiments/NAME/configs/<config_name>.py:get_config()`, runs
`run(config, <workdir>/NAME)` and checks the `metrics.json` it wrote. A
failing experiment is logged with its traceback (also saved to
`<workdir>/NAME/error.txt`), marked FAILED in the report, and the others
still run; the job then exits with status 1. Writes `<workdir>/report.md`
and `<workdir>/run_all.json` (status and time per experiment).

With `--jobs=N` (N > 1) the experiments run N at a time, each in a fresh
process of its own (spawned: JAX is initialised per process with
`--cpu_devices`), and the report is written once all have finished. Every
experiment is single-process and mostly single-threaded on CPU (small
models; compilation is serial), so two jobs on two cores take about half
the wall time. Experiments that time themselves (`registry.RUN_ALONE`:
DHP's planner latency and cost calibration) then run by themselves after
the others, so that no other job's load is in their numbers.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import multiprocessing
import pathlib
import sys
import time
import traceback
from collections.abc import Collection
from collections.abc import Mapping
from collections.abc import Sequence

import jax
import ml_collections
from absl import app
from absl import flags
from absl import logging

from common import metrics
from common import report
from common import train
from experiments import common_main
from experiments import registry

EXPERIMENTS_DIR = pathlib.Path(__file__).resolve().parent
SUMMARY_JSON = 'run_all.json'
ERROR_FILE = 'error.txt'
# JAX's persistent compilation cache, under the workdir unless a flag says.
COMPILATION_CACHE = '.xla_cache'
# Traceback lines kept in the report for a failed experiment.
_REPORT_TRACEBACK_LINES = 25


@dataclasses.dataclass
class Outcome:
  """What happened to one experiment."""

  name: str
  status: str  # 'ok' | 'FAILED'
  seconds: float
  run_dir: str
  error: str | None = None


def select(only: str | Sequence[str] | None, names: Sequence[str]) -> list[str]:
  """The registered names to run, in registry order.

  Args:
    only: comma-separated names (or a list); None or '' means all.
    names: the registered names.

  Raises:
    ValueError: `only` names an unregistered experiment (lists the
      registered ones).
  """
  if not only:
    return list(names)
  wanted = only.split(',') if isinstance(only, str) else list(only)
  wanted = [w.strip() for w in wanted if w.strip()]
  unknown = [w for w in wanted if w not in names]
  if unknown:
    raise ValueError(
      f'--only: unknown experiment(s) {unknown}; registered: '
      f'{", ".join(names)}.'
    )
  return [n for n in names if n in wanted]


def load_config(
  name: str, config_name: str, experiments_dir: str | pathlib.Path
) -> ml_collections.ConfigDict:
  """Loads `<experiments_dir>/<name>/configs/<config_name>.py:get_config()`.

  Raises:
    FileNotFoundError: no such config file (lists the available ones).
    TypeError: the file has no `get_config()` returning a `ConfigDict`.
  """
  config_dir = pathlib.Path(experiments_dir) / name / 'configs'
  path = config_dir / f'{config_name}.py'
  if not path.is_file():
    available = sorted(
      p.stem for p in config_dir.glob('*.py') if p.stem != '__init__'
    )
    raise FileNotFoundError(
      f'experiment {name!r} has no config {config_name!r} ({path}); '
      f'available: {available or "none"}.'
    )
  spec = importlib.util.spec_from_file_location(
    f'_run_all_config_{name}_{config_name}', path
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    raise TypeError(f'{path} defines no get_config() function.')
  config = get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise TypeError(
      f'{path}: get_config() returned {type(config).__name__}; it must '
      'return an ml_collections.ConfigDict.'
    )
  return config


def run_one(
  name: str,
  target: str,
  config_name: str,
  workdir: pathlib.Path,
  experiments_dir: pathlib.Path,
  overwrite: bool = False,
) -> Outcome:
  """Runs one experiment; any exception becomes a FAILED outcome.

  A run dir that holds a run of another config is not touched: the
  experiment fails with the differing fields named, unless `overwrite`.
  """
  run_dir = workdir / name
  start = time.perf_counter()
  logging.info('=== %s (%s config) -> %s', name, config_name, run_dir)
  try:
    config = load_config(name, config_name, experiments_dir)
    run_fn = common_main.resolve(target)
    common_main.save_config(config, str(run_dir), overwrite=overwrite)
    result = run_fn(config, str(run_dir))
    if not isinstance(result, Mapping):
      raise TypeError(
        f'{target} returned {type(result).__name__}; run(config, workdir) '
        'must return the metrics.json dict.'
      )
    report.load_metrics(run_dir)  # exists and follows the schema
  except Exception:  # noqa: BLE001  (recorded, reported, exit status 1)
    seconds = time.perf_counter() - start
    error = traceback.format_exc()
    logging.error('%s FAILED after %.1f s:\n%s', name, seconds, error)
    try:
      run_dir.mkdir(parents=True, exist_ok=True)
      (run_dir / ERROR_FILE).write_text(error)
    except OSError as e:  # e.g. an unwritable workdir: report, go on
      logging.error('could not write %s: %s', run_dir / ERROR_FILE, e)
    return Outcome(name, 'FAILED', seconds, str(run_dir), error)
  seconds = time.perf_counter() - start
  (run_dir / ERROR_FILE).unlink(missing_ok=True)
  logging.info('%s ok in %s', name, metrics.format_duration(seconds))
  return Outcome(name, 'ok', seconds, str(run_dir))


@dataclasses.dataclass(frozen=True)
class ProcessSetup:
  """How JAX is set up in each experiment's process (before its backend).

  Attributes:
    cpu_devices: simulated CPU devices (`jax_num_cpu_devices`).
    fast_compile: XLA:CPU at -O0 (`common.train.fast_cpu_compile`): for the
      `tiny` smoke runs, whose time is mostly compilation.
    compilation_cache: JAX's persistent compilation cache folder, shared by
      the experiments of a run and by later runs (None: no cache).
  """

  cpu_devices: int
  fast_compile: bool = False
  compilation_cache: str | None = None

  def apply(self) -> None:
    if jax.config.jax_num_cpu_devices != self.cpu_devices:
      jax.config.update('jax_num_cpu_devices', self.cpu_devices)
    train.allow_slow_cpu_collectives()
    if self.fast_compile:
      train.fast_cpu_compile()
    if self.compilation_cache:
      train.use_compilation_cache(self.compilation_cache)
    common_main.quiet_library_logs()


def _run_one_in_child(setup: ProcessSetup, *args) -> Outcome:
  """`run_one(*args)` in a fresh (spawned) process: JAX set up first."""
  setup.apply()
  return run_one(*args)


# Attempts per experiment whose process dies (rather than raising): the
# second resumes from the first's checkpoints.
_ATTEMPTS = 2


def _run_in_own_process(setup: ProcessSetup, call) -> Outcome:
  """`run_one(*call)` in a fresh process; once more if that process dies.

  A process can die without a Python exception: XLA:CPU aborts a program
  whose in-process all-reduce waited past its terminate timeout (seen once
  in a `--jobs=2` demo, graftllm's 8 simulated devices on 2 oversubscribed
  cores). The retry resumes from the run's checkpoints.
  """
  ctx = multiprocessing.get_context('spawn')
  errors = []
  for attempt in range(1, _ATTEMPTS + 1):
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
      try:
        return pool.submit(_run_one_in_child, setup, *call).result()
      except Exception:  # noqa: BLE001  (the child process itself died)
        errors.append(traceback.format_exc())
        logging.error(
          '%s: its process died (attempt %d of %d):\n%s',
          call[0], attempt, _ATTEMPTS, errors[-1],
        )  # fmt: skip
  return Outcome(
    call[0], 'FAILED', 0.0, str(call[3] / call[0]), '\n'.join(errors)
  )


def _run_parallel(jobs: int, setup: ProcessSetup, calls) -> list[Outcome]:
  """`run_one(*call)` for every call, `jobs` at a time, each in a process of
  its own (so that one dying process fails no other experiment); returned
  in the calls' order."""
  with concurrent.futures.ThreadPoolExecutor(jobs) as threads:
    return list(threads.map(lambda c: _run_in_own_process(setup, c), calls))


def _earlier_outcomes(
  workdir: pathlib.Path, config_name: str, experiments: Mapping[str, str]
) -> dict[str, Outcome]:
  """Outcomes recorded in `workdir/run_all.json` by an earlier run_all.

  Only those of the same `config_name`, of registered experiments, and
  (for 'ok' ones) whose `metrics.json` is still there and valid.
  """
  path = workdir / SUMMARY_JSON
  if not path.is_file():
    return {}
  try:
    data = metrics.read_json(path)
  except ValueError as e:
    logging.warning('ignoring %s: %s', path, e)
    return {}
  if not isinstance(data, dict) or data.get('config_name') != config_name:
    return {}
  out = {}
  for entry in data.get('experiments', []):
    try:
      o = Outcome(**entry)
    except TypeError:
      continue
    if o.name not in experiments:
      continue
    if o.status == 'ok':
      try:
        report.load_metrics(o.run_dir)
      except (OSError, ValueError):
        continue
    out[o.name] = o
  return out


def run_all(
  workdir: str | pathlib.Path,
  config_name: str = 'default',
  only: str | Sequence[str] | None = None,
  *,
  experiments: Mapping[str, str] | None = None,
  experiments_dir: str | pathlib.Path | None = None,
  overwrite: bool = False,
  jobs: int = 1,
  cpu_devices: int | None = None,
  run_alone: Collection[str] | None = None,
  fast_compile: bool = False,
  compilation_cache: str | pathlib.Path | None = None,
) -> list[Outcome]:
  """Runs the selected experiments and writes the report.

  With `only`, the other experiments' earlier results in `workdir` (from
  its `run_all.json`, for the same `config_name`) stay in the report.

  Args:
    workdir: output root; experiment NAME writes to `<workdir>/NAME`.
    config_name: which config file of each experiment (`tiny`, `default`,
      `paper` or any other present in its `configs/`).
    only: restrict to these names (comma-separated or a list).
    experiments: name -> 'module:function' (default: the registry).
    experiments_dir: the folder holding `<name>/configs/` (default: this
      package's folder, `EXPERIMENTS_DIR`).
    overwrite: replace a run dir that holds a run of another config
      (otherwise that experiment fails, naming the differing fields).
    jobs: experiments run at a time; above 1, each in its own spawned
      process (see the module docstring).
    cpu_devices: simulated CPU devices of those processes (default: this
      process's `jax_num_cpu_devices`).
    run_alone: with `jobs` > 1, these run one at a time after the others
      (default: `registry.RUN_ALONE`).
    fast_compile: with `jobs` > 1, the experiments' processes compile with
      XLA:CPU at -O0 (`ProcessSetup`); with one job, `main` sets it up for
      this process.
    compilation_cache: with `jobs` > 1, the processes' persistent
      compilation cache (with one job, `main` sets it up).

  Returns:
    One `Outcome` per experiment run now, in registry order.
  """
  experiments = registry.EXPERIMENTS if experiments is None else experiments
  if experiments_dir is None:
    experiments_dir = EXPERIMENTS_DIR
  names = select(only, list(experiments))
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  earlier = _earlier_outcomes(workdir, config_name, experiments)
  if jobs < 1:
    raise ValueError(f'jobs={jobs}: must be >= 1.')
  calls = [
    (
      n,
      experiments[n],
      config_name,
      workdir,
      pathlib.Path(experiments_dir),
      overwrite,
    )
    for n in names
  ]
  if jobs == 1 or len(calls) == 1:
    outcomes = [run_one(*call) for call in calls]
  else:
    if cpu_devices is None:
      cpu_devices = jax.config.jax_num_cpu_devices
    if run_alone is None:
      run_alone = registry.RUN_ALONE
    setup = ProcessSetup(
      cpu_devices,
      fast_compile,
      None if compilation_cache is None else str(compilation_cache),
    )
    together = [c for c in calls if c[0] not in run_alone]
    alone = [c for c in calls if c[0] in run_alone]
    outcomes = _run_parallel(jobs, setup, together) + [
      _run_in_own_process(setup, c) for c in alone
    ]
    order = {c[0]: i for i, c in enumerate(calls)}
    outcomes.sort(key=lambda o: order[o.name])
  now = {o.name: o for o in outcomes}
  shown = [now.get(n) or earlier.get(n) for n in experiments]
  shown = [o for o in shown if o is not None]
  ok = [pathlib.Path(o.run_dir) for o in shown if o.status == 'ok']
  failures = {
    o.name: '\n'.join(o.error.strip().splitlines()[-_REPORT_TRACEBACK_LINES:])
    for o in shown
    if o.status != 'ok'
  }
  out = report.build_report(
    ok,
    workdir / 'report.md',
    failures=failures,
    durations={o.name: o.seconds for o in shown},
    order=[o.name for o in shown],
    title=f'Results (`{config_name}` configs)',
  )
  metrics.write_json(
    workdir / SUMMARY_JSON,
    {
      'config_name': config_name,
      'experiments': [dataclasses.asdict(o) for o in shown],
    },
  )
  for o in outcomes:
    logging.info(
      '%-20s %-6s %s', o.name, o.status, metrics.format_duration(o.seconds)
    )
  logging.info('report: %s', out)
  return outcomes


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines `--workdir`, `--config_name`, `--only`, `--overwrite`,
  `--jobs`, `--cpu_devices`, `--fast_compile` and `--compilation_cache`."""
  flags.DEFINE_string(
    'workdir', 'runs/demo', 'Output root.', flag_values=flag_values
  )
  flags.DEFINE_string(
    'config_name',
    'default',
    'Config of each experiment: tiny (seconds), default (minutes on CPU) '
    'or paper (accelerators).',
    flag_values=flag_values,
  )
  flags.DEFINE_list(
    'only',
    [],
    'Comma-separated experiment names (default: all).',
    flag_values=flag_values,
  )
  flags.DEFINE_bool(
    'overwrite',
    False,
    "Replace an experiment's run dir that holds a run of another config "
    '(without it, that experiment fails and names the differing fields).',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'jobs',
    1,
    'Experiments run at a time, each in its own process (2 on a 2-core '
    'machine halves the wall time; timings inside experiments then see '
    'the other job).',
    lower_bound=1,
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'cpu_devices',
    8,
    'Simulated devices on a CPU-only host (jax_num_cpu_devices): training '
    "loops shard their batch over them and DHP's real-execution part needs "
    'several. No effect on accelerators.',
    lower_bound=1,
    flag_values=flag_values,
  )
  flags.DEFINE_enum(
    'fast_compile',
    'auto',
    ['auto', 'true', 'false'],
    'Compile with XLA:CPU at -O0: about 40% less compile time, slower '
    'compiled code. auto: only for --config_name=tiny (a smoke test whose '
    'time is mostly compilation).',
    flag_values=flag_values,
  )
  flags.DEFINE_string(
    'compilation_cache',
    None,
    "JAX's persistent compilation cache folder (default: "
    '<workdir>/.xla_cache; "" for none). A rerun, or an experiment that '
    'builds a program another one built, loads it instead of compiling.',
    flag_values=flag_values,
  )


def main(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS):
  """Runs everything; returns the exit status (1 if anything failed)."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {list(argv[1:])}')
  try:
    select(flag_values.only, list(registry.EXPERIMENTS))
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  cache = flag_values.compilation_cache
  if cache is None:
    cache = str(pathlib.Path(flag_values.workdir) / COMPILATION_CACHE)
  fast = flag_values.fast_compile
  setup = ProcessSetup(
    flag_values.cpu_devices,
    fast == 'true' or (fast == 'auto' and flag_values.config_name == 'tiny'),
    cache or None,
  )
  setup.apply()
  train.maybe_initialize_distributed()
  outcomes = run_all(
    flag_values.workdir,
    flag_values.config_name,
    flag_values.only,
    overwrite=flag_values.overwrite,
    jobs=flag_values.jobs,
    cpu_devices=flag_values.cpu_devices,
    fast_compile=setup.fast_compile,
    compilation_cache=setup.compilation_cache,
  )
  failed = [o.name for o in outcomes if o.status != 'ok']
  if failed:
    print(
      f'FAILED: {", ".join(failed)} (see {flag_values.workdir}/report.md)',
      file=sys.stderr,
    )
    return 1
  print(
    f'all {len(outcomes)} experiments ok; report: '
    f'{flag_values.workdir}/report.md'
  )
  return 0


if __name__ == '__main__':
  define_flags()
  app.run(main)
