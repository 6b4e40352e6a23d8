"""The configuration of one distillation run: one dataclass, its YAML file, its flags.

Every field is a command-line flag (``max_length`` -> ``--max-length``) and a YAML key (either
spelling). Values are layered, later wins: the defaults, the offline default run's budget (when
no data is named), the preset, the YAML file, the flags. The resolved configuration is saved
with every run as ``config.yaml`` and ``lgtm distill --config config.yaml`` runs it again.

* ``fields``: ``RunConfig`` (the methods' own options come from their classes);
* ``values``: the converters of texts and YAML values, with one-line messages;
* ``resolve``: layering and the one validation pass;
* ``files``: YAML; ``flags``: the command line (``transformers.HfArgumentParser``).
"""

from lgtm.config.fields import (
    DEFAULT_BUDGET,
    DEFAULT_RUN,
    DEFAULT_RUN_GAIN,
    DEFAULT_TEACHER,
    FIELDS,
    METHODS,
    NOT_RESULT_FIELDS,
    NOT_SAVED_FIELDS,
    PRESET_DATA,
    PRESET_NAMES,
    RunConfig,
)
from lgtm.config.files import load_yaml, locate, save_yaml
from lgtm.config.flags import explicit_from_args, flag, flags_parser
from lgtm.config.resolve import (
    differences,
    drop_ignored,
    parse_value,
    refuse_ignored,
    resolve,
)
from lgtm.config.values import parse_layers
from lgtm.objectives import OBJECTIVES

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_RUN",
    "DEFAULT_RUN_GAIN",
    "DEFAULT_TEACHER",
    "FIELDS",
    "METHODS",
    "NOT_RESULT_FIELDS",
    "NOT_SAVED_FIELDS",
    "OBJECTIVES",
    "PRESET_DATA",
    "PRESET_NAMES",
    "RunConfig",
    "differences",
    "drop_ignored",
    "explicit_from_args",
    "flag",
    "flags_parser",
    "load_yaml",
    "locate",
    "parse_layers",
    "parse_value",
    "refuse_ignored",
    "resolve",
    "save_yaml",
]
