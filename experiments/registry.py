"""Registered experiments: the main job (`run_all`) runs each of them.

An experiment NAME has a folder `experiments/NAME/` with a thin absl
`main.py` and `configs/{tiny,default,paper}.py` (each a `get_config()`
returning an `ml_collections.ConfigDict`), and a library function
`run(config, workdir) -> dict` that writes `workdir/metrics.json` (schema in
`common/report/README.md`) and returns the same dict.

Registering an experiment is one line below: name -> "module:function".
"""

EXPERIMENTS: dict[str, str] = {
  'lm_core': 'common.examples.lm_core:run',
  'dhp': 'dhp.experiment:run',
  'graph_attacks': 'graph_attacks.experiment:run',
  'nspo': 'nspo.experiment:run',
  'cku': 'cku.experiment:run',
  'pica': 'pica.experiment:run',
  'tpaw': 'tpaw.experiment:run',
  'readerlm': 'readerlm.experiment:run',
  'graftllm': 'graftllm.experiment:run',
  'rlvr_backdoor': 'rlvr_backdoor.experiment:run',
  'e3tir': 'e3tir.experiment:run',
}

# Experiments whose results include times measured in the run (DHP's planner
# latency and its cost-model calibration): with `run_all --jobs=N` they run
# by themselves, after the others, so that no other job's load is in them.
RUN_ALONE: frozenset[str] = frozenset({'dhp'})
