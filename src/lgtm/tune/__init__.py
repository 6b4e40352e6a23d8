"""``lgtm tune``: settings found on the selection set by an Optuna study, never touching dev.

``tune(explicit, TuneSettings(trials=12, output_dir=...))`` runs or continues the study;
``lgtm.tune.space`` holds the search space (``--search``), ``lgtm.tune.outputs`` what is written.
"""

from lgtm.tune.space import DEFAULT_SPACE, TUNABLE, Range, default_space, parse_search
from lgtm.tune.study import TuneSettings, trial_config, tune

__all__ = [
    "DEFAULT_SPACE",
    "TUNABLE",
    "Range",
    "TuneSettings",
    "default_space",
    "parse_search",
    "trial_config",
    "tune",
]
