"""The shared body of every `experiments/<name>/main.py`.

An experiment's `main.py` is then just:

  from experiments import common_main
  from nspo import experiment

  if __name__ == '__main__':
    common_main.launch(experiment.run, __file__)

and is run as

  python -m experiments.nspo.main \\
    --config=experiments/nspo/configs/tiny.py --config.steps=50 \\
    --workdir=runs/nspo

`--config` defaults to the experiment's `configs/default.py`, `--workdir` to
`runs/<name>`; `--config.<field>=value` overrides a field (typos are errors).
"""

from __future__ import annotations

import importlib
import logging as pylogging
import os
import pathlib
from collections.abc import Callable
from typing import Any

import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from common import train

RunFn = Callable[[ml_collections.ConfigDict, str], dict[str, Any]]
CONFIG_JSON = 'config.json'


class _LibraryInfoFilter(pylogging.Filter):
  """Drops INFO records that orbax writes through absl (one per save)."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or (
      f'{os.sep}orbax{os.sep}' not in record.pathname
    )


def quiet_library_logs() -> None:
  """Keeps orbax's per-checkpoint INFO lines out of the experiment logs.

  Warnings and errors from every library still show; so does everything
  the project logs itself.
  """
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(_LibraryInfoFilter())


def resolve(target: str | RunFn) -> RunFn:
  """Returns the function named `'package.module:function'` (or `target`).

  Raises:
    ValueError: `target` is not of the form `module:function`.
    ImportError / AttributeError: the module or function does not exist
      (the message names them).
  """
  if callable(target):
    return target
  if not isinstance(target, str) or target.count(':') != 1:
    raise ValueError(f"resolve: {target!r} must be 'package.module:function'.")
  module_name, fn_name = target.split(':')
  module = importlib.import_module(module_name)
  fn = getattr(module, fn_name, None)
  if fn is None or not callable(fn):
    raise AttributeError(
      f'resolve: module {module_name!r} has no function {fn_name!r} (from '
      f'{target!r}).'
    )
  return fn


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes the config a run used to `<workdir>/config.json`."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_JSON)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')
  os.replace(tmp, path)
  return path


def define_flags(
  main_file: str,
  flag_values: flags.FlagValues = flags.FLAGS,
  argv: list[str] | None = None,
) -> tuple[flags.FlagHolder, flags.FlagHolder]:
  """Defines `--config` and `--workdir` for the experiment at `main_file`.

  Args:
    main_file: the experiment's `main.py` (`__file__`); its folder name is
      the experiment name and holds `configs/`.
    flag_values: where to define them (tests pass a fresh `FlagValues`).
    argv: the command line to be parsed (default `sys.argv`);
      `config_flags` reads it to find the `--config.<field>` overrides.

  Returns:
    The `(config, workdir)` flag holders.
  """
  exp_dir = pathlib.Path(main_file).resolve().parent
  name = exp_dir.name
  config = config_flags.DEFINE_config_file(
    'config',
    str(exp_dir / 'configs' / 'default.py'),
    f'{name} config file (configs/tiny.py, default.py or paper.py); override '
    'fields with --config.<field>=value.',
    flag_values=flag_values,
    lock_config=True,
    sys_argv=argv,
  )
  workdir = flags.DEFINE_string(
    'workdir',
    os.path.join('runs', name),
    'Output folder: checkpoints, metrics.jsonl, TensorBoard, metrics.json.',
    flag_values=flag_values,
  )
  return config, workdir


def run_from_flags(
  run_fn: str | RunFn,
  config: flags.FlagHolder,
  workdir: flags.FlagHolder,
) -> dict[str, Any]:
  """Runs `run_fn(config, workdir)` with parsed flags; saves the config."""
  fn = resolve(run_fn)
  cfg, out = config.value, workdir.value
  logging.info('config:\n%s', cfg)
  save_config(cfg, out)
  result = fn(cfg, out)
  summary = result.get('summary', {}) if isinstance(result, dict) else {}
  for key, value in summary.items():
    print(f'{key}: {value}')
  print(f'wrote {os.path.join(out, "metrics.json")}')
  return result


def launch(run_fn: str | RunFn, main_file: str) -> None:
  """Defines the flags, parses the command line and runs the experiment."""
  config, workdir = define_flags(main_file)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    quiet_library_logs()
    train.maybe_initialize_distributed()
    run_from_flags(run_fn, config, workdir)

  app.run(main)
