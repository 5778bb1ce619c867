"""Config schemas: declare an experiment's fields once, check them up front."""

from common.schema.fields import Check
from common.schema.fields import ConfigError
from common.schema.fields import anything
from common.schema.fields import boolean
from common.schema.fields import choice
from common.schema.fields import dataclass_kwargs
from common.schema.fields import fail
from common.schema.fields import integer
from common.schema.fields import names
from common.schema.fields import number
from common.schema.fields import optional
from common.schema.fields import probability
from common.schema.fields import seeds
from common.schema.fields import sequence
from common.schema.fields import string
from common.schema.fields import validate

__all__ = [
  'Check',
  'ConfigError',
  'anything',
  'boolean',
  'choice',
  'dataclass_kwargs',
  'fail',
  'integer',
  'names',
  'number',
  'optional',
  'probability',
  'seeds',
  'sequence',
  'string',
  'validate',
]
