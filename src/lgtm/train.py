"""The Python API of a run, in one place: ``distill(config)`` and the pieces tests and scripts
use. The run itself is ``lgtm.run``; this module only gathers public names."""

from lgtm.batches import Batches, to_device
from lgtm.evaluation import evaluate, predict_logits
from lgtm.finetune import TeacherFinetune
from lgtm.loop import LoopState
from lgtm.run import RunResult, distill, make_optimizer, prepare_output_dir
from lgtm.rundata import RunData, default_output_dir, load_data, task_name
from lgtm.runmodels import build_models, load_weights, plain_model, set_label_names

__all__ = [
    "Batches",
    "LoopState",
    "RunData",
    "RunResult",
    "TeacherFinetune",
    "build_models",
    "default_output_dir",
    "distill",
    "evaluate",
    "load_data",
    "load_weights",
    "make_optimizer",
    "plain_model",
    "predict_logits",
    "prepare_output_dir",
    "set_label_names",
    "task_name",
    "to_device",
]
