"""The transfer set: unlabelled text the teacher labels for the student.

Its rows (from a file, or the training rows the labelled sample leaves out) are read without
their labels, drawn beside the labelled batch each step in their own seeded order, resumed
exactly, and refused in one line when they are unusable. A frozen teacher's outputs on them are
computed once and cached. The losses on a batch that mixes both kinds of sample are checked
against autograd references in test_methods.py and test_baselines.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_line_error, run_config, write, write_table

from lgtm import train
from lgtm.batches import Batches, MixedBatches
from lgtm.errors import LgtmInputError

WORDS = "good bad great awful fine dull superb boring lovely weak".split()


def sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (text, label) rows of a learnable task: 'positive' words vs 'negative' words;
    every text distinct (a running number in it)."""
    rng = np.random.default_rng(seed)
    pos, neg = WORDS[0::2], WORDS[1::2]
    rows = []
    for i in range(n):
        label = i % 2
        words = " ".join(rng.choice(pos if label else neg, size=4))
        rows.append((f"{words} {seed * 1000 + i}", str(label)))
    return rows


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    return (
        write_table(tmp_path / "train.tsv", sentences(60, 1)),
        write_table(tmp_path / "dev.tsv", sentences(20, 2)),
    )


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the two streams


def features(n: int, offset: int = 0) -> list[dict]:
    return [{"example_id": offset + i} for i in range(n)]


def ids(batch_features: list[dict]) -> list[int]:
    return [f["example_id"] for f in batch_features]


def test_each_step_takes_both_streams_and_an_epoch_is_the_longer():
    labelled = Batches(features(10), list, 4, seed=0, stream=2)
    transfer = Batches(features(23, offset=100), list, 5, seed=0, stream=102)
    mixed = MixedBatches(labelled, transfer)
    assert mixed.per_epoch == 5  # ceil(23 / 5) transfer batches; 3 labelled ones
    seen_transfer: list[int] = []
    for step in range(5):
        rows = ids(mixed.get(step))
        assert [i < 100 for i in rows] == sorted((i < 100 for i in rows), reverse=True)
        seen_transfer += [i for i in rows if i >= 100]
        assert mixed.global_size(step) == len(rows)
    assert sorted(seen_transfer) == list(range(100, 123))  # every transfer row once an epoch
    # the labelled stream restarts, in a new order, when it runs out (step 3 = its epoch 1)
    first = [i for s in range(3) for i in ids(mixed.get(s)) if i < 100]
    assert sorted(first) == list(range(10))
    assert ids(labelled.features_at(3)) != ids(labelled.features_at(0))
    assert ids(mixed.get(7)) == ids(mixed.get(7))  # a pure function of the step (resume)


def test_processes_share_each_step_between_them():
    def mixed(rank: int, world: int) -> MixedBatches:
        return MixedBatches(
            Batches(features(9), list, 4, 0, 2, rank=rank, world=world),
            Batches(features(11, 100), list, 3, 0, 102, rank=rank, world=world),
        )

    one, parts = mixed(0, 1), [mixed(r, 2) for r in range(2)]
    for step in range(8):
        together = sorted(i for part in parts for i in ids(part.get(step)))
        assert together == sorted(ids(one.get(step)))
        assert parts[0].global_size(step) == one.global_size(step)


# --------------------------------------------------------------------------- reading it


def load(tmp_path, data, tiny_teacher_dir, **over):
    from lgtm.rundata import load_data

    return load_data(run_config(tiny_teacher_dir, data, tmp_path / "out", method="kd", **over))


def test_transfer_from_train_is_the_rest_of_train_without_labels(tmp_path, data, tiny_teacher_dir):
    run = load(tmp_path, data, tiny_teacher_dir, max_train_samples=20, transfer_from_train=True)
    labelled = {e.id for e in run.train + run.feedback}
    rest = {e.id for e in run.transfer.examples}
    assert len(labelled) == 20 and len(rest) == 40 and not labelled & rest
    assert labelled | rest == set(range(60))
    assert all(e.label is None for e in run.transfer.examples)
    record = run.transfer.record()
    assert (record["rows"], record["read"], record["dropped_in_eval"]) == (40, 40, 0)
    smaller = load(
        tmp_path,
        data,
        tiny_teacher_dir,
        max_train_samples=20,
        transfer_from_train=True,
        max_transfer_samples=15,
    )
    assert len(smaller.transfer.examples) == 15
    assert {e.id for e in smaller.transfer.examples} <= rest


def test_transfer_rows_that_are_scored_are_dropped(tmp_path, data, tiny_teacher_dir):
    dev = [text for text, _ in sentences(20, 2)]
    rows = [(text, "x") for text, _ in sentences(10, 3)] + [(dev[3], "x"), (f"  {dev[7]} ", "x")]
    path = write_table(tmp_path / "extra.tsv", rows)
    run = load(tmp_path, data, tiny_teacher_dir, transfer_file=str(path))
    texts = {e.texts[0] for e in run.transfer.examples}
    assert run.transfer.dropped_in_eval == 2 and len(texts) == 10
    assert dev[3] not in texts and all(e.id < 0 for e in run.transfer.examples)
    assert json.dumps(run.transfer.record())  # metrics.json can hold it


def test_plain_text_one_example_a_line(tmp_path, data, tiny_teacher_dir):
    path = write(tmp_path / "extra.txt", "first text\n\nsecond text\r\nthird\n")
    run = load(tmp_path, data, tiny_teacher_dir, transfer_file=str(path))
    assert [e.texts for e in run.transfer.examples] == [
        ("first text",),
        ("second text",),
        ("third",),
    ]
    assert run.transfer.blank_lines == 1


def test_plain_text_splits_at_line_ends_only(tmp_path, data, tiny_teacher_dir):
    """A line is one example even when it holds a form feed, NEL or line separator (which
    ``str.splitlines`` would split at); a line of control characters alone is no example."""
    text = "a\u2028b\nc\x0cd\r\ne\x85f\rg\n\x00\x00\n\ufeff\u200b \n"
    run = load(tmp_path, data, tiny_teacher_dir, transfer_file=str(write(tmp_path / "x.txt", text)))
    assert [e.texts for e in run.transfer.examples] == [
        ("a\u2028b",),
        ("c\x0cd",),
        ("e\x85f",),
        ("g",),
    ]
    assert run.transfer.blank_lines == 2


# --------------------------------------------------------------------------- whole runs


def test_a_label_column_in_the_transfer_file_changes_nothing(tmp_path, data, tiny_teacher_dir):
    texts = [text for text, _ in sentences(30, 4)]
    labels = ["0", "1", "banana", ""] * 8  # not even valid labels: the column is never read
    with_labels = write(
        tmp_path / "with.csv",
        "label,sentence\n" + "".join(f"{lab},{t}\n" for t, lab in zip(texts, labels)),
    )
    without = write(tmp_path / "without.csv", "sentence\n" + "".join(f"{t}\n" for t in texts))
    over = dict(method="kd", teacher_epochs=1, epochs=1, transfer_batch_size=6)
    a, b = (
        train.distill(
            run_config(tiny_teacher_dir, data, tmp_path / n, transfer_file=str(f), **over)
        )
        for n, f in (("a", with_labels), ("b", without))
    )
    assert same(params(a.student), params(b.student))
    assert a.metrics["history"] == b.metrics["history"]
    assert a.metrics["transfer"]["rows"] == 30 and a.metrics["transfer"]["batch_size"] == 6
    labelled = a.metrics["train_samples"]
    assert a.metrics["stages"][-1]["steps"] == max(-(-labelled // 8), 30 // 6)
    # the comparison can fail: other transfer text gives another student
    other = write(tmp_path / "other.csv", "sentence\n" + "".join(f"{t} x\n" for t in texts))
    c = train.distill(
        run_config(tiny_teacher_dir, data, tmp_path / "c", transfer_file=str(other), **over)
    )
    assert not same(params(a.student), params(c.student))


@pytest.mark.parametrize("method", ["kd", "lgtm", "pkd"])
def test_resume_of_a_killed_transfer_run_is_exact(method, tmp_path, data, tiny_teacher_dir):
    extra = write_table(tmp_path / "extra.tsv", sentences(45, 5))
    over = dict(
        method=method,
        transfer_file=str(extra),
        transfer_batch_size=5,
        save_steps=3,
        eval_steps=4,
    )
    if method != "lgtm":  # lgtm has no stage one: --teacher-epochs is refused there
        over["teacher_epochs"] = 1
    whole = train.distill(run_config(tiny_teacher_dir, data, tmp_path / "a", **over))

    class Killed(Exception):
        pass

    def kill(stage: str, step: int) -> None:
        if stage == "distill" and step == 7:
            raise Killed

    with pytest.raises(Killed):
        train.distill(run_config(tiny_teacher_dir, data, tmp_path / "b", **over), callback=kill)
    if method != "lgtm":  # the frozen teacher's outputs, kept for the resumed run
        assert (tmp_path / "b" / "teacher_outputs" / "distill.pt").is_file()
    resumed = train.distill(run_config(tiny_teacher_dir, data, tmp_path / "b", resume=True, **over))
    assert same(params(whole.student), params(resumed.student))
    assert same(params(whole.teacher), params(resumed.teacher))
    assert whole.metrics["history"] == resumed.metrics["history"]
    assert not (tmp_path / "b" / "teacher_outputs").exists()  # removed with the checkpoints


def test_a_finished_run_removes_only_its_own_cached_outputs(tmp_path, data, tiny_teacher_dir):
    """A run started in a folder of the user's removes the teacher's outputs it wrote there, and
    nothing else of ``teacher_outputs/``."""
    extra = write_table(tmp_path / "extra.tsv", sentences(12, 5))
    mine = write(tmp_path / "out" / "teacher_outputs" / "notes.txt", "mine\n")
    over = dict(method="kd", teacher_epochs=1, transfer_file=str(extra), transfer_batch_size=4)
    train.distill(run_config(tiny_teacher_dir, data, tmp_path / "out", **over))
    assert mine.read_text() == "mine\n"
    assert sorted(p.name for p in mine.parent.iterdir()) == ["notes.txt"]
    train.distill(run_config(tiny_teacher_dir, data, tmp_path / "two", **over))
    assert not (tmp_path / "two" / "teacher_outputs").exists()  # lgtm's own folder: removed


# --------------------------------------------------------------------------- the cache


def test_the_frozen_teachers_outputs_are_computed_once_and_keyed(tmp_path, monkeypatch):
    from conftest import bundled_tokenizer, tiny_bert

    from lgtm import teacher_cache
    from lgtm.data.encode import encode, make_collator
    from lgtm.data.examples import Example

    class Acc:
        is_main_process, device = True, torch.device("cpu")
        process_index, num_processes = 0, 1

        def wait_for_everyone(self):
            pass

    tokenizer = bundled_tokenizer()
    rows = encode(
        [Example(i, (text,), None) for i, (text, _) in enumerate(sentences(13, 6))], tokenizer, 16
    )
    for row in rows:  # the tiny model's vocabulary is 60 tokens
        row["input_ids"] = [i % 60 for i in row["input_ids"]]
    teacher = tiny_bert(2, 0, num_labels=2).eval()
    collate, path = make_collator(tokenizer), tmp_path / "distill.pt"
    calls = []
    real = teacher_cache.label_rows
    monkeypatch.setattr(
        teacher_cache, "label_rows", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    cache = teacher_cache.cached_outputs(teacher, rows, collate, Acc(), path, progress=False)
    again = teacher_cache.cached_outputs(teacher, rows, collate, Acc(), path, progress=False)
    assert len(calls) == 1 and torch.equal(cache.logits, again.logits)
    # each row's cached logits are the teacher's own on that row alone (no padding)
    for row in rows[::4]:
        batch = collate([row])
        expected = teacher(
            **{k: v for k, v in batch.items() if k not in ("labels", "example_id")}
        ).logits
        got = cache.lookup(torch.tensor([row["example_id"]]))
        assert torch.allclose(got.double(), expected.double(), atol=1e-6)
    with torch.no_grad():  # another teacher: recomputed, not served stale
        teacher.classifier.weight.add_(0.1)
    changed = teacher_cache.cached_outputs(teacher, rows, collate, Acc(), path, progress=False)
    assert len(calls) == 2 and not torch.allclose(changed.logits, cache.logits)
    teacher_cache.cached_outputs(teacher, rows[:-1], collate, Acc(), path, progress=False)
    assert len(calls) == 3  # other rows: recomputed too


@pytest.mark.parametrize("layers", [(), (1, 2)])
def test_processes_label_their_share_of_the_rows_and_join_them(tmp_path, layers):
    """With N processes each labels every N-th row (none idles at the barrier); the joined
    file holds the one-process outputs in the rows' order, and the parts are removed."""
    import threading

    from conftest import bundled_tokenizer, tiny_bert

    from lgtm import teacher_cache
    from lgtm.data.encode import encode, make_collator
    from lgtm.data.examples import Example

    barrier = threading.Barrier(3)

    class Acc:
        device = torch.device("cpu")

        def __init__(self, rank, world):
            self.process_index, self.num_processes = rank, world
            self.is_main_process = rank == 0

        def wait_for_everyone(self):
            if self.num_processes > 1:
                barrier.wait(timeout=60)

    tokenizer = bundled_tokenizer()
    rows = encode(
        [Example(i, (text,), None) for i, (text, _) in enumerate(sentences(13, 6))], tokenizer, 16
    )
    for row in rows:  # the tiny model's vocabulary is 60 tokens
        row["input_ids"] = [i % 60 for i in row["input_ids"]]
    teacher = tiny_bert(2, 0, num_labels=2).eval()
    collate = make_collator(tokenizer)
    one = teacher_cache.cached_outputs(
        teacher, rows, collate, Acc(0, 1), tmp_path / "one.pt", progress=False, layers=layers
    )
    path, got = tmp_path / "three.pt", {}

    def process(rank):
        got[rank] = teacher_cache.cached_outputs(
            teacher, rows, collate, Acc(rank, 3), path, progress=False, layers=layers
        )

    threads = [threading.Thread(target=process, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [0, 1, 2]
    for cache in got.values():
        assert torch.allclose(cache.logits, one.logits, atol=1e-6)
        if layers:
            assert cache.cls.shape == one.cls.shape
            assert torch.allclose(cache.cls, one.cls, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pt", "three.pt"]


def test_a_pkd_step_on_cached_teacher_outputs_is_the_step_on_the_teacher():
    """pkd reads its frozen teacher's logits and [CLS] states: given cached (computed once,
    rows alone, in eval mode), its step equals the step that runs the teacher."""
    from conftest import make_batch, tiny_bert

    from lgtm import make_method, teacher_cache
    from lgtm.methods.base import CACHED_TEACHER, CACHED_TEACHER_CLS

    teacher = tiny_bert(3, 0, num_labels=3).eval()
    batch = make_batch(6, 1, unlabelled=(1, 4))
    inputs = ("input_ids", "attention_mask", "token_type_ids")
    rows = [  # each row alone, without its padding, as the cache labels them
        {k: batch[k][i][batch["attention_mask"][i].bool()].tolist() for k in inputs}
        for i in range(6)
    ]

    def collate(chosen):  # pads with zeros, as make_batch does
        width = max(len(r["input_ids"]) for r in chosen)
        return {k: torch.tensor([r[k] + [0] * (width - len(r[k])) for r in chosen]) for k in inputs}

    students = []
    for cached in (False, True):
        student = tiny_bert(2, 1, num_labels=3)
        method = make_method(
            "pkd", teacher=teacher, student=student, teacher_optimizer=None,
            student_optimizer=torch.optim.SGD(student.parameters(), lr=0.3), alpha=0.7,
            temperature=2.0, pkd_layers="1:2,2:3",
        )  # fmt: skip
        assert method.cached_teacher_layers == (2, 3)
        b = dict(batch)
        if cached:
            found = teacher_cache.label_rows(
                teacher, rows, collate, torch.device("cpu"), progress=False, layers=(2, 3)
            )
            assert found["cls"].shape == (6, 2, 16)
            b[CACHED_TEACHER] = found["logits"].double()
            b[CACHED_TEACHER_CLS] = found["cls"].double()
        stats = method.step(b)
        students.append((params(student), stats["pt_loss"]))
    (a, pt_a), (c, pt_c) = students
    assert pt_a > 0 and pt_c == pytest.approx(pt_a, rel=1e-6)  # the cache holds float32
    assert all(torch.allclose(a[k], c[k], rtol=1e-6, atol=1e-8) for k in a)


# --------------------------------------------------------------------------- bad input


def test_bad_transfer_input_is_one_line(capsys, tmp_path, tiny_teacher_dir):
    train_file = write_table(tmp_path / "train.tsv", sentences(40, 1))
    base = [
        "distill",
        "--train-file",
        str(train_file),
        "--text-columns",
        "sentence",
        "--teacher",
        str(tiny_teacher_dir),
        "--student-layers",
        "1",
        "--method",
        "kd",
        "--output-dir",
        str(tmp_path / "out"),
        "--quiet",
    ]
    empty = write(tmp_path / "empty.txt", "\n  \n")
    no_column = write(tmp_path / "other.tsv", "review\tlabel\nnice\t1\n")
    header_only = write(tmp_path / "header.tsv", "sentence\n")
    utf16 = tmp_path / "utf16.txt"  # as Windows' editors save "Unicode"
    utf16.write_bytes("a text\nanother\n".encode("utf-16"))
    nul = tmp_path / "nul.txt"  # binary junk: NUL bytes are valid UTF-8, but no text
    nul.write_bytes(b"\0" * 500)
    no_text = write(tmp_path / "no_text.tsv", "label\tsentence\n1\tfine\n0\t\x00\x07 \n")
    cases = {
        "empty transfer file": [*base, "--transfer-file", str(empty)],
        "sentence": [*base, "--transfer-file", str(no_column)],
        "empty split": [*base, "--transfer-file", str(header_only)],
        "nul.txt:1: empty transfer file": [*base, "--transfer-file", str(nul)],
        "utf16.txt:1: not UTF-8 text: UTF-16": [*base, "--transfer-file", str(utf16)],
        "no_text.tsv:3: field 'sentence': holds no text": [*base, "--transfer-file", str(no_text)],
        "file not found": [*base, "--transfer-file", str(tmp_path / "missing.tsv")],
        "--transfer-file: expected a file name, got ''": [*base, "--transfer-file", ""],
        "or .txt": [*base, "--transfer-file", str(write(tmp_path / "x.text2", "a\n"))],
        "unknown file type": [*base, "--transfer-file", str(write(tmp_path / "x.doc", "a\n"))],
        "no teacher to label": [*base, "--method", "ce", "--transfer-from-train"],
        "needs a transfer set": [*base, "--transfer-batch-size", "4"],
        "transfer-batch-size": [*base, "--transfer-from-train", "--transfer-batch-size", "0"],
        "leaves none": [*base, "--transfer-from-train"],
    }
    for expected, args in cases.items():
        line = one_line_error(capsys, *args)
        assert expected in line, (expected, line)
    assert not (tmp_path / "out").exists()  # nothing was made


@pytest.mark.parametrize("name", ["transfer-file", "train-file", "eval-file", "data-dir"])
def test_an_empty_file_name_is_refused_not_read_as_the_current_folder(capsys, tmp_path, name):
    args = ["distill", "--task", "sst2", "--method", "kd", f"--{name}", ""]
    line = one_line_error(capsys, *args, "--output-dir", str(tmp_path / "out"))
    assert f"argument --{name}: expected a file name, got ''" in line


def test_plain_text_for_a_task_of_pairs_is_refused(capsys, tmp_path, tiny_teacher_dir, glue_dir):
    glue = glue_dir
    line = one_line_error(
        capsys,
        "distill",
        "--task",
        "mrpc",
        "--data-dir",
        str(glue / "MRPC"),
        "--teacher",
        str(tiny_teacher_dir),
        "--method",
        "kd",
        "--transfer-file",
        str(write(tmp_path / "extra.txt", "one sentence\n")),
        "--output-dir",
        str(tmp_path / "out"),
    )
    assert "pairs" in line and "extra.txt" in line


def test_a_glue_folders_transfer_file_may_name_its_columns_as_the_glue_files_do(
    tmp_path, tiny_teacher_dir, glue_dir
):
    """MRPC's GLUE files name its texts '#1 String' and '#2 String' (its test.tsv too, the
    natural unlabelled text): a run reading the GLUE folder reads a transfer file so named, as
    well as one with the task's column names."""
    from lgtm import config as cfg
    from lgtm.rundata import load_data

    glue = write(
        tmp_path / "test.tsv",
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\tOne says .\tThe other says .\n",
    )
    named = write(tmp_path / "named.jsonl", '{"sentence1": "One says .", "sentence2": "No ."}\n')
    base = dict(task="mrpc", data_dir=str(glue_dir / "MRPC"), method="kd", max_train_samples=100)
    for path, second in ((glue, "The other says ."), (named, "No .")):
        config = cfg.resolve({**base, "teacher": str(tiny_teacher_dir), "transfer_file": str(path)})
        assert [e.texts for e in load_data(config).transfer.examples] == [("One says .", second)]
    other = write(tmp_path / "other.tsv", "a\tb\nx\ty\n")
    config = cfg.resolve({**base, "teacher": str(tiny_teacher_dir), "transfer_file": str(other)})
    with pytest.raises(LgtmInputError) as info:  # the error names both ways
        load_data(config)
    assert "missing column 'sentence1'" in str(info.value) and "'#1 String'" in str(info.value)


def test_the_default_run_distils_on_the_unlabelled_text_its_data_ships():
    """``lgtm distill`` without data: the snippets its 2,000 labelled ones leave out (of
    12,808, 1,000 held out for evaluation) and the 1,097 plot summaries, without labels."""
    from lgtm import config as cfg
    from lgtm.rundata import load_data

    config = cfg.resolve({})
    data = load_data(config)
    record = data.transfer.record()
    assert record["read"] == (12_808 - 1_000 - 2_000) + 1_097
    assert "1097 plot summaries" in record["source"]
    assert record["rows"] == config.max_transfer_samples == len(data.transfer.examples)
    assert all(e.label is None for e in data.transfer.examples)
    scored = {e.texts for split in data.evals.values() for e in split}
    scored |= {e.texts for e in data.feedback}
    assert not scored & {e.texts for e in data.transfer.examples}


def test_the_default_runs_quoted_gain_is_the_committed_measurement():
    """The summary's "measured:" line (``DEFAULT_RUN_GAIN``) is recomputed here from the runs in
    benchmarks/results/default_gain.json: paired differences, Student's t interval (scipy)."""
    from scipy import stats

    from lgtm.config import DEFAULT_RUN, DEFAULT_RUN_GAIN

    root = Path(__file__).resolve().parents[1]
    rows = json.loads((root / "benchmarks/results/default_gain.json").read_text())
    runs = {k: {r["seed"]: r for r in rows if r["kind"] == k} for k in ("default", "ce")}
    assert all(
        r["transfer_rows"] == DEFAULT_RUN["max_transfer_samples"] for r in runs["default"].values()
    )
    diff = np.array([100 * (runs["default"][s]["student_dev"] - runs["ce"][s]["student_dev"])
                     for s in sorted(runs["default"])])  # fmt: skip
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    assert DEFAULT_RUN_GAIN["n"] == len(diff) == 3
    assert DEFAULT_RUN_GAIN["mean"] == pytest.approx(diff.mean(), abs=0.05)
    assert DEFAULT_RUN_GAIN["low"] == pytest.approx(diff.mean() - half, abs=0.01)
    assert DEFAULT_RUN_GAIN["high"] == pytest.approx(diff.mean() + half, abs=0.01)
    assert (DEFAULT_RUN_GAIN["low"] < 0 < DEFAULT_RUN_GAIN["high"]) == (
        DEFAULT_RUN_GAIN["verdict"] == "no difference detected"
    )


def test_the_default_run_without_its_transfer_set_is_not_refused_for_its_own_sizes():
    """The default run's transfer sizes are not the user's: ``--transfer-from-train false``
    turns its transfer set off without a refusal naming ``--max-transfer-samples``, which the
    user never gave; given by the user without a transfer set, it is still refused."""
    from lgtm.config import resolve

    config = resolve({"transfer_from_train": False})
    assert not config.transfer_from_train and config.max_transfer_samples is None
    again = resolve(config.to_dict(saved=True))  # its config.yaml runs again
    assert again == config
    with pytest.raises(LgtmInputError, match="needs a transfer set"):
        resolve({"transfer_from_train": False, "max_transfer_samples": 100})
