"""PiCA's held-out hazard AUC, early stopping, the AUC gate and the oracle."""

import ml_collections
import numpy as np
import pytest

from common import schema
from experiments.pica.configs import tiny
from pica import config as config_lib
from pica import experiment
from pica import hazard
from pica.stages import hazard_stage


def test_step_kinds_split_searches_from_the_end_step():
  valid = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
  search, end = hazard.step_kinds(valid)
  np.testing.assert_array_equal(search, [[1, 1, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(end, [[0, 0, 1, 0], [1, 0, 0, 0]])


def test_heldout_aucs_on_a_hand_computed_case():
  # Searches: ('-', h 0.9), ('+', 0.2), ('-', 0.4), ('+', 0.4). '-' ranks
  # above '+' in pairs (0.9 > 0.2), (0.9 > 0.4), (0.4 > 0.2), (0.4 = 0.4:
  # one half): 3.5 / 4. End steps: '+' 0.3 and '-' 0.1: 0 / 1.
  hazards = np.array([[0.9, 0.2, 0.3], [0.4, 0.4, 0.1]])
  labels = np.array([[False, True, True], [False, True, False]])
  valid = np.ones((2, 3), bool)
  out = hazard.heldout_aucs(hazards, labels, valid)
  assert out['search_auc'] == pytest.approx(3.5 / 4)
  assert out['end_auc'] == 0.0
  # one class only -> NaN, never a made-up number
  one = hazard.heldout_aucs(hazards, np.ones((2, 3), bool), valid)
  assert np.isnan(one['search_auc']) and np.isnan(one['end_auc'])
  with pytest.raises(ValueError, match='same'):
    hazard.heldout_aucs(hazards[:, :2], labels, valid)


def test_oracle_hazards_follow_the_labels():
  labels = np.array([[True, False, True]])
  valid = np.array([[True, True, False]])
  np.testing.assert_allclose(
    hazard.oracle_hazards(labels, valid, 0.05, 0.95), [[0.05, 0.95, 0.0]]
  )


@pytest.mark.parametrize(
  'aucs,patience,stop',
  [
    ([0.5, 0.6, 0.7], 2, False),  # still improving
    ([0.5, 0.7, 0.6, 0.65], 2, True),  # best 2 evaluations ago
    ([0.5, 0.7, 0.6], 2, False),
    ([np.nan, np.nan, np.nan], 1, False),  # no finite AUC: never stops
    ([0.9, 0.1], None, False),  # no early stopping
  ],
)
def test_stopped_early(aucs, patience, stop):
  history = [{'step': i + 1, 'eval_search_auc': a} for i, a in enumerate(aucs)]
  # a high step-0 AUC (an untrained head) never counts as the best
  history.insert(0, {'step': 0, 'eval_search_auc': 0.99})
  history.insert(1, {'step': 1, 'loss': 1.0})  # training records are skipped
  assert hazard_stage.stopped_early(history, patience) is stop


def test_hazard_gate():
  c = ml_collections.ConfigDict({'hazard': {'min_auc': 0.8}})
  assert experiment.hazard_gate(c, {'heldout_search_auc': 0.81}) is None
  why = experiment.hazard_gate(c, {'heldout_search_auc': 0.6})
  assert 'AUC 0.600 < hazard.min_auc 0.8' in why
  assert 'nan' in experiment.hazard_gate(c, {})
  c.hazard.min_auc = 0.0
  assert experiment.hazard_gate(c, {}) is None


@pytest.mark.parametrize(
  'edit,match',
  [
    (lambda c: setattr(c, 'arms', ('pica', 'oracle')), 'include the baseline'),
    (lambda c: setattr(c, 'arms', ('outcome', 'best')), "unknown name 'best'"),
    (lambda c: setattr(c, 'seeds', (0, 0)), 'seeds'),
    (lambda c: c.rl.update({'norm_mode': 'turn'}), 'rl.norm_mode'),
    (lambda c: c.rl.update({'std_floor': -1.0}), 'rl.std_floor'),
    (
      lambda c: c.hazard.update({'min_auc': 0.8, 'eval_questions': 0}),
      'needs held-out questions',
    ),
    (
      lambda c: c.hazard.update({'patience': 2, 'eval_every': None}),
      'hazard.patience=2 needs',
    ),
  ],
)
def test_bad_fields_are_named(tmp_path, edit, match):
  c = tiny.get_config()
  edit(c)
  with pytest.raises(schema.ConfigError, match=match):
    experiment.run(c, str(tmp_path))
  assert not any(tmp_path.iterdir())


def test_seeds_default_to_the_world_seed():
  c = tiny.get_config()
  del c['seeds']
  c.seed = 3
  assert config_lib.resolve(c).seeds == (3,)


def _fake_run(seed, em, gated=False):
  """One seed's run_seed result with EM `em[arm]` on every split."""

  def ev(x):
    out = {}
    for s in ('test_1hop', 'test_2hop', 'compositional'):
      out[f'{s}_em'], out[f'{s}_searches'] = x, 2.0
      out[f'{s}_em_sampled'] = x / 2
    return out

  hist = [{'step': 1, 'loss': 1.0, 'train_em': 0.1, 'searches': 2.0}]
  results = {a: ev(x) for a, x in em.items() if not (gated and a == 'pica')}
  return {
    'seed': seed,
    'results': results,
    'histories': {a: hist for a in ('sft', 'hazard', *results)},
    'sft_info': {'sft_examples': 10},
    'hazard_stats': {
      'trajectories': 8,
      'negative_fraction': 0.5,
      'steps': 3,
      'heldout_search_auc': 0.6,
    },
    'gated': {'pica': 'AUC low'} if gated else {},
  }


def test_report_pairs_seeds_and_leaves_out_gated_ones():
  from common.report import schema as report_schema
  from pica.stages import report

  c = config_lib.resolve(tiny.get_config())
  c.seeds = (0, 1, 2)
  runs = [
    _fake_run(0, {'sft': 0.1, 'outcome': 0.2, 'pica': 0.3, 'oracle': 0.5}),
    _fake_run(1, {'sft': 0.1, 'outcome': 0.3, 'pica': 0.3, 'oracle': 0.4}),
    _fake_run(
      2, {'sft': 0.1, 'outcome': 0.2, 'pica': 0.9, 'oracle': 0.6}, gated=True
    ),  # fmt: skip
  ]
  m = report.build(c, runs, 1.0)
  report_schema.validate_metrics(m, 'metrics')
  eff = {(e['method'], e['name']): e for e in m['effects']}
  pica = eff[('PiCA', 'held-out EM (test splits)')]
  # PiCA ran on seeds 0 and 1 only: differences +0.1 and 0.
  assert pica['num_seeds'] == 2 and pica['mean'] == pytest.approx(0.05)
  oracle = eff[('oracle hazard', 'compositional EM')]
  assert oracle['num_seeds'] == 3
  assert oracle['mean'] == pytest.approx((0.3 + 0.1 + 0.4) / 3)
  assert m['summary']['heldout_em_outcome_only'] == pytest.approx(0.7 / 3)
  # tiny's eval.samples = 2: the k-sample EM gets its own effect rows
  sampled = eff[('PiCA', 'held-out EM (2 samples)')]
  assert sampled['mean'] == pytest.approx(0.05 / 2)
  assert m['summary']['heldout_em_sampled_oracle'] == pytest.approx(0.25)
  assert any('did not run for seed 2 (AUC low)' in n for n in m['notes'])


def test_over_search_penalty_fires_only_with_room_for_it():
  from experiments.pica.configs import paper
  from pica.stages import report

  assert not report.penalty_can_fire(config_lib.resolve(tiny.get_config()))
  p = paper.get_config()
  assert report.penalty_can_fire(p)  # 5 turns, the 4th and 5th penalised


def test_information_ends_find_the_end_of_each_observation():
  # response: q0 </s> [i i i] q1 </s> [i i] answer pad
  #   index:   0  1    2 3 4  5  6    7 8    9      10
  gen = np.array([[1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0]], bool)
  real = np.array([[1] * 10 + [0]], bool)
  ends = np.array([[1, 6, -1]])
  np.testing.assert_array_equal(
    hazard.information_ends(ends, gen, real), [[4, 8, -1]]
  )
  np.testing.assert_array_equal(
    hazard.step_ends('query', ends, gen, real), ends
  )
  # a search cut at the end of the response keeps its </search> index
  cut = np.array([[1, 1, 0]], bool)
  np.testing.assert_array_equal(
    hazard.information_ends(np.array([[2]]), cut, np.ones((1, 3), bool)),
    [[2]],
  )
  with pytest.raises(ValueError, match='score_at'):
    hazard.step_ends('answer', ends, gen, real)


class _FakeCtx:
  """A context whose greedy policy answers right and whose sampled one
  answers right on even-numbered keys' first question only."""

  def __init__(self, samples):
    self.config = ml_collections.ConfigDict(
      {'eval': {'num_questions': 3, 'batch_size': 2, 'samples': samples}}
    )
    self.key = np.zeros(2, np.uint32)
    self.questions = ml_collections.ConfigDict()
    self.questions.evals = {
      'test_1hop': [{'golden_answers': [f'a{i}']} for i in range(4)]
    }
    self.calls, self.keys = [], []

  def rollout(self, params, questions, key, temperature=None):
    import types

    self.calls.append(temperature)
    self.keys.append(tuple(np.asarray(key).tolist()))
    greedy = temperature == 0.0
    texts = [
      f'<answer> a{q["golden_answers"][0][1:]} </answer>'
      if greedy or i == 0
      else '<answer> wrong </answer>'
      for i, q in enumerate(questions)
    ]
    return types.SimpleNamespace(
      texts=texts, num_searches=np.full(len(questions), 2 if greedy else 1)
    )


def test_evaluate_adds_the_k_sample_em_at_the_rollout_temperature():
  from pica.stages import evaluation

  ctx = _FakeCtx(samples=0)
  out = evaluation.evaluate(ctx, None)
  # 3 questions (num_questions) in batches of 2: 2 greedy rollouts
  assert out == {'test_1hop_em': 1.0, 'test_1hop_searches': 2.0}
  assert ctx.calls == [0.0, 0.0]
  ctx = _FakeCtx(samples=2)
  out = evaluation.evaluate(ctx, None)
  # sampled: batch [q0, q1] -> q0 right; batch [q2] -> q2 right: 2 of 3
  # questions right in each of the 2 samples; searches stay the greedy ones
  assert out['test_1hop_em'] == 1.0 and out['test_1hop_searches'] == 2.0
  assert out['test_1hop_em_sampled'] == pytest.approx(2 / 3)
  assert ctx.calls == [0.0, None, None, 0.0, None, None]
  sampled_keys = [
    k for k, t in zip(ctx.keys, ctx.calls, strict=True) if t is None
  ]
  assert len(set(sampled_keys)) == 4  # every sample its own key


def test_arm_names_carry_their_algorithm():
  assert config_lib.split_arm('pica_ppo', 'grpo') == ('pica', 'ppo')
  assert config_lib.split_arm('oracle', 'ppo') == ('oracle', 'ppo')
  assert config_lib.baseline_arm('pica_ppo', 'grpo') == 'outcome_ppo'
  assert config_lib.baseline_arm('pica', 'grpo') == 'outcome'
  c = tiny.get_config()
  c.arms = ('outcome', 'pica', 'outcome_ppo', 'pica_ppo')
  assert config_lib.resolve(c).arms == c.arms


@pytest.mark.parametrize(
  'arms,rl_update,match',
  [
    (('outcome', 'pica_ppo'), {}, "baseline arm 'outcome_ppo' for 'pica_ppo'"),
    (('outcome', 'outcome_grpo'), {}, "'outcome_grpo' is 'outcome'"),
    (
      ('outcome', 'outcome_ppo'),
      {'critic_learning_rate': None},
      'critic_learning_rate is required with a PPO arm',
    ),
    (('outcome', 'pica_sgd'), {}, "unknown name 'pica_sgd'"),
  ],
)
def test_bad_arm_sets_are_refused(arms, rl_update, match):
  c = tiny.get_config()
  c.arms = arms
  c.rl.update(rl_update)
  with pytest.raises(schema.ConfigError, match=match):
    config_lib.resolve(c)


def test_report_compares_each_arm_with_the_baseline_of_its_algorithm():
  from pica.stages import report

  c = tiny.get_config()
  c.eval.samples = 0
  c.arms = ('outcome', 'pica', 'outcome_ppo', 'pica_ppo')
  c = config_lib.resolve(c)
  c.seeds = (0, 1, 2)
  em = {'sft': 0.1, 'outcome': 0.2, 'pica': 0.3}
  em |= {'outcome_ppo': 0.25, 'pica_ppo': 0.45}
  runs = [_fake_run(s, em) for s in range(3)]
  for r in runs:  # _fake_run has histories only for the GRPO arms' names
    r['histories'].update({a: r['histories']['pica'] for a in em})
  m = report.build(c, runs, 1.0)
  got = {
    (e['method'], e['baseline'], e['name']): e['mean'] for e in m['effects']
  }
  held = 'held-out EM (test splits)'
  assert got[('PiCA', 'outcome-only', held)] == pytest.approx(0.1)
  assert got[('PiCA (PPO)', 'outcome-only (PPO)', held)] == pytest.approx(0.2)
  assert got[('outcome-only (PPO)', 'outcome-only', held)] == pytest.approx(
    0.05
  )
  assert got[('PiCA (PPO)', 'PiCA', held)] == pytest.approx(0.15)
  assert len(got) == 8  # 4 pairs x (held-out, compositional)
  assert 'EM PiCA (PPO)' in m['tables'][0]['columns']
  assert any("PiCA (PPO) = 'pica_ppo'" in n for n in m['notes'])
