"""``lgtm export``: ONNX files against the PyTorch models they came from (real MiniLM on real
SST-2 text, tiny models elsewhere), vocabulary pruning's exactness on its corpus, the report,
``lgtm evaluate`` / ``predict`` on an exported folder, and every bad input's one-line error."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GLUE, bundled_tokenizer, one_line_error, run

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from lgtm.export import report as R  # noqa: E402
from lgtm.export.command import verdict  # noqa: E402
from lgtm.export.onnx import (  # noqa: E402
    FP32_FILE,
    INT8_FILE,
    OnnxClassifier,
    export_onnx,
    load_onnx_classifier,
)
from lgtm.export.prune import prune_vocabulary  # noqa: E402

SST2 = GLUE / "SST-2"


def sst2_dev(n: int) -> list[tuple[str, int]]:
    """The first ``n`` rows of SST-2's dev file, read with the csv module alone."""
    if not (SST2 / "dev.tsv").is_file():
        pytest.skip(f"SST-2 not found at {SST2}")
    with open(SST2 / "dev.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r["sentence"], int(r["label"])) for r in rows[:n]]


def torch_logits(model, tokenizer, texts: list[str]) -> np.ndarray:
    """The PyTorch model's logits on one padded batch (eval mode)."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).logits.numpy()


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    """A 1-layer BERT classifier (hidden 32, SST-2's class names) with the MiniLM tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # no two weights alike (as after training), predictions that vary
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp("tiny-classifier")
    model.save_pretrained(folder)
    bundled_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[tuple[str, int]]]:
    """96 SST-2 dev rows as a TSV file: the evaluation set and the pruning corpus."""
    rows = sst2_dev(96)
    path = tmp_path_factory.mktemp("corpus") / "dev96.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    return path, rows


@pytest.fixture(scope="module")
def exported(tiny_classifier, corpus, tmp_path_factory) -> tuple[Path, dict, str]:
    """``lgtm export`` of the tiny classifier, int8 and pruned to the corpus: (folder, report,
    stderr)."""
    from lgtm import cli

    out = tmp_path_factory.mktemp("exports") / "tiny"
    path, _ = corpus
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(
            [
                "export",
                str(tiny_classifier),
                "--output-dir",
                str(out),
                "--quantize",
                "int8",
                "--prune-vocab",
                str(path),
                "--text-columns",
                "sentence",
                "--task",
                "sst2",
                "--eval-file",
                str(path),
                "--repeats",
                "2",
                "--max-metric-drop",
                "100",
            ]
        )
    assert status == 0, err.getvalue()
    return out, json.loads((out / "export.json").read_text()), err.getvalue()


# --------------------------------------------------------------------------- exactness


def test_real_minilm_student_onnx_equals_pytorch_on_sst2(tmp_path):
    """The bundled MiniLM's 2-layer student, exported: its ONNX Runtime logits equal PyTorch's
    within 1e-4 on real SST-2 sentences, in a padded batch of 64 and one at a time."""
    from lgtm.models import load_model, student_from_teacher

    texts = [s for s, _ in sst2_dev(64)]
    teacher, tokenizer = load_model("bundled:all-MiniLM-L6-v2", 2)
    student = student_from_teacher(teacher, 2).eval()
    with torch.no_grad():  # a head with weight, so the logits are not all near zero
        student.classifier.weight.normal_(0, 1.0)
    path = export_onnx(student, tokenizer, tmp_path / FP32_FILE)
    session = OnnxClassifier(path, student.config)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = student(**batch).logits
        got = session(**batch).logits
        assert expected.abs().max() > 0.1
        assert (got - expected).abs().max().item() < 1e-4
        one = tokenizer(texts[:1], return_tensors="pt")
        assert (session(**one).logits - student(**one).logits).abs().max().item() < 1e-4

    # pruned to these sentences, the PyTorch student gives exactly the same logits on them
    pruned, pruned_tokenizer, info = prune_vocabulary(student, tokenizer, texts)
    assert len(info.kept) < 2000 and pruned.get_input_embeddings().num_embeddings == len(info.kept)
    np.testing.assert_array_equal(
        torch_logits(pruned, pruned_tokenizer, texts), torch_logits(student, tokenizer, texts)
    )


def test_pruning_keeps_the_corpus_tokens_and_maps_other_words_to_unk(tiny_classifier):
    """The kept tokens are the special tokens and the tokens of the corpus (computed here from
    the tokenizer's own word pieces); corpus words split into the same pieces; a word needing a
    dropped piece becomes [UNK]."""
    from lgtm.models import load_model

    model, tokenizer = load_model(tiny_classifier, 2)
    texts = ["a charming and often affecting journey", "unflinchingly bleak"]
    pruned, pruned_tokenizer, info = prune_vocabulary(model, tokenizer, texts)
    pieces = {p for t in texts for p in tokenizer.tokenize(t)}
    expected = sorted(
        {tokenizer.convert_tokens_to_ids(p) for p in pieces} | set(tokenizer.all_special_ids)
    )
    assert info.kept == expected
    assert len(pruned_tokenizer) == len(expected)
    for text in texts:
        assert pruned_tokenizer.tokenize(text) == tokenizer.tokenize(text)
        assert pruned_tokenizer.convert_ids_to_tokens(
            pruned_tokenizer(text)["input_ids"]
        ) == tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    assert pruned_tokenizer.tokenize("charming zygote") == ["charming", "[UNK]"]
    old = model.get_input_embeddings().weight
    new = pruned.get_input_embeddings().weight
    for new_id, old_id in enumerate(expected):
        assert torch.equal(new[new_id], old[old_id])
    np.testing.assert_array_equal(
        torch_logits(pruned, pruned_tokenizer, texts), torch_logits(model, tokenizer, texts)
    )


def test_exported_pruned_files_match_the_original_student_on_the_corpus(
    exported, tiny_classifier, corpus
):
    """model.onnx (pruned to the corpus) gives the original PyTorch student's logits on the
    corpus within 1e-5; model_int8.onnx is quantised and about as close as int8 allows."""
    from lgtm.models import load_model

    out, _, _ = exported
    texts = [s for s, _ in corpus[1]]
    model, tokenizer = load_model(tiny_classifier, 2)
    expected = torch_logits(model, tokenizer, texts)
    session, pruned_tokenizer = load_onnx_classifier(out)
    assert len(pruned_tokenizer) < 1500
    batch = pruned_tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    got = session(**batch).logits.numpy()
    assert np.abs(got - expected).max() < 1e-5
    int8 = OnnxClassifier(out / INT8_FILE, session.config)
    close = int8(**batch).logits.numpy()
    assert 0 < np.abs(close - expected).max() < 0.2 * np.abs(expected).max()


# --------------------------------------------------------------------------- the report


def test_report_measures_every_model(exported, tiny_classifier):
    """export.json: one row per model, sizes that are the files' sizes, parameter counts,
    latencies at batch 1 and 64, the pruning counts, and the checks."""
    from lgtm.models import count_parameters, load_model

    out, report, err = exported
    assert [r["name"] for r in report["rows"]] == ["student", FP32_FILE, INT8_FILE]
    rows = {r["name"]: r for r in report["rows"]}
    assert rows[FP32_FILE]["size_bytes"] == (out / FP32_FILE).stat().st_size
    assert rows[INT8_FILE]["size_bytes"] == (out / INT8_FILE).stat().st_size
    assert rows["student"]["size_bytes"] == (tiny_classifier / "model.safetensors").stat().st_size
    assert rows[INT8_FILE]["size_bytes"] < rows[FP32_FILE]["size_bytes"]
    model, _ = load_model(tiny_classifier, 2)
    kept = report["pruning"]["kept_tokens"]
    assert rows["student"]["parameters"] == count_parameters(model)
    removed = (30522 - kept) * 32  # embedding rows dropped, hidden size 32
    assert rows[FP32_FILE]["parameters"] == count_parameters(model) - removed
    for row in report["rows"]:
        assert set(row["latency_seconds"]) == {"1", "64"}
        assert all(v > 0 for v in row["latency_seconds"].values())
    # pruned to the evaluation texts: the same predictions, the same accuracy
    assert rows[FP32_FILE]["metrics"] == rows["student"]["metrics"]
    assert report["onnx_max_abs_diff"] < 1e-5
    assert [c["file"] for c in report["checks"]] == [FP32_FILE, INT8_FILE]
    assert (out / "export.md").read_text().count("| ") > 10
    assert "exported model.onnx, model_int8.onnx" in err


def test_a_lossy_file_is_called_so(capsys):
    """A file losing more than --max-metric-drop points: its check fails, the closing line
    says so, the exit status is 1."""
    rows = [
        R.Row("student", "PyTorch", {"accuracy": 0.9}, 0.9, 10, 5, {"1": 1.0, "64": 2.0}),
        R.Row(FP32_FILE, "ONNX Runtime", {"accuracy": 0.9}, 0.9, 8, 5, {"1": 1.0, "64": 2.0}),
        R.Row(INT8_FILE, "ONNX Runtime", {"accuracy": 0.885}, 0.885, 2, 5, {"1": 1, "64": 2}),
    ]
    checks = R.drop_checks(rows, "student", [FP32_FILE, INT8_FILE], 1.0)
    assert [c["ok"] for c in checks] == [True, False]
    assert checks[1]["drop_points"] == pytest.approx(1.5)
    status = verdict({"checks": checks, "main_metric": "accuracy"}, Path("x"))
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1
    assert "model_int8.onnx loses 1.50 points of accuracy" in err and "NOT" in err


# --------------------------------------------------------------------------- evaluate, predict


def test_evaluate_on_an_exported_folder_agrees_with_the_report(exported, corpus, capsys):
    """lgtm evaluate on the folder (model.onnx) and on model_int8.onnx gives the report's
    metrics for those files."""
    out, report, _ = exported
    rows = {r["name"]: r for r in report["rows"]}
    for model, name in ((out, FP32_FILE), (out / INT8_FILE, INT8_FILE)):
        status, stdout, err = run(
            capsys, "evaluate", "--model", model, "--task", "sst2", "--eval-file", corpus[0]
        )
        assert status == 0, err
        metrics = json.loads(stdout)["metrics"]
        assert metrics == {"validation": rows[name]["metrics"]}


def test_predict_on_an_exported_folder(exported, corpus, tiny_classifier, tmp_path, capsys):
    """lgtm predict on the folder writes the PyTorch student's predictions."""
    from lgtm.models import load_model

    out, _, _ = exported
    target = tmp_path / "pred.tsv"
    status, _, err = run(
        capsys, "predict", "--model", out, "--task", "sst2", "--input", corpus[0],
        "--output", target,
    )  # fmt: skip
    assert status == 0, err
    lines = target.read_text().splitlines()
    model, tokenizer = load_model(tiny_classifier, 2)
    expected = torch_logits(model, tokenizer, [s for s, _ in corpus[1]]).argmax(-1)
    assert lines[0] == "index\tprediction"
    assert [int(line.split("\t")[1]) for line in lines[1:]] == expected.tolist()


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line(tmp_path, tiny_classifier, exported, corpus, capsys):
    """Not a model folder, a corpus with no text, --quantize on an exported model, an output
    folder in use, an opset that does not exist: one line, exit status 2."""
    out, _, _ = exported
    data = ["--task", "sst2", "--eval-file", str(corpus[0])]
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_error(capsys, "export", empty, "--output-dir", tmp_path / "o", *data)
    assert "not a model folder" in line
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    line = one_line_error(
        capsys, "export", tiny_classifier, "--output-dir", tmp_path / "o", "--prune-vocab",
        blank, *data,
    )  # fmt: skip
    assert "blank.txt" in line and "no text" in line
    nul = tmp_path / "nul.txt"  # issue #20: 500 NUL bytes were read as one text
    nul.write_bytes(b"\0" * 500)
    invisible = tmp_path / "invisible.tsv"  # a table whose texts are control characters
    invisible.write_text("sentence\tlabel\n\x00\x07\t1\n\ufeff \u200b\t0\n")
    for path in (nul, invisible):
        line = one_line_error(
            capsys, "export", tiny_classifier, "--output-dir", tmp_path / "o", "--prune-vocab",
            path, "--text-columns", "sentence", *data,
        )  # fmt: skip
        assert f"{path}:1: field 'prune_vocab'" in line and "no text" in line
    line = one_line_error(
        capsys, "export", out, "--output-dir", tmp_path / "o", "--quantize", "int8", *data
    )
    assert "already quantised" in line
    line = one_line_error(capsys, "export", tiny_classifier, "--output-dir", out, *data)
    assert "--overwrite" in line
    line = one_line_error(
        capsys, "export", tiny_classifier, "--output-dir", tmp_path / "o", "--opset", "99", *data
    )
    assert "opset 99" in line
    line = one_line_error(
        capsys, "export", tiny_classifier, "--output-dir", tmp_path / "o", "--max-metric-drop",
        "nan", *data,
    )  # fmt: skip
    assert "max_metric_drop" in line
    assert not (tmp_path / "o").exists()


def test_a_failed_export_leaves_the_output_folder_as_it_was(tmp_path, tiny_classifier, corpus,
                                                             exported, capsys):  # fmt: skip
    """An opset the exporter cannot convert to: one line, exit 2, and an earlier export in the
    output folder keeps its files, byte for byte, even with --overwrite."""
    import shutil

    target = tmp_path / "kept"
    shutil.copytree(exported[0], target)
    before = tree(target)
    line = one_line_error(
        capsys, "export", tiny_classifier, "--output-dir", target, "--overwrite", "--opset",
        "14", "--task", "sst2", "--eval-file", corpus[0],
    )  # fmt: skip
    assert "opset 14" in line
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``: relative path -> content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def fake_run(folder: Path) -> Path:
    """A run folder as lgtm distill leaves it (the files the checks look at, not real
    models: every refusal below comes before anything loads)."""
    for role in ("student", "teacher"):
        (folder / role).mkdir(parents=True)
        (folder / role / "config.json").write_text("{}")
        (folder / role / "model.safetensors").write_bytes(b"weights of the " + role.encode())
    (folder / "config.yaml").write_text("task: sst2\n")
    (folder / "metrics.json").write_text("{}")
    return folder


def test_export_never_replaces_a_model_a_run_or_a_users_files(tmp_path, capsys):
    """Issue #20's data loss: an output folder that is the run, the teacher, the student, a
    folder inside the student, or a folder holding the run (beside a user's file), and a
    non-empty folder not written by lgtm export: refused in one line naming the folder and
    field 'output_dir', with or without --overwrite, and every file stays as it was."""
    box = tmp_path / "box"
    run_dir = fake_run(box / "run")
    (box / "other.txt").write_text("a user's file")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    before = tree(tmp_path)
    cases = {
        run_dir: "run folder",
        run_dir / "teacher": "model folder",
        run_dir / "student": "model folder",
        run_dir / "student" / "onnx": "inside the model folder",
        run_dir / "teacher" / "onnx": "inside the model folder",
        box: "run folder",
        tmp_path / "notes": "not an lgtm export",
    }
    for out, words in cases.items():
        for overwrite in (["--overwrite"], []):
            line = one_line_error(capsys, "export", run_dir, "--output-dir", out, *overwrite)
            assert f"{out}: field 'output_dir'" in line and words in line, line
        line = one_line_error(
            capsys, "export", run_dir / "student", "--output-dir", out, "--overwrite"
        )
        assert f"{out}: field 'output_dir'" in line, line
    assert tree(tmp_path) == before
    assert not (run_dir / "student" / "onnx").exists()
    assert not (run_dir / "teacher" / "onnx").exists()


def test_overwrite_replaces_only_an_earlier_export(tmp_path):
    """--overwrite may replace an empty folder or one lgtm export wrote (export.json and
    model.onnx), unless a model folder or a run lies inside it; without it, only an empty
    one is taken."""
    from lgtm.errors import LgtmInputError
    from lgtm.export import check_output_dir

    run_dir = fake_run(tmp_path / "run")
    source, keep = run_dir / "student", [run_dir, run_dir / "teacher"]
    earlier = run_dir / "export"  # the documented place, lgtm distill --export's
    earlier.mkdir()
    for name in ("export.json", FP32_FILE, "config.json"):
        (earlier / name).write_text("{}")
    (run_dir / "empty").mkdir()
    for out in (earlier, run_dir / "empty", run_dir / "new"):
        check_output_dir(out, True, source, keep)  # accepted
    check_output_dir(run_dir / "empty", False, source, keep)
    with pytest.raises(LgtmInputError, match="pass --overwrite"):
        check_output_dir(earlier, False, source, keep)
    (earlier / "mine").mkdir()
    (earlier / "mine" / "config.json").write_text("{}")
    with pytest.raises(LgtmInputError, match="model folder"):
        check_output_dir(earlier, True, source, keep)


# --------------------------------------------------------------------------- at the end of a run


def test_distill_export_at_the_end_of_a_run(glue_dir, tiny_teacher_dir, tmp_path, capsys):
    """lgtm distill --export onnx,int8,prune writes RUN_DIR/export: the teacher, the student
    and both files measured on the run's evaluation set (the student's score is the run's),
    the vocabulary pruned to the run's training text; lgtm export RUN_DIR refuses to replace
    it without --overwrite."""
    out = tmp_path / "run"
    status, _, err = run(
        capsys, "distill", "--task", "sst2", "--data-dir", glue_dir / "SST-2", "--teacher",
        tiny_teacher_dir, "--student-layers", "1", "--method", "online", "--max-train-samples",
        "32", "--max-eval-samples", "32", "--max-length", "32", "--epochs", "1",
        "--batch-size", "8", "--output-dir", out, "--quiet", "--export", "onnx,int8,prune",
    )  # fmt: skip
    assert status == 0, err
    report = json.loads((out / "export" / "export.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "export").stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir makes it
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["teacher", "student", FP32_FILE, INT8_FILE]
    assert rows["student"]["metrics"] == metrics["student"]
    assert rows["teacher"]["metrics"] == metrics["teacher"]
    assert report["eval_examples"] == 32 and report["max_length"] == 32
    assert 100 < report["pruning"]["kept_tokens"] < 2000
    # lgtm evaluate with the flags the report names reads the same examples (issue #20)
    assert "--max-eval-samples" in report["evaluate_flags"]
    for name, model in ((INT8_FILE, out / "export" / INT8_FILE), ("student", out / "student")):
        status, printed, err = run(capsys, "evaluate", "--model", model, *report["evaluate_flags"])
        assert status == 0, err
        scored = json.loads(printed)
        assert scored["examples"] == {"validation": 32}
        assert scored["metrics"]["validation"] == pytest.approx(rows[name]["metrics"])
    from huggingface_hub import ModelCard

    for role in ("student", "teacher"):  # the model cards of the saved folders
        card = ModelCard.load(out / role / "README.md")
        (result,) = card.data.eval_results
        assert result.metric_value == round(metrics[role]["accuracy"], 6)
    line = one_line_error(capsys, "export", out, "--output-dir", out / "export")
    assert "--overwrite" in line
    card = ModelCard.load(out / "export" / "README.md")  # the files' scores, the run's dataset
    student_card = ModelCard.load(out / "student" / "README.md")
    got = {r.metric_name: r for r in card.data.eval_results}
    for name in (FP32_FILE, INT8_FILE):
        result = got[f"accuracy ({name})"]
        assert result.metric_value == round(rows[name]["metrics"]["accuracy"], 6)
        assert result.dataset_name == student_card.data.eval_results[0].dataset_name
    assert card.data.base_model == student_card.data.base_model
    assert f"from the PyTorch student `{out / 'student'}`" in card.text

    # re-exported into the documented place with --overwrite: only RUN_DIR/export changes
    before = {k: v for k, v in tree(out).items() if not k.startswith("export/")}
    status, _, err = run(
        capsys, "export", out, "--output-dir", out / "export", "--overwrite", "--repeats", "1"
    )
    assert status == 0, err
    assert {k: v for k, v in tree(out).items() if not k.startswith("export/")} == before
    assert json.loads((out / "export" / "export.json").read_text())["pruning"] is None
    assert not any(p.name.startswith((".tmp", ".old")) for p in out.iterdir())


# --------------------------------------------------------------------------- issue #20's trial


def test_a_text_is_more_than_whitespace_and_control_characters():
    """is_text: a line of NULs, BOMs, zero-width spaces, tabs is not text; one visible
    character (any script) is."""
    from lgtm.export.prune import is_text, used_token_ids

    for line in ("", "\0" * 500, " \t\r", "\ufeff\u200b\u00a0", "\x07\x1b"):
        assert not is_text(line), repr(line)
    for line in ("a", "\0a\0", " é ", "日本", "!"):
        assert is_text(line), repr(line)
    with pytest.raises(Exception, match="no text"):
        used_token_ids(bundled_tokenizer(), ["\0" * 500, " "])


def test_pruning_a_long_corpus_text_does_not_warn(capfd, caplog):
    """A corpus text longer than the tokenizer's 512 tokens is tokenised whole without
    transformers' "Token indices sequence length is longer" warning, and its ids are those of
    its word pieces and the special tokens (computed from tokenize, which does not warn)."""
    from lgtm.export.prune import used_token_ids

    text = " ".join(s for s, _ in sst2_dev(64))
    capfd.readouterr()
    used, count = used_token_ids(bundled_tokenizer(), [text])  # transformers warns once per
    captured = capfd.readouterr()  # tokenizer: a fresh one, and another for the reference
    assert "sequence length" not in captured.err + captured.out + caplog.text
    tokenizer = bundled_tokenizer()
    pieces = tokenizer.tokenize(text)
    assert len(pieces) > tokenizer.model_max_length
    expected = set(tokenizer.convert_tokens_to_ids(pieces))
    assert used == expected | {tokenizer.cls_token_id, tokenizer.sep_token_id} and count == 1


def test_a_gain_is_called_a_gain(capsys):
    """A file that scores higher than the PyTorch student: "+0.40 points ... gained" in
    export.md and the closing line; a loss is "lost"; one corpus text is "1 text"."""
    rows = [
        R.Row("student", "PyTorch", {"accuracy": 0.756}, 0.756, 10, 5, {"1": 1.0, "64": 2.0}),
        R.Row(FP32_FILE, "ONNX Runtime", {"accuracy": 0.75}, 0.75, 8, 5, {"1": 1.0, "64": 2.0}),
        R.Row(INT8_FILE, "ONNX Runtime", {"accuracy": 0.76}, 0.76, 2, 5, {"1": 1, "64": 2}),
    ]
    checks = R.drop_checks(rows, "student", [FP32_FILE, INT8_FILE], 1.0)
    report = {
        "source": "s", "task": "sst2", "main_metric": "accuracy", "eval_split": "validation",
        "eval_examples": 2, "repeats": 1, "threads": None, "fp32_file": FP32_FILE,
        "onnx_max_abs_diff": None, "rows": [R.row_dict(r) for r in rows], "checks": checks,
        "pruning": {"original_tokens": 30522, "kept_tokens": 5, "corpus_texts": 1},
    }  # fmt: skip
    text = R.markdown(report)
    assert f"- {INT8_FILE}: +0.40 points of accuracy gained against" in text
    assert f"- {FP32_FILE}: 0.60 points of accuracy lost against" in text
    assert "the tokens of 1 text, and" in text
    assert verdict(report, Path("x")) == 0
    err = capsys.readouterr().err
    assert f"{INT8_FILE}: +0.40 points of accuracy gained" in err
    assert f"{FP32_FILE}: 0.60 points of accuracy lost" in err and "-0.40" not in err


def test_the_export_folders_card_describes_its_files(exported, tiny_classifier):
    """README.md of the exported folder: each file's parameters (the pruned count, computed
    here from the embedding rows dropped), size and measured scores, the PyTorch student named
    as the base; not the student's parameter count as a file's."""
    from huggingface_hub import ModelCard

    from lgtm.models import count_parameters, load_model

    out, report, _ = exported
    card = ModelCard.load(out / "README.md")
    rows = {r["name"]: r for r in report["rows"]}
    expected = {
        f"{metric} ({name})": round(value, 6)
        for name in (FP32_FILE, INT8_FILE)
        for metric, value in rows[name]["metrics"].items()
    }
    got = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert got == expected and got[f"accuracy ({INT8_FILE})"] == round(rows[INT8_FILE]["main"], 6)
    model, _ = load_model(tiny_classifier, 2)
    pruned = count_parameters(model) - (30522 - report["pruning"]["kept_tokens"]) * 32
    lines = {line.split(" | ")[0]: line for line in card.text.splitlines() if line.startswith("|")}
    assert (
        f"| {pruned:,} | {(out / FP32_FILE).stat().st_size / 1e6:.1f} |" in lines[f"| {FP32_FILE}"]
    )
    assert f"{count_parameters(model):,}" in lines["| student (the base; not in this folder)"]
    assert f"from the PyTorch student `{tiny_classifier}`" in card.text


def test_evaluate_a_path_that_does_not_exist(tmp_path, monkeypatch, capsys):
    """lgtm evaluate --model rt-onnx/nothere.onnx: the path does not exist (not "no
    config.json"), one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rt-onnx").mkdir()
    for model in ("rt-onnx/nothere.onnx", "nothere"):
        line = one_line_error(capsys, "evaluate", "--model", model, "--task", "sst2")
        assert f"{model}: field 'model': does not exist" in line


def test_distill_export_int8_or_prune_needs_onnx(tmp_path, capsys):
    """lgtm distill --export int8 (or prune) without onnx: refused while the arguments are
    read, before anything loads or the output folder is made; the same from a YAML file. A
    RUN_DIR/export that holds a user's files: refused before the run starts, not after it."""
    from lgtm import config as cfg
    from lgtm.errors import LgtmInputError

    for formats in ("int8", "prune", "int8,prune"):
        line = one_line_error(
            capsys, "distill", "--export", formats, "--output-dir", tmp_path / "run"
        )
        assert "--export" in line and "onnx" in line
    assert not (tmp_path / "run").exists()
    mine = tmp_path / "mine" / "export"  # a folder of the user's where --export would write
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    line = one_line_error(  # (a teacher that does not exist: were the folder not checked
        capsys, "distill", "--export", "onnx", "--output-dir", mine.parent,  # first, the run
        "--teacher", tmp_path / "no-teacher",  # would stop there, not train)
    )  # fmt: skip
    assert f"{mine}: field 'output_dir'" in line and "not an lgtm export" in line
    assert [p.name for p in mine.parent.iterdir()] == ["export"]
    assert (mine / "notes.txt").read_text() == "mine"
    config = tmp_path / "c.yaml"
    config.write_text("export: [int8]\n")
    with pytest.raises(LgtmInputError, match="field 'export': int8 needs onnx"):
        cfg.load_yaml(config)
    config.write_text("export: [onnx, int8]\n")
    assert cfg.load_yaml(config)["export"] == ["onnx", "int8"]
