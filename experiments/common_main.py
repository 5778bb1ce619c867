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
`runs/<name>`; `--config.<field>=value` overrides a field (typos are errors);
`--show_config` prints the resolved config and exits.

A workdir belongs to one config: its `config.json` records it, and a rerun
with the same config resumes (every stage restarts from its checkpoints)
while a rerun with a different one is refused with the differing fields
named, unless `--overwrite` (which deletes the old run first).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import logging as pylogging
import os
import pathlib
import shutil
import sys
from collections.abc import Callable
from typing import Any

import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from common import schema
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


class ConfigMismatchError(ValueError):
  """A workdir holds a run of another config.

  Attributes:
    workdir: the folder.
    differences: `['field: old -> new', ...]` (dotted paths).
  """

  def __init__(self, workdir: str, differences: list[str]):
    self.workdir, self.differences = workdir, differences
    shown = differences[:12]
    more = len(differences) - len(shown)
    lines = '\n  '.join(shown + ([f'... and {more} more'] if more else []))
    super().__init__(
      f'{workdir} holds a run of a different config ({CONFIG_JSON} '
      f'differs):\n  {lines}\nUse a new --workdir, or --overwrite to delete '
      'the old run and start again.'
    )


def _flatten(obj: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(obj, dict):
    out = {}
    for k, v in obj.items():
      out.update(_flatten(v, f'{prefix}.{k}' if prefix else str(k)))
    return out
  return {prefix: obj}


def config_differences(old: Any, new: Any) -> list[str]:
  """Dotted fields whose values differ, as `'field: old -> new'` lines.

  Args:
    old, new: configs as plain JSON objects (nested dicts).
  """
  a, b = _flatten(old), _flatten(new)
  out = []
  for key in sorted(set(a) | set(b)):
    missing = '<absent>'
    va, vb = a.get(key, missing), b.get(key, missing)
    if va != vb:
      out.append(f'{key}: {json.dumps(va)} -> {json.dumps(vb)}')
  return out


def _config_json(config: ml_collections.ConfigDict) -> Any:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def save_config(
  config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False
) -> str:
  """Claims `workdir` for `config`: checks, then writes `config.json`.

  Args:
    config: the run's resolved config.
    workdir: the run's folder (created if missing).
    overwrite: if the folder holds a run of another config, delete it
      first instead of refusing.

  Returns:
    The path of the written `config.json`.

  Raises:
    ConfigMismatchError: `workdir/config.json` records a different config
      (names the differing fields) and `overwrite` is False.
    ValueError: that `config.json` is not valid JSON (names it).
  """
  path = os.path.join(workdir, CONFIG_JSON)
  new = _config_json(config)
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(
        f'{path} is not valid JSON ({e}); delete it, or the workdir, to '
        'start again.'
      ) from e
    diff = config_differences(old, new)
    if diff and not overwrite:
      raise ConfigMismatchError(workdir, diff)
    if diff:
      logging.warning('--overwrite: deleting the old run in %s', workdir)
      shutil.rmtree(workdir)
  os.makedirs(workdir, exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(json.dumps(new, indent=2, sort_keys=True) + '\n')
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
    'Output folder: checkpoints, metrics.jsonl, TensorBoard, metrics.json. '
    'A rerun with the same config resumes there.',
    flag_values=flag_values,
  )
  flags.DEFINE_bool(
    'overwrite',
    False,
    'If --workdir holds a run of a different config, delete it and start '
    'again (without this flag such a rerun is refused).',
    flag_values=flag_values,
  )
  flags.DEFINE_bool(
    'show_config',
    False,
    'Print the resolved config (after --config.<field> overrides) and exit.',
    flag_values=flag_values,
  )
  return config, workdir


def run_from_flags(
  run_fn: str | RunFn,
  config: flags.FlagHolder,
  workdir: flags.FlagHolder,
  overwrite: bool = False,
) -> dict[str, Any]:
  """Runs `run_fn(config, workdir)` with parsed flags; saves the config."""
  fn = resolve(run_fn)
  cfg, out = config.value, workdir.value
  logging.info('config:\n%s', cfg)
  # The experiment's own check, before anything is written.
  validate = getattr(sys.modules.get(fn.__module__), 'validate_config', None)
  if validate is not None:
    validate(cfg)
  save_config(cfg, out, overwrite=overwrite)
  result = fn(cfg, out)
  summary = result.get('summary', {}) if isinstance(result, dict) else {}
  for key, value in summary.items():
    print(f'{key}: {value}')
  print(f'wrote {os.path.join(out, "metrics.json")}')
  return result


def _override_error(main_file: str, argv: list[str], error: Exception) -> str:
  """One line naming the bad `--config.<field>` override and the fields."""
  default = pathlib.Path(main_file).resolve().parent / 'configs' / 'default.py'
  path = next(
    (a.split('=', 1)[1] for a in argv if a.startswith('--config=')), default
  )
  try:
    spec = importlib.util.spec_from_file_location('_override_check', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = module.get_config()
  except Exception:  # noqa: BLE001  (fall back to the library's message)
    return f'bad --config override: {error}'
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    dotted = arg[len('--config.') :].split('=', 1)[0]
    node, walked = base, []
    for part in dotted.split('.'):
      fields = sorted(node.keys()) if hasattr(node, 'keys') else []
      if part not in fields:
        where = 'config' + ''.join(f'.{w}' for w in walked)
        close = difflib.get_close_matches(part, fields, n=1)
        hint = f'; did you mean {close[0]!r}' if close else ''
        return (
          f'unknown field {part!r} in {where} (from {arg}){hint}; the '
          f'fields are: {", ".join(fields) or "none (not a group)"}.'
        )
      node, walked = node[part], walked + [part]
  return f'bad --config override: {error}'


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def launch(run_fn: str | RunFn, main_file: str) -> None:
  """Defines the flags, parses the command line and runs the experiment.

  `--help` lists this experiment's flags. A config file that does not load,
  a bad override, or a workdir of another config ends the program with one
  line on stderr and exit status 2, before anything is written. Ctrl-C
  during training stops at a step boundary with a checkpoint (exit 130).
  """
  try:
    config, workdir = define_flags(main_file)
  except (AttributeError, ValueError, KeyError, TypeError) as e:
    _fail(_override_error(main_file, sys.argv, e))
  for name in ('config', 'workdir', 'overwrite', 'show_config'):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    cfg = config.value
    if not isinstance(cfg, ml_collections.ConfigDict):
      error = getattr(cfg, '_error', None)
      reason = str(error).strip().splitlines()[-1].strip() if error else ''
      _fail(
        f'--config={flags.FLAGS["config"].config_filename}: the config file '
        f'could not be loaded ({reason or type(cfg).__name__}).'
      )
    if flags.FLAGS.show_config:
      print(cfg)
      return
    quiet_library_logs()
    train.maybe_initialize_distributed()
    try:
      run_from_flags(run_fn, config, workdir, flags.FLAGS.overwrite)
    except (ConfigMismatchError, schema.ConfigError) as e:
      _fail(str(e))
    except train.TrainingInterrupted as e:
      print(str(e), file=sys.stderr)
      sys.exit(130)

  app.run(main)
