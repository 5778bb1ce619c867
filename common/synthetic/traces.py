"""Golden traces and prompt formatting for SFT warm-up.

Search traces follow Search-R1's protocol (`search_r1/llm_agent/
generation.py`): reasoning in `<think>`, a query in `<search>`, retrieved
documents in `<information>` formatted as `Doc i(Title: t) text`, and the
final `<answer>`. Arithmetic traces call the calculator with `<calc>` and
read its reply in `<result>`. Traces are the response only; the prompt is
built separately (`search_prompt`, `arithmetic_prompt`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

from common.synthetic import relations as rel
from common.synthetic.arithmetic import ArithmeticProblem

# Search-R1 `scripts/data_process/nq_search.py::make_prefix` (base models).
SEARCH_R1_INSTRUCTION = (
  'Answer the given question. You must conduct reasoning inside <think> and '
  '</think> first every time you get new information. After reasoning, if '
  'you find you lack some knowledge, you can call a search engine by '
  '<search> query </search> and it will return the top searched results '
  'between <information> and </information>. You can search as many times '
  'as your want. If you find no further external knowledge needed, you can '
  'directly provide the answer inside <answer> and </answer>, without '
  'detailed illustrations. For example, <answer> Beijing </answer>. '
)
ARITHMETIC_INSTRUCTION = (
  'Solve the problem. You can call a calculator by <calc> expression '
  '</calc> and it returns <result> value </result>. Give the final answer '
  'inside <answer> and </answer>. '
)
_THINK_FIRST = 'I need {np}.'
_THINK_FOUND = '{NP} is {a}.'
_THINK_NEXT = 'Now I need {np}.'
_THINK_SEARCH = 'I will search for {q}.'

Retriever = Callable[[str], Sequence[Mapping]]


def search_prompt(question: str, instruction: bool = True) -> str:
  """The Search-R1 prompt: instruction (optional) + `Question: q?`."""
  q = question.strip()
  if not q.endswith('?'):
    q += '?'
  return (SEARCH_R1_INSTRUCTION if instruction else '') + f'Question: {q}\n'


def arithmetic_prompt(problem: ArithmeticProblem, instruction=True) -> str:
  """Prompt for an arithmetic problem (tool instruction optional)."""
  head = ARITHMETIC_INSTRUCTION if instruction else ''
  return f'{head}Problem: {problem.question}\n'


def format_documents(documents: Sequence[Mapping]) -> str:
  """Search-R1's `_passages2string`: `Doc i(Title: t) text` lines.

  Args:
    documents: `{"contents": '"Title"\\ntext'}` dicts (other keys ignored).

  Returns:
    One line per document.
  """
  lines = []
  for i, d in enumerate(documents):
    title, _, text = d['contents'].partition('\n')
    lines.append(f'Doc {i + 1}(Title: {title}) {text}')
  return '\n'.join(lines)


def information_block(documents: Sequence[Mapping]) -> str:
  """`<information>...</information>` around formatted documents."""
  return f'<information>{format_documents(documents)}</information>'


def _sentence(text: str) -> str:
  return text[:1].upper() + text[1:]


def _hop_phrase(question: Mapping, hop: int) -> str:
  """'the founder of Vel Corp': the hop's relation phrase on its subject."""
  step = question['decomposition'][hop]
  return (
    rel.RELATIONS[question['relations'][hop]].np[0].format(s=step['subject'])
  )


def golden_search_trace(
  question: Mapping,
  documents: Mapping[str, Mapping] | None = None,
  retrieve: Retriever | None = None,
  ensure_golden: bool = True,
  think: bool = True,
) -> str:
  """A Search-R1 style golden trace from a question's decomposition.

  For each hop: a thought naming what is needed (and what the previous hop
  found), `<search> sub-query </search>`, the retrieved documents; then a
  final thought and `<answer> answer </answer>` (the first golden answer).

  Args:
    question: a question dict with `decomposition` (`query`, `answer`,
      `doc_id` per hop) and `golden_answers`. Knowledge-world questions
      also carry `relations` and a `subject` per hop, which word the
      thoughts ("The founder of X is Y."); without them each thought is
      "I will search for <query>." and there is no final thought.
    documents: `doc_id -> document`; needed when `retrieve` is None (the
      information block then holds only the golden document) or when
      `ensure_golden` must insert it.
    retrieve: `query -> ranked documents` (e.g. a top-k retriever).
    ensure_golden: if the golden document is not among the retrieved ones,
      it replaces the last of them, so the trace stays answerable.
    think: include `<think>` blocks.

  Returns:
    The trace text (the model's response, without the prompt).
  """
  dec = question.get('decomposition')
  if not dec:
    raise ValueError(f'question {question.get("id")!r} has no decomposition')
  if retrieve is None and documents is None:
    raise ValueError('pass documents (doc_id -> document) or a retriever')
  parts = []
  worded = all('subject' in st for st in dec) and all(
    r in rel.RELATIONS for r in question.get('relations') or ['?']
  )
  for i, step in enumerate(dec):
    if think:
      if not worded:
        thought = _THINK_SEARCH.format(q=step['query'])
      elif i == 0:
        thought = _THINK_FIRST.format(np=_hop_phrase(question, 0))
      else:
        found = _THINK_FOUND.format(
          NP=_sentence(_hop_phrase(question, i - 1)), a=dec[i - 1]['answer']
        )
        nxt = _THINK_NEXT.format(np=_hop_phrase(question, i))
        thought = f'{found} {nxt}'
      parts.append(f'<think> {thought} </think>')
    parts.append(f'<search> {step["query"]} </search>')
    docs = _retrieve(step, documents, retrieve, ensure_golden)
    parts.append(information_block(docs))
  answer = question['golden_answers'][0]
  if think and worded:
    last = _THINK_FOUND.format(
      NP=_sentence(_hop_phrase(question, len(dec) - 1)), a=dec[-1]['answer']
    )
    parts.append(f'<think> {last} </think>')
  parts.append(f'<answer> {answer} </answer>')
  return ' '.join(parts)


def _retrieve(step, documents, retrieve, ensure_golden) -> list:
  golden = None
  if documents is not None:
    if step['doc_id'] not in documents:
      raise KeyError(f'golden doc_id {step["doc_id"]!r} not in documents')
    golden = documents[step['doc_id']]
  if retrieve is None:
    return [golden]
  docs = list(retrieve(step['query']))
  if not docs:
    raise ValueError(f'retriever returned nothing for {step["query"]!r}')
  if ensure_golden and all(str(d['id']) != step['doc_id'] for d in docs):
    if golden is None:
      raise ValueError('ensure_golden needs documents (doc_id -> document)')
    docs[-1] = golden
  return docs


def arithmetic_direct_trace(problem: ArithmeticProblem) -> str:
  """`<answer> 69 </answer>`."""
  return f'<answer> {problem.answer} </answer>'


def arithmetic_tool_trace(problem: ArithmeticProblem) -> str:
  """One `<calc> a op b </calc> <result> r </result>` per step, then answer."""
  parts = [
    f'<calc> {e} </calc> <result> {r} </result>' for e, r in problem.steps
  ]
  parts.append(arithmetic_direct_trace(problem))
  return ' '.join(parts)


def extract_tag(text: str, tag: str) -> list[str]:
  """Contents of every `<tag> ... </tag>` in `text`, stripped, in order."""
  if not re.fullmatch(r'\w+', tag):
    raise ValueError(f'tag must be a bare name like "answer", got {tag!r}')
  return [
    m.strip() for m in re.findall(rf'<{tag}>(.*?)</{tag}>', text, re.DOTALL)
  ]


def extract_answer(text: str) -> str | None:
  """The last `<answer>` content, or None when there is none."""
  found = extract_tag(text, 'answer')
  return found[-1] if found else None


def template_texts() -> list[str]:
  """Instruction and thought words (for tokenizer vocabularies)."""
  out = [SEARCH_R1_INSTRUCTION, ARITHMETIC_INSTRUCTION, 'Question: Problem:']
  for t in (_THINK_FIRST, _THINK_FOUND, _THINK_NEXT, _THINK_SEARCH):
    out.append(re.sub(r'\{\w+\}', ' ', t))
  out.append('Doc (Title: ) error: division by zero')
  return out
