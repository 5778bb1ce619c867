"""Trajectory format, the tool environment, Tool-Star files, fuzzing."""

import json

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from common.retrieval import BM25Retriever
from common.sampling import multiturn
from e3tir import data
from e3tir import tools
from e3tir import trajectory

GOOD = '<calc> 12 * 7 </calc> <result> 84 </result> <answer> 84 </answer>'
DOCS = [
  {'id': '0', 'contents': '"Kalo"\nKalo was born in Varen.'},
  {'id': '1', 'contents': '"Thanu"\nThanu was founded by Kalo.'},
]


def env():
  return tools.ToolIntegratedEnvironment(
    {
      'calc': tools.calculator_tool,
      'search': tools.retrieval_tool(BM25Retriever(DOCS), 1),
    }
  )


def test_parse_and_score():
  p = trajectory.parse(GOOD)
  assert p.ok and p.calls == (('calc', '12 * 7'),) and p.answer == '84'
  assert trajectory.score(GOOD, ['84'], 'math') == 1.0
  assert trajectory.score(GOOD, ['85'], 'math') == 0.0
  bad = {
    '<calc> 1 + 2 </calc> <answer> 3 </answer>': 'not followed by <result>',
    '<calc> 1 + 2 <answer> 3 </answer>': 'inside <calc>',
    '<answer> 3 </answer> <calc> 1 </calc>': 'after the answer',
    '<result> 3 </result> <answer> 3 </answer>': 'without a tool call',
    '<calc> 1 + 2': 'unclosed <calc>',
    'just text': 'no <answer>',
  }
  for text, why in bad.items():
    p = trajectory.parse(text)
    assert not p.ok and why in p.error, (text, p.error)
    assert trajectory.score(text, ['3'], 'math', format_penalty=-1.0) == -1.0
  four = ' '.join(['<calc> 1 </calc> <result> 1 </result>'] * 4)
  assert 'tool calls > 3' in trajectory.parse(f'{four} <answer> 1 </answer>',
                                              max_calls=3).error  # fmt: skip
  assert trajectory.score('<answer> Kalo </answer>', ['kalo'], 'qa') == 1.0
  f1 = trajectory.score('<answer> Kalo Varen </answer>', ['Kalo'], 'qa', 'f1')
  assert f1 == pytest.approx(2 / 3)


def test_check_trajectory_names_where():
  with pytest.raises(ValueError, match=r'expert 3: .*unclosed <search>'):
    trajectory.check_trajectory('<search> x', 'expert 3')


def test_environment_tools_and_errors():
  e = env()
  calls = [
    multiturn.ToolCall(0, 'calc', '<calc> 6 * 7 </calc>'),
    multiturn.ToolCall(1, 'calc', '<calc> 1 / 0 </calc>'),
    multiturn.ToolCall(2, 'search', '<search> who founded Thanu </search>'),
    multiturn.ToolCall(3, None, 'rambling without a tag'),
    multiturn.ToolCall(4, 'calc', '<calc> </calc>'),
  ]
  out = e.respond(calls)
  assert out[0].text.strip() == '<result> 42 </result>' and not out[0].failed
  assert 'division by zero' in out[1].text and out[1].failed and out[1].served
  assert out[2].text.strip().startswith('<information>Doc 1(Title: "Thanu")')
  assert not out[3].served and 'warning' in out[3].text
  assert not out[4].served


def test_raising_tool_is_reported_not_raised():
  def boom(_):
    raise RuntimeError('backend down')

  e = tools.ToolIntegratedEnvironment({'calc': boom})
  (o,) = multiturn.safe_respond(
    e, [multiturn.ToolCall(0, 'calc', '<calc> 1 </calc>')]
  )
  assert o.failed and 'RuntimeError' in o.text


def test_tool_table_is_checked():
  with pytest.raises(ValueError, match='unknown tool tag'):
    tools.ToolIntegratedEnvironment({'python': tools.calculator_tool})
  with pytest.raises(ValueError, match='not callable'):
    tools.ToolIntegratedEnvironment({'calc': 3})


WORDS = st.sampled_from(
  ['<calc>', '</calc>', '<result>', '</result>', '<search>', '</search>',
   '<information>', '</information>', '<answer>', '</answer>', '<think>',
   '</think>', '<warning>', '1', '+', '/', '0', '(', 'x', 'Kalo', '<', '>']
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS, max_size=20), st.sampled_from(['math', 'qa']))
def test_fuzz_malformed_output_is_penalised_never_raises(words, kind):
  text = ' '.join(words)
  r = trajectory.score(text, ['1'], kind, 'f1', -1.0, max_calls=3)
  p = trajectory.parse(text, max_calls=3)
  assert (r == -1.0) if not p.ok else (0.0 <= r <= 1.0)
  tag = next((t for t in ('calc', 'search') if f'</{t}>' in text), None)
  (o,) = multiturn.safe_respond(env(), [multiturn.ToolCall(0, tag, text)])
  assert isinstance(o.text, str)


def records():
  return [
    data.Record('What is 12 * 7?', ('84',), 'math', 'grpo_mix', GOOD),
    data.Record('Who founded Thanu?', ('Kalo', 'K.'), 'qa'),
  ]


def test_jsonl_round_trip_and_fields(tmp_path):
  path = data.write_jsonl(tmp_path / 'rl.jsonl', records())
  row = json.loads(open(path).readline())
  assert row['reward_model']['ground_truth'] == '84'
  assert row['data_source'] == 'grpo_mix' and row['question']
  assert data.read(path) == records()


def test_parquet_round_trip(tmp_path):
  path = data.write_parquet(tmp_path / 'rl.parquet', records())
  assert data.read(path) == records()


def test_jsonl_errors_name_file_line_field(tmp_path):
  p = tmp_path / 'bad.jsonl'
  rows = [data.to_row(records()[0], 0), {'question': 'q?', 'reward_model': {}}]
  p.write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
  with pytest.raises(ValueError, match=r'bad.jsonl:2: field "reward_model.gr'):
    data.read(p)
  unclosed = dict(
    rows[0], expert_trajectory='<calc> 1 + 2 <answer> 3 </answer>'
  )
  p.write_text(json.dumps(unclosed) + '\n')
  with pytest.raises(
    ValueError, match=r'bad.jsonl:1: field "expert_trajectory".*inside <calc>'
  ):
    data.read(p)
  p.write_text(json.dumps(dict(rows[0], ability='code')) + '\n')
  with pytest.raises(ValueError, match=r':1: field "ability"'):
    data.read(p)
