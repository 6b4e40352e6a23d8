"""Data layer: task registry, the table parser, every data source, feedback split and encoding.

Modules: ``tasks`` (the task registry), ``examples`` (:class:`Example`, :class:`TaskData`),
``table`` (CSV / TSV / JSON Lines parsing), the sources ``glue`` (a GLUE folder), ``hub`` (the
Hugging Face hub), ``default`` (the offline default data), ``user`` (the user's own files),
and ``splits`` and ``encode``.
"""

from lgtm.data.default import load_default
from lgtm.data.examples import Example, TaskData
from lgtm.data.glue import load_glue_dir
from lgtm.data.hub import load_hf_glue
from lgtm.data.splits import split_feedback, stratified_indices, subsample
from lgtm.data.tasks import TASKS, Task, custom_task, get_task
from lgtm.data.user import load_table, read_table, table_task

__all__ = [
    "TASKS",
    "Example",
    "Task",
    "TaskData",
    "custom_task",
    "get_task",
    "load_default",
    "load_glue_dir",
    "load_hf_glue",
    "load_table",
    "read_table",
    "split_feedback",
    "stratified_indices",
    "subsample",
    "table_task",
]
