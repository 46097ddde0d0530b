"""Workload building: prompt loading, synthetic lengths, truncation, order, batching."""

from __future__ import annotations

import copy
import json
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from runner.config.schema_generation import PromptOrder, WorkloadConfig, WorkloadKind
from runner.workload import BUILTIN_SOURCE, WorkloadError, build_workload, load_prompts

SENTENCES = [
    "the cat sat on the mat and the dog sat on the rug",
    "a quick brown fox jumps over the lazy dog near the river",
    "write a short story about a lighthouse in the rain",
    "the model reads the prompt and then it writes the answer",
    "summarise the passage in one sentence for a busy reader",
    "code is read more often than it is written so keep it simple",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)
KINDS = {"question", "instruction", "summarisation", "code", "reasoning"}


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a few sentences; prepends <s> like Llama-family tokenizers."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<s>", "</s>", "<pad>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return _tiny_tokenizer()


@pytest.fixture(scope="session")
def chat_tokenizer() -> PreTrainedTokenizerFast:
    tok = _tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _write(tmp_path: Path, lines: list[str], name: str = "prompts.jsonl") -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _file_cfg(path: str, **kw) -> WorkloadConfig:
    return WorkloadConfig(kind=WorkloadKind.file, path=path, **kw)


PROMPTS = [
    json.dumps({"id": "short", "prompt": "the cat"}),
    json.dumps({"id": "long", "prompt": "the cat sat on the mat and the dog sat on the rug"}),
    json.dumps({"id": "mid", "prompt": "write a short story"}),
]


# --- built-in prompt set ---------------------------------------------------------------


def test_builtin_set_is_large_varied_and_unique() -> None:
    prompts = load_prompts(WorkloadConfig(kind=WorkloadKind.default))
    assert len(prompts) >= 64
    ids = [pid for pid, _ in prompts]
    assert len(set(ids)) == len(ids)

    raw = resources.files("runner.data").joinpath("prompts.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert all(set(r) == {"id", "kind", "prompt"} for r in rows)
    assert set(Counter(r["kind"] for r in rows)) == KINDS
    lengths = [len(r["prompt"]) for r in rows]
    assert min(lengths) < 40 and max(lengths) > 1000  # lengths deliberately spread


def test_builtin_workload(tokenizer) -> None:
    cfg = WorkloadConfig(kind=WorkloadKind.default, num_prompts=8, batch_size=3)
    w = build_workload(cfg, tokenizer)
    assert w.source == BUILTIN_SOURCE
    assert [len(b.requests) for b in w.batches] == [3, 3, 2]
    assert [r.index for r in w.requests] == list(range(8))
    summary = w.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["num_batches"] == 3 and summary["batch_size"] == 3
    assert summary["input_tokens_min"] <= summary["input_tokens_mean"]
    assert summary["input_tokens_mean"] <= summary["input_tokens_max"]
    assert summary["input_tokens_total"] == sum(r.input_tokens for r in w.requests)


# --- synthetic -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 128])
def test_synthetic_exact_length(tokenizer, n: int) -> None:
    cfg = WorkloadConfig(kind=WorkloadKind.synthetic, input_tokens=n, num_prompts=3, batch_size=2)
    w = build_workload(cfg, tokenizer)
    assert w.source == "synthetic"
    for r in w.requests:
        assert (r.input_tokens, r.original_tokens, r.truncated) == (n, n, False)
        assert len(tokenizer(r.text)["input_ids"]) == n
    for b in w.batches:
        assert b.input_ids.shape == (len(b.requests), n)
        assert bool(b.attention_mask.all())


def test_synthetic_deterministic_per_seed_and_ignores_chat_template(chat_tokenizer) -> None:
    cfg = WorkloadConfig(kind=WorkloadKind.synthetic, input_tokens=16, num_prompts=2)
    texts = [r.text for r in build_workload(cfg, chat_tokenizer).requests]
    assert texts == [r.text for r in build_workload(cfg, chat_tokenizer).requests]
    assert texts[0] != texts[1]
    other = [r.text for r in build_workload(cfg, chat_tokenizer, seed=1).requests]
    assert other != texts
    assert all(r.input_tokens == 16 for r in build_workload(cfg, chat_tokenizer).requests)


# --- batching, padding, truncation -----------------------------------------------------


def test_batches_are_left_padded(tokenizer, tmp_path: Path) -> None:
    w = build_workload(_file_cfg(_write(tmp_path, PROMPTS), num_prompts=3, batch_size=3), tokenizer)
    (batch,) = w.batches
    assert batch.input_ids.dtype == torch.long
    assert batch.attention_mask.sum(dim=1).tolist() == [r.input_tokens for r in batch.requests]
    for row, r in enumerate(batch.requests):
        pad = batch.input_ids.shape[1] - r.input_tokens
        assert batch.attention_mask[row, :pad].sum() == 0
        assert (batch.input_ids[row, :pad] == tokenizer.pad_token_id).all()
        assert batch.input_ids[row, pad:].tolist() == tokenizer(r.text)["input_ids"]


def test_pad_falls_back_to_eos(tokenizer, tmp_path: Path) -> None:
    tok = copy.deepcopy(tokenizer)
    tok.pad_token = None
    assert tok.pad_token_id is None
    w = build_workload(_file_cfg(_write(tmp_path, PROMPTS), num_prompts=3, batch_size=3), tok)
    short = w.batches[0].requests[0]
    assert w.batches[0].input_ids[0, 0].item() == tok.eos_token_id
    assert short.input_tokens < w.batches[0].input_ids.shape[1]


def test_truncation_keeps_first_tokens(tokenizer, tmp_path: Path) -> None:
    cfg = _file_cfg(_write(tmp_path, PROMPTS), num_prompts=3, batch_size=3, max_input_tokens=4)
    w = build_workload(cfg, tokenizer)
    by_id = {r.prompt_id: r for r in w.requests}
    long_ids = tokenizer(by_id["long"].text)["input_ids"]
    assert by_id["long"].truncated and by_id["long"].original_tokens == len(long_ids) > 4
    assert by_id["long"].input_tokens == 4
    assert w.batches[0].input_ids[1].tolist() == long_ids[:4]
    assert not by_id["short"].truncated
    assert by_id["short"].original_tokens == by_id["short"].input_tokens
    assert w.truncated_requests == w.summary()["truncated_requests"] == 2  # long and mid


# --- order and cycling -----------------------------------------------------------------


def test_shuffle_is_deterministic_per_seed(tokenizer) -> None:
    def ids(**kw) -> list[str]:
        cfg = WorkloadConfig(kind=WorkloadKind.default, num_prompts=20, **kw)
        return [r.prompt_id for r in build_workload(cfg, tokenizer).requests]

    as_is = ids()
    first = ids(order=PromptOrder.shuffle, seed=1)
    assert first == ids(order=PromptOrder.shuffle, seed=1)
    assert first != ids(order=PromptOrder.shuffle, seed=2)
    assert first != as_is
    cfg = WorkloadConfig(kind=WorkloadKind.default, num_prompts=20, order=PromptOrder.shuffle)
    assert [r.prompt_id for r in build_workload(cfg, tokenizer, seed=1).requests] == first


def test_cycles_beyond_the_list(tokenizer, tmp_path: Path) -> None:
    w = build_workload(_file_cfg(_write(tmp_path, PROMPTS), num_prompts=7, batch_size=2), tokenizer)
    assert [r.prompt_id for r in w.requests] == [
        "short", "long", "mid", "short#2", "long#2", "mid#2", "short#3"
    ]  # fmt: skip
    assert w.num_requests == 7 and [len(b.requests) for b in w.batches] == [2, 2, 2, 1]
    assert w.requests[3].text == w.requests[0].text


# --- chat template ---------------------------------------------------------------------


def test_chat_template_applied_when_present(chat_tokenizer, tmp_path: Path) -> None:
    w = build_workload(_file_cfg(_write(tmp_path, PROMPTS[:1]), num_prompts=1), chat_tokenizer)
    (r,) = w.requests
    templated = "<s>[user] the cat\n[assistant] "
    expected = chat_tokenizer(templated, add_special_tokens=False)["input_ids"]
    assert w.batches[0].input_ids[0].tolist() == expected
    assert expected.count(chat_tokenizer.bos_token_id) == 1  # no second BOS
    assert r.text == "the cat"


def test_chat_template_skipped(chat_tokenizer, tokenizer, tmp_path: Path) -> None:
    path = _write(tmp_path, PROMPTS[:1])
    off = build_workload(_file_cfg(path, num_prompts=1, chat_template=False), chat_tokenizer)
    assert off.batches[0].input_ids[0].tolist() == chat_tokenizer("the cat")["input_ids"]
    # chat_template=true but the tokenizer has none: raw text as well.
    raw = build_workload(_file_cfg(path, num_prompts=1), tokenizer)
    assert raw.batches[0].input_ids[0].tolist() == tokenizer("the cat")["input_ids"]


# --- malformed input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"prompt": "ok"}', '{"prompt": "x",}'], "line 2: not valid JSON (Expecting"),
        (['{"prompt": "ok"}', "", '{"id": "a"}'], "line 3: missing string field 'prompt'"),
        (['{"prompt": 5}'], "line 1: field 'prompt' must be a string, got number"),
        (['["a"]'], "line 1: expected a JSON object, got array"),
        (['{"prompt": "  "}'], "line 1: field 'prompt' is empty"),
        (['{"id": "a", "prompt": "x"}', '{"id": "a", "prompt": "y"}'], "line 2: duplicate id"),
        (['{"id": null, "prompt": "x"}'], "line 1: field 'id' must be a non-empty string"),
        ([""], "no prompts"),
    ],
)
def test_malformed_file(tokenizer, tmp_path: Path, lines: list[str], expected: str) -> None:
    path = _write(tmp_path, lines)
    with pytest.raises(WorkloadError) as info:
        build_workload(_file_cfg(path), tokenizer)
    message = str(info.value)
    assert message.startswith(f"workload.path={path}")
    assert expected in message
    assert "\n" not in message


def test_empty_file_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(WorkloadError, match="no prompts"):
        load_prompts(_file_cfg(str(path)))


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.jsonl")
    with pytest.raises(WorkloadError) as info:
        load_prompts(_file_cfg(path))
    assert str(info.value) == f"workload.path={path}: file not found"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "is a directory, expected a JSONL file"),
        (b"\x1f\x8b\x08\x00\x00\x00", "not a text file (it holds NUL bytes)"),  # a .gz
        (b'{"prompt": "caf\xe9"}', "not UTF-8 text (byte 15: invalid continuation byte)"),
    ],
    ids=["directory", "binary", "latin-1"],
)
def test_unreadable_file_is_one_line(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "prompts.jsonl"
    path.mkdir() if content is None else path.write_bytes(content)
    with pytest.raises(WorkloadError) as info:
        load_prompts(_file_cfg(str(path)))
    assert str(info.value) == f"workload.path={path}: {expected}"


def test_blank_lines_and_optional_id(tokenizer, tmp_path: Path) -> None:
    path = _write(tmp_path, ["", '{"prompt": "the cat"}', "   ", '{"id": 7, "prompt": "the dog"}'])
    assert load_prompts(_file_cfg(path)) == [("line-2", "the cat"), ("7", "the dog")]


# --- a workload file measured other than as written ---------------------------------------


@pytest.mark.parametrize(
    ("num_prompts", "said"),
    [
        (2, "has 3 prompts; workload.num_prompts=2 measures 2 of them"),
        (7, "has 3 prompts; workload.num_prompts=7 repeats them to 7 requests"),
        (3, None),
    ],
)
def test_a_file_cut_or_cycled_is_said(tokenizer, tmp_path: Path, num_prompts, said) -> None:
    path = _write(tmp_path, PROMPTS)
    w = build_workload(_file_cfg(path, num_prompts=num_prompts), tokenizer)
    assert w.summary()["source_prompts"] == len(PROMPTS) == 3
    note = w.source_note()
    if said is None:
        assert note is None
    else:
        assert said in note and path in note and "workload.num_prompts=3 measures each once" in note


def test_the_built_in_set_is_taken_in_part_by_design(tokenizer) -> None:
    w = build_workload(WorkloadConfig(kind=WorkloadKind.default, num_prompts=2), tokenizer)
    assert w.summary()["source_prompts"] == 80 and w.source_note() is None
