"""Turn a workload config and a tokenizer into left-padded batches for ``model.generate``.

Pure apart from reading the prompt file: no model, no device. Tensors are built on the
CPU; the caller moves them to the model's device.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from runner.config.schema_generation import PromptOrder, WorkloadConfig, WorkloadKind
from runner.config.validate import ConfigError, check_fields
from runner.quality.outputs import workload_fingerprint
from runner.user_files import read_user_file

if TYPE_CHECKING:  # torch is imported where tensors are built: the pre-flight reads prompts
    import torch
    from transformers import PreTrainedTokenizerBase

BUILTIN_SOURCE = "builtin:runner/data/prompts.jsonl"
SYNTHETIC_SOURCE = "synthetic"

# Enough distinct words that synthetic prompts do not look like one repeated token,
# few enough that scanning a large vocabulary stays fast.
_WORD_POOL_SIZE = 512


class WorkloadError(ValueError):
    """A problem with the workload input; the message is one line saying where and what."""


@dataclass(frozen=True)
class Request:
    """One prompt of the workload, as it is fed to the model."""

    index: int
    prompt_id: str
    text: str
    input_tokens: int
    truncated: bool
    original_tokens: int


# eq=False: the generated __eq__ would compare tensors, which raises instead of answering.
@dataclass(frozen=True, eq=False)
class Batch:
    """Consecutive requests, LEFT-padded so generation continues every row at the same column."""

    requests: tuple[Request, ...]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


@dataclass(frozen=True, eq=False)
class Workload:
    """All batches of one pass over the workload, plus totals for the results."""

    batches: tuple[Batch, ...]
    source: str
    num_requests: int
    truncated_requests: int
    input_tokens_total: int
    # sha256 of every request's input token ids, in order: equal means comparable outputs.
    token_ids_sha256: str = ""
    # Prompts in the built-in set or the file (None: synthetic), of which num_prompts are
    # taken: the first ones, or all of them cycled.
    source_prompts: int | None = None

    def source_note(self) -> str | None:
        """One line when a workload file was not measured as written: cut to its first
        ``workload.num_prompts`` prompts, or cycled up to them; None otherwise."""
        n, k = self.source_prompts, self.num_requests
        if n is None or n == k or self.source in (BUILTIN_SOURCE, SYNTHETIC_SOURCE):
            return None
        if k < n:
            done = f"measures {k} of them"
        else:
            done = f"repeats them to {k} requests (ids #2, #3, ... mark the repeats)"
        return (
            f"workload file {self.source} has {n} prompts; workload.num_prompts={k} {done}; "
            f"workload.num_prompts={n} measures each once"
        )

    @property
    def requests(self) -> tuple[Request, ...]:
        """Every request in workload order."""
        return tuple(r for b in self.batches for r in b.requests)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable description recorded with the results.

        ``batch_size`` is the largest batch actually built, which is below the configured
        size when there are fewer requests than one batch holds.
        """
        counts = [r.input_tokens for r in self.requests]
        return {
            "source": self.source,
            "num_requests": self.num_requests,
            "source_prompts": self.source_prompts,
            "batch_size": max((len(b.requests) for b in self.batches), default=0),
            "num_batches": len(self.batches),
            "input_tokens_min": min(counts, default=0),
            "input_tokens_mean": round(self.input_tokens_total / max(self.num_requests, 1), 2),
            "input_tokens_max": max(counts, default=0),
            "input_tokens_total": self.input_tokens_total,
            "truncated_requests": self.truncated_requests,
            "token_ids_sha256": self.token_ids_sha256,
        }


def load_prompts(cfg: WorkloadConfig) -> list[tuple[str, str]]:
    """Return ``(prompt_id, text)`` pairs of the built-in set (kind=default) or a JSONL file.

    Raises :class:`WorkloadError` naming the file and line for anything malformed.
    """
    _check_config(cfg)
    kind = WorkloadKind(cfg.kind)
    if kind is WorkloadKind.default:
        text = resources.files("runner.data").joinpath("prompts.jsonl").read_text("utf-8")
        return _parse_jsonl(text, BUILTIN_SOURCE)
    if kind is WorkloadKind.file:
        return _parse_jsonl(_read_file(cfg.path), f"workload.path={cfg.path}")
    raise WorkloadError(f"workload.kind={kind.value}: has no prompt list to load")


def build_workload(
    cfg: WorkloadConfig, tokenizer: PreTrainedTokenizerBase, *, seed: int | None = None
) -> Workload:
    """Tokenize, truncate and batch ``cfg.num_prompts`` requests.

    ``seed`` overrides ``cfg.seed`` (prompt order and synthetic text) when given.
    """
    seed = cfg.seed if seed is None else seed
    _check_config(cfg)

    kind = WorkloadKind(cfg.kind)
    source_prompts = None
    if kind is WorkloadKind.synthetic:
        source = SYNTHETIC_SOURCE
        encoded = _synthetic(cfg, tokenizer, seed)
    else:
        source = BUILTIN_SOURCE if kind is WorkloadKind.default else str(cfg.path)
        use_template = cfg.chat_template and bool(getattr(tokenizer, "chat_template", None))
        prompts = load_prompts(cfg)
        source_prompts = len(prompts)
        encoded = [
            (pid, text, _encode(tokenizer, text, use_template))
            for pid, text in _select(prompts, cfg, seed)
        ]

    requests: list[Request] = []
    rows: list[list[int]] = []
    for index, (pid, text, ids) in enumerate(encoded):
        kept = ids if cfg.max_input_tokens is None else ids[: cfg.max_input_tokens]
        if not kept:
            raise WorkloadError(f"{source} prompt {pid!r}: encodes to no tokens")
        requests.append(Request(index, pid, text, len(kept), len(kept) < len(ids), len(ids)))
        rows.append(kept)

    batches = tuple(
        _pad_left(tuple(requests[i : i + cfg.batch_size]), rows[i : i + cfg.batch_size], tokenizer)
        for i in range(0, len(requests), cfg.batch_size)
    )
    return Workload(
        batches=batches,
        source=source,
        num_requests=len(requests),
        truncated_requests=sum(r.truncated for r in requests),
        input_tokens_total=sum(r.input_tokens for r in requests),
        token_ids_sha256=workload_fingerprint(rows),
        source_prompts=source_prompts,
    )


def _check_config(cfg: WorkloadConfig) -> None:
    """The schema's rules for the workload group, for callers that skipped validation."""
    try:
        check_fields(cfg, "workload")
    except ConfigError as exc:
        raise WorkloadError(str(exc)) from None


def _read_file(path: str) -> str:
    return read_user_file(path, f"workload.path={path}", "a JSONL file", WorkloadError)[1]


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "number")


def _parse_jsonl(text: str, label: str) -> list[tuple[str, str]]:
    prompts: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends unescaped,
    # and splitlines() would break the line there and misnumber every later line.
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{label} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise WorkloadError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise WorkloadError(f"{where}: expected a JSON object, got {_json_type(obj)}")
        if "prompt" not in obj:
            raise WorkloadError(f"{where}: missing string field 'prompt'")
        prompt = obj["prompt"]
        if not isinstance(prompt, str):
            raise WorkloadError(
                f"{where}: field 'prompt' must be a string, got {_json_type(prompt)}"
            )
        if not prompt.strip():
            raise WorkloadError(f"{where}: field 'prompt' is empty")
        pid = obj.get("id", f"line-{lineno}")
        # bool is an int subclass; an id of true is almost certainly a mistake.
        if isinstance(pid, bool) or not isinstance(pid, (str, int)) or pid == "":
            raise WorkloadError(f"{where}: field 'id' must be a non-empty string")
        pid = str(pid)
        if pid in first_line:
            raise WorkloadError(f"{where}: duplicate id {pid!r} (first on line {first_line[pid]})")
        first_line[pid] = lineno
        prompts.append((pid, prompt))
    if not prompts:
        raise WorkloadError(f"{label}: no prompts (the file is empty)")
    return prompts


def _select(
    prompts: list[tuple[str, str]], cfg: WorkloadConfig, seed: int
) -> list[tuple[str, str]]:
    """Order (as is or shuffled) and cycle the prompt list up to ``num_prompts`` requests."""
    if PromptOrder(cfg.order) is PromptOrder.shuffle:
        prompts = prompts.copy()
        random.Random(seed).shuffle(prompts)
    selected = []
    for i in range(cfg.num_prompts):
        pid, text = prompts[i % len(prompts)]
        cycle = i // len(prompts) + 1
        # Suffix repeats so every request id in the results stays unique.
        selected.append((pid if cycle == 1 else f"{pid}#{cycle}", text))
    return selected


def _encode(tokenizer: PreTrainedTokenizerBase, text: str, use_template: bool) -> list[int]:
    if use_template:
        templated = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        # The template writes BOS and role markers itself; default special tokens would
        # add a second BOS.
        return list(tokenizer(templated, add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def _synthetic(
    cfg: WorkloadConfig, tokenizer: PreTrainedTokenizerBase, seed: int
) -> list[tuple[str, str, list[int]]]:
    """Prompts of exactly ``cfg.input_tokens`` tokens, counting the tokenizer's special tokens.

    Text is a random sequence of words that are single tokens in this vocabulary, so word
    count maps to token count; the length is verified after encoding (never trusted).
    """
    target = cfg.input_tokens
    assert target is not None  # checked by _check_config: required with workload=synthetic
    # Tokens the tokenizer adds to every text (BOS, sometimes EOS) count toward the target.
    overhead = len(tokenizer("")["input_ids"])
    if target < overhead:
        raise WorkloadError(
            f"workload.input_tokens={target}: below the {overhead} special tokens "
            "this tokenizer adds to every prompt"
        )
    pool = _word_pool(tokenizer)
    if not pool:
        raise WorkloadError("workload.kind=synthetic: the tokenizer has no single-token words")
    rng = random.Random(seed)
    out = []
    for i in range(cfg.num_prompts):
        words = [rng.choice(pool) for _ in range(target - overhead)]
        for _ in range(2 * target + 8):
            text = " ".join(words)
            ids = list(tokenizer(text)["input_ids"])
            if len(ids) == target:
                break
            # Only reached when words merge across spaces; nudge the word count and retry.
            if len(ids) > target and words:
                words.pop()
            else:
                words.append(rng.choice(pool))
        else:
            raise WorkloadError(
                f"workload.input_tokens={target}: could not build a prompt of exactly that "
                f"many tokens with this tokenizer (got {len(ids)})"
            )
        out.append((f"synthetic-{i}", text, ids))
    return out


def _word_pool(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Alphabetic words that encode to one token both at the start of a text and after a space."""
    special = set(tokenizer.all_special_ids)
    pool: list[str] = []
    seen: set[str] = set()
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        word = tokenizer.decode([token_id]).strip()
        if len(word) < 2 or not (word.isascii() and word.isalpha()) or word in seen:
            continue
        seen.add(word)
        alone = tokenizer(word, add_special_tokens=False)["input_ids"]
        twice = tokenizer(f"{word} {word}", add_special_tokens=False)["input_ids"]
        if len(alone) == 1 and len(twice) == 2:
            pool.append(word)
            if len(pool) >= _WORD_POOL_SIZE:
                break
    return pool


def _pad_left(
    requests: tuple[Request, ...], rows: list[list[int]], tokenizer: PreTrainedTokenizerBase
) -> Batch:
    width = max(len(ids) for ids in rows)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        # Common for decoder-only models; padded positions are masked out anyway.
        pad_id = tokenizer.eos_token_id
    if pad_id is None and any(len(ids) < width for ids in rows):
        raise WorkloadError("tokenizer has neither a pad nor an eos token to pad batches with")
    import torch

    input_ids = torch.full((len(rows), width), pad_id or 0, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return Batch(requests=requests, input_ids=input_ids, attention_mask=attention_mask)
