"""Data layer: task registry, readers for every source, feedback split and encoding."""

from lgtm.data.readers import (
    Example,
    TaskData,
    load_default,
    load_glue_dir,
    load_hf_glue,
    load_table,
    read_table,
    table_task,
)
from lgtm.data.splits import split_feedback, stratified_indices, subsample
from lgtm.data.tasks import TASKS, Task, custom_task, get_task

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
