"""One tokenizer vocabulary for the embedded worlds.

`build_tokenizer` collects every text a world can produce (documents,
questions, answers, sub-queries, templates, instructions, thoughts, the
calculator's error replies) so that golden traces and prompts of all
splits, held-out ones included, tokenize without `<unk>`.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence

from common.synthetic import arithmetic
from common.synthetic import traces
from common.synthetic.knowledge_world import KnowledgeWorld
from common.tokenizers import WordTokenizer


def vocabulary_texts(
  world: KnowledgeWorld | None = None,
  problems: Iterable[arithmetic.ArithmeticProblem] = (),
) -> list[str]:
  """Texts covering a world's and/or arithmetic problems' vocabulary."""
  out = traces.template_texts()
  if world is not None:
    out.extend(world.texts())
  out.extend(arithmetic.template_texts())
  for p in problems:
    out.append(p.question)
  return out


def build_tokenizer(
  world: KnowledgeWorld | None = None,
  problems: Iterable[arithmetic.ArithmeticProblem] = (),
  extra_texts: Iterable[str] = (),
  extra_tokens: Sequence[str] = (),
  strict: bool = False,
) -> WordTokenizer:
  """A `WordTokenizer` whose vocabulary covers the given worlds.

  Args:
    world: a knowledge world (optional).
    problems: arithmetic problems (optional; numbers need no vocabulary,
      the word problems' words do).
    extra_texts: any further texts (e.g. a custom prompt).
    extra_tokens: further single-token tags.
    strict: make `encode` raise on unknown words.

  Returns:
    The tokenizer.
  """
  texts = vocabulary_texts(world, problems) + list(extra_texts)
  return WordTokenizer.build(texts, extra_tokens=extra_tokens, strict=strict)
