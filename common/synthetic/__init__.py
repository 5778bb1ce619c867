"""Embedded, seeded task worlds shared by the LM experiments.

* Knowledge world (`build_knowledge_world`): entities, facts, a
  Search-R1-format corpus with distractors, and 1-3 hop questions with
  golden decompositions; splits train / test (held-out entities) /
  compositional (held-out relation chains).
* Arithmetic (`make_problems`): multi-step integer problems with direct and
  calculator-tool targets; a safe calculator (`calculator.evaluate`).
* Safety (`safety`): a benign refusal / unlearning world: general tasks
  (one-hop knowledge QA, arithmetic) plus requests about made-up
  restricted topics, answered with made-up recipes or the refusal string
  (`build_safety_task`, `SafetyTask`).
* Golden traces (`traces`) for SFT warm-up, JSONL readers/writers in the
  real Search-R1/FlashRAG formats, a small lexical retriever, one tokenizer
  vocabulary for all of it, and tfds builders (`tfds_builders.load`).

`tfds_builders` is not imported here (it imports tensorflow_datasets);
import it explicitly.
"""

from common.synthetic import arithmetic
from common.synthetic import calculator
from common.synthetic import relations
from common.synthetic import safety
from common.synthetic import traces
from common.synthetic.arithmetic import ArithmeticConfig
from common.synthetic.arithmetic import ArithmeticProblem
from common.synthetic.arithmetic import make_problems
from common.synthetic.calculator import CalculatorError
from common.synthetic.jsonl_io import read_corpus_jsonl
from common.synthetic.jsonl_io import read_questions_jsonl
from common.synthetic.jsonl_io import write_corpus_jsonl
from common.synthetic.jsonl_io import write_questions_jsonl
from common.synthetic.jsonl_io import write_world_jsonl
from common.synthetic.knowledge_world import SPLITS
from common.synthetic.knowledge_world import Entity
from common.synthetic.knowledge_world import Fact
from common.synthetic.knowledge_world import KnowledgeWorld
from common.synthetic.knowledge_world import KnowledgeWorldConfig
from common.synthetic.knowledge_world import build_knowledge_world
from common.synthetic.lexical_search import LexicalIndex
from common.synthetic.safety import REFUSAL
from common.synthetic.safety import RESTRICTED_TOPICS
from common.synthetic.safety import SafetyTask
from common.synthetic.safety import SafetyTaskConfig
from common.synthetic.safety import build as build_safety_task
from common.synthetic.traces import arithmetic_direct_trace
from common.synthetic.traces import arithmetic_prompt
from common.synthetic.traces import arithmetic_tool_trace
from common.synthetic.traces import extract_answer
from common.synthetic.traces import format_documents
from common.synthetic.traces import golden_search_trace
from common.synthetic.traces import search_prompt
from common.synthetic.vocabulary import build_tokenizer
from common.synthetic.vocabulary import vocabulary_texts

__all__ = [
  'SPLITS',
  'ArithmeticConfig',
  'ArithmeticProblem',
  'CalculatorError',
  'Entity',
  'Fact',
  'KnowledgeWorld',
  'KnowledgeWorldConfig',
  'LexicalIndex',
  'REFUSAL',
  'RESTRICTED_TOPICS',
  'SafetyTask',
  'SafetyTaskConfig',
  'arithmetic',
  'arithmetic_direct_trace',
  'arithmetic_prompt',
  'arithmetic_tool_trace',
  'build_safety_task',
  'build_knowledge_world',
  'build_tokenizer',
  'calculator',
  'extract_answer',
  'format_documents',
  'golden_search_trace',
  'make_problems',
  'read_corpus_jsonl',
  'read_questions_jsonl',
  'relations',
  'safety',
  'search_prompt',
  'traces',
  'vocabulary_texts',
  'write_corpus_jsonl',
  'write_questions_jsonl',
  'write_world_jsonl',
]
