"""The machine's limits (runner.hardware.probe) and a run placed against them
(runner.hardware.roofline): formulas by hand, parameter counts against transformers' own
models, and the probe's cache and command."""

from __future__ import annotations

import functools
import inspect
import json

import pytest

from runner.hardware import probe, roofline
from runner.hardware.roofline import (
    KVLayout,
    Shape,
    decode_bytes_per_step,
    decode_flops_per_token,
    kv_bytes_per_token,
    kv_layout,
    place,
    prefill_flops,
    read_shape,
    shape_from_config,
    weights_read_per_step,
)

# A small Llama worked by hand: hidden 8, 2 layers, 2 heads of 4, 1 KV head, MLP 16, vocab 10.
SMALL = {
    "model_type": "llama",
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 4,
    "intermediate_size": 16,
    "vocab_size": 10,
    "tie_word_embeddings": False,
}

# SmolLM2-135M as packaged (runner.models.smollm2's converted checkpoint, config.json).
SMOLLM2 = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
}


class _Peaks:
    def __init__(self, bandwidth_gbs, matmul_tflops, theoretical_bandwidth_gbs=None):
        self.bandwidth_gbs = bandwidth_gbs
        self.matmul_tflops = matmul_tflops
        self.theoretical_bandwidth_gbs = theoretical_bandwidth_gbs


def test_the_small_llamas_counts_match_the_hand_arithmetic():
    shape = shape_from_config(SMALL)
    assert shape is not None
    # per layer: q 8x8 = 64, k 8x4 = 32, v 32, o 64 -> 192; MLP 3 x 8 x 16 = 384; 2 norms 16
    # -> 592; 2 layers 1184, final norm 8 -> 1192. Embedding 10 x 8 = 80; LM head 80 (untied).
    assert (shape.params_body, shape.params_embedding, shape.params_lm_head) == (1192, 80, 80)
    assert (shape.kv_heads, shape.head_dim, shape.gated, shape.tied) == (1, 4, True, False)
    # 2 (K and V) x 2 layers x 1 KV head x 4 x 2 bytes = 32
    assert kv_bytes_per_token(shape, 2) == 32
    # 2544 weights + 3 requests x 7 positions x 32 bytes = 2544 + 672 = 3216
    assert decode_bytes_per_step(shape, 2544, 3, 7, 2) == 3216
    # per prompt of 5: 5 x 2 x 1192 = 11920; attention 4 x 2 x 2 x 4 x (5 x 6 / 2) = 64 x 15
    # = 960; LM head for the last position 2 x 8 x 10 = 160 -> 13040; x 3 prompts = 39120
    assert prefill_flops(shape, 3, 5) == 39120
    # 2 x 1192 = 2384; attention 4 x 2 x 2 x 4 x 7 = 448; LM head 160 -> 2992
    assert decode_flops_per_token(shape, 7) == 2992


def test_the_weights_a_step_reads_leave_out_a_lookup_table_only():
    untied = shape_from_config(SMALL)
    tied = shape_from_config({**SMALL, "tie_word_embeddings": True})
    assert untied and tied
    # untied, 2704 loaded bytes (1352 params x 2): less the 80-row table x 2 bytes = 2544
    read = weights_read_per_step(untied, 2704, 2)
    assert read.bytes == 2544 and "loaded" in read.source
    # tied: the table is the LM head, read whole; nothing to subtract (element size unneeded)
    assert weights_read_per_step(tied, 2544, None).bytes == 2544
    # without a loaded model: body + LM head (untied) = 1272 params; tied: body + table
    estimated = weights_read_per_step(untied, None, 2)
    assert estimated.bytes == 1272 * 2 and estimated.source.startswith("estimated")
    assert weights_read_per_step(tied, None, 4).bytes == 1272 * 4
    assert weights_read_per_step(untied, None, None).bytes is None


def test_a_run_placed_by_hand():
    shape = shape_from_config(SMALL)
    result = place(
        shape,
        weight_bytes=2704,
        elem_bytes=2,
        batch=3,
        prompt_len=5,
        new_tokens=4,
        kv_elem_bytes=2,
        ttft_s=1e-6,
        itl_s=1e-6,
        peaks=_Peaks(6.432, 0.07824, 12.864),
    )
    # mean context over decode steps j = 1..3 attending over 5 + j positions: 5 + 4/2 = 7
    assert result.context_tokens_mean == 7
    assert result.weight_bytes_read == 2544
    assert result.decode_bytes_per_step == 3216
    # 3216 bytes / 1e-6 s = 3.216 GB/s: half of 6.432, a quarter of 12.864
    assert result.decode_bandwidth_gbs == pytest.approx(3.216)
    assert result.decode_bandwidth_util == pytest.approx(0.5)
    assert result.decode_bandwidth_util_theoretical == pytest.approx(0.25)
    # 39120 FLOPs / 1e-6 s = 0.03912 TFLOP/s: half of 0.07824
    assert result.prefill_tflops == pytest.approx(0.03912)
    assert result.prefill_compute_util == pytest.approx(0.5)
    # decode: 3 x 2992 / 3216; prefill: 39120 / (2544 + 3 x 5 x 32 = 3024)
    assert result.decode_intensity == pytest.approx(3 * 2992 / 3216)
    assert result.prefill_bytes == 3024
    assert result.prefill_intensity == pytest.approx(39120 / 3024)
    # ridge point: 0.07824e12 / 6.432e9 = 12.16 FLOPs per byte
    assert result.machine_balance == pytest.approx(12.164179, rel=1e-6)
    assert result.note is None
    assert json.loads(json.dumps(result.to_dict()))["decode_bytes_per_step"] == 3216


def test_missing_inputs_leave_their_figures_none_and_never_raise():
    empty = place(
        None,
        weight_bytes=None,
        elem_bytes=None,
        batch=None,
        prompt_len=None,
        new_tokens=None,
        kv_elem_bytes=None,
        ttft_s=None,
        itl_s=None,
        peaks=None,
    )
    assert all(value is None for key, value in empty.to_dict().items() if key != "note")
    assert "shape is unknown" in empty.note and "no peaks" in empty.note

    shape = shape_from_config(SMALL)
    one_token = place(
        shape,
        weight_bytes=2704,
        elem_bytes=2,
        batch=3,
        prompt_len=5,
        new_tokens=1,  # the prefill makes the only token: no decode step
        kv_elem_bytes=2,
        ttft_s=0.001,
        itl_s=float("nan"),
        peaks=_Peaks(10.0, float("nan")),
    )
    assert one_token.decode_bytes_per_step is None and one_token.decode_bandwidth_gbs is None
    assert one_token.prefill_flops == 39120 and one_token.prefill_tflops is not None
    assert one_token.prefill_compute_util is None  # the peak was not a number
    assert "no decode step" in one_token.note


def test_unknown_layouts_say_why():
    shape, reason = read_shape({"model_type": "falcon", "hidden_size": 8})
    assert shape is None and "'falcon'" in reason and "not known" in reason
    shape, reason = read_shape({**SMALL, "model_type": "mixtral", "num_local_experts": 8})
    assert shape is None and "mixture of experts" in reason
    shape, reason = read_shape({"model_type": "llama", "hidden_size": 8})
    assert shape is None and "num_hidden_layers" in reason


def _count(shape: Shape) -> int:
    return shape.params_body + shape.params_embedding + shape.params_lm_head


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize(
    ("family", "extra"),
    [
        ("Llama", {}),
        ("Llama", {"attention_bias": True, "mlp_bias": True}),
        ("Mistral", {}),
        ("Qwen2", {}),
        ("Qwen3", {}),
        ("Qwen3", {"attention_bias": True}),
        ("Gemma", {}),
        ("Gemma2", {}),
        ("Gemma3Text", {}),
        ("SmolLM3", {}),
    ],
)
def test_the_count_equals_transformers_parameters(family, extra, tied):
    """Random-weight tiny models: params_body + embedding + LM head == sum of numel."""
    import transformers

    config_class = getattr(transformers, f"{family}Config")
    model_class = getattr(transformers, f"{family.removesuffix('Text')}ForCausalLM")
    config = config_class(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,  # not hidden / heads, as Gemma has it
        intermediate_size=96,
        vocab_size=100,
        tie_word_embeddings=tied,
        pad_token_id=0,  # within the tiny vocabulary (SmolLM3's default is not)
        **extra,
    )
    model = model_class(config)
    shape = shape_from_config(config.to_dict())
    assert shape is not None and shape.tied is tied
    assert _count(shape) == sum(p.numel() for p in model.parameters())
    assert shape.params_embedding == model.get_input_embeddings().weight.numel()


@pytest.mark.parametrize("tied", [False, True])
def test_the_gpt2_count_equals_transformers_parameters(tied):
    import transformers

    config = transformers.GPT2Config(
        n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=32, tie_word_embeddings=tied
    )
    model = transformers.GPT2LMHeadModel(config)
    shape = shape_from_config(config.to_dict())
    assert shape is not None and not shape.gated
    assert _count(shape) == sum(p.numel() for p in model.parameters())
    # a step reads all but the lookup tables: positions always, the token table when untied
    assert shape.params_lookup == (32 if tied else 132) * 64


def test_smollm2_135m_has_its_135m_parameters():
    shape = shape_from_config(SMOLLM2)
    assert shape is not None
    # per layer: q 576 x 576 = 331776, k and v 576 x 192 = 110592 each, o 331776 -> 884736;
    # MLP 3 x 576 x 1536 = 2654208; norms 1152 -> 3540096; x 30 = 106202880, + 576 = 106203456
    assert shape.params_body == 106_203_456
    assert shape.params_embedding == 49152 * 576 == 28_311_552
    assert shape.params_lm_head == 0
    assert _count(shape) == 134_515_008  # "135M"
    # 2 x 30 layers x 3 KV heads x 64 x 4 bytes = 46080 bytes per token in float32
    assert kv_bytes_per_token(shape, 4) == 46_080
    # The same from the config alone, as vLLM's cache is sized before it starts.
    assert kv_layout(SMOLLM2) == KVLayout(layers=30, kv_heads=3, head_dim=64)


def test_the_worked_example_in_the_docs():
    """docs/methodology.md's SmolLM2 example, number for number."""
    result = place(
        shape_from_config(SMOLLM2),
        weight_bytes=None,
        elem_bytes=4,
        batch=8,
        prompt_len=20,
        new_tokens=32,
        kv_elem_bytes=4,
        ttft_s=0.25,
        itl_s=0.05,
        peaks=_Peaks(30.0, 0.2),
    )
    assert result.weight_bytes_read == 538_060_032
    assert result.context_tokens_mean == 36
    assert result.decode_bytes_per_step == 551_331_072
    assert result.decode_bandwidth_gbs == pytest.approx(11.027, abs=5e-4)
    assert result.decode_bandwidth_util == pytest.approx(0.3676, abs=5e-5)
    assert result.prefill_flops == 34_554_212_352
    assert result.prefill_tflops == pytest.approx(0.13822, abs=5e-6)
    assert result.prefill_compute_util == pytest.approx(0.6911, abs=5e-5)
    assert result.decode_flops_per_token == 271_518_336
    assert result.decode_intensity == pytest.approx(3.94, abs=5e-3)
    assert result.prefill_intensity == pytest.approx(63.35, abs=5e-3)
    assert result.machine_balance == pytest.approx(6.667, abs=5e-4)


def test_generate_computes_the_lm_head_for_the_last_prompt_position_only():
    """prefill_flops counts one LM head per prompt because generate asks for one position."""
    from transformers import LlamaForCausalLM
    from transformers.generation.utils import GenerationMixin

    assert 'model_kwargs["logits_to_keep"] = 1' in inspect.getsource(GenerationMixin.generate)
    assert "logits_to_keep" in inspect.signature(LlamaForCausalLM.forward).parameters


def test_roofline_imports_no_torch():
    assert "import torch" not in inspect.getsource(roofline)


# The probe ---------------------------------------------------------------------------------

SMALL_PROBE = {"tensor_bytes": 4 << 20, "matmul_n": 256, "repeats": 3}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty runner cache, and measure_peaks shrunk to small sizes and counted."""
    monkeypatch.setenv("RUNNER_CACHE", str(tmp_path))
    calls = []
    real = functools.partial(probe.measure_peaks, **SMALL_PROBE)

    def counted(device, dtype):
        calls.append((device, dtype))
        return real(device, dtype)

    monkeypatch.setattr(probe, "measure_peaks", counted)
    return calls


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_probe_measures_plausible_figures(dtype):
    peaks = probe.measure_peaks("cpu", dtype, **SMALL_PROBE)
    assert 0.1 < peaks.bandwidth_gbs < 10_000
    assert 1e-4 < peaks.matmul_tflops < 1e4
    assert (peaks.device, peaks.dtype, peaks.matmul_n) == ("cpu", dtype, 256)
    assert peaks.tensor_bytes == 4 << 20 and peaks.theoretical_bandwidth_gbs is None
    assert peaks.threads >= 1 and peaks.probe_seconds > 0
    assert probe.Peaks.from_dict(json.loads(json.dumps(peaks.to_dict()))) == peaks


def test_the_probe_refuses_what_it_cannot_measure(monkeypatch):
    with pytest.raises(ValueError, match="dtype 'int8'"):
        probe.measure_peaks("cpu", "int8")
    with pytest.raises(ValueError, match="device 'tpu'"):
        probe.measure_peaks("tpu", "float32")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        probe.measure_peaks("cuda", "float32")


class _Nvml:
    """NVML as the probe asks it: an H100 SXM's bus (5120 bits) and memory clock (2619 MHz)."""

    def __init__(self, bits=5120, mhz=2619):
        self.bits, self.mhz, self.asked = bits, mhz, []

    def device_count(self):
        return 4

    def handle(self, index):
        self.asked.append(index)
        return index

    def memory_bus_width_bits(self, handle):
        return self.bits

    def max_memory_clock_mhz(self, handle):
        return self.mhz


def test_the_datasheet_bandwidth_comes_from_nvml(monkeypatch):
    from runner.measure import nvml

    fake = _Nvml()
    monkeypatch.setattr(nvml, "open_nvml", lambda: fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    # 5120 / 8 bytes x 2619e6 clocks x 2 transfers = 3352.32 GB/s, of NVML's device 3
    assert probe.gpu_theoretical_bandwidth_gbs(1) == pytest.approx(3352.32)
    assert fake.asked == [3]
    monkeypatch.setattr(nvml, "open_nvml", lambda: _Nvml(bits=None))
    assert probe.gpu_theoretical_bandwidth_gbs(0) is None
    monkeypatch.setattr(nvml, "open_nvml", lambda: None)
    assert probe.gpu_theoretical_bandwidth_gbs(0) is None


def test_the_default_cpu_tensors_dwarf_the_cache_within_the_caps():
    size = probe.cpu_tensor_bytes()
    llc = probe.last_level_cache_bytes() or 0
    assert size <= probe.CPU_TENSOR_MAX_BYTES and size % 4 == 0
    assert size >= min(max(probe.CPU_TENSOR_MIN_BYTES, 4 * llc), probe.CPU_TENSOR_MAX_BYTES) or (
        size < probe.CPU_TENSOR_MIN_BYTES  # only where available memory is short
    )


def test_cached_peaks_measure_once_then_read_back(cache, tmp_path):
    first = probe.cached_peaks("cpu", "float32")
    assert cache == [("cpu", "float32")]
    kept = list((tmp_path / probe.DIR).glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["key"] == first.key
    assert probe.cached_peaks("cpu", "float32") == first
    assert len(cache) == 1  # read back, not measured
    probe.cached_peaks("cpu", "bfloat16")  # another dtype: another key
    assert len(cache) == 2


def test_without_measure_if_missing_nothing_is_measured(cache):
    assert probe.cached_peaks("cpu", "float32", measure_if_missing=False) is None
    assert cache == []


@pytest.mark.parametrize("content", ["{not json", '{"device": "cpu"}', "mismatched"])
def test_a_corrupt_or_foreign_kept_file_is_measured_again(cache, content):
    path = probe.kept_path(probe.machine_key("cpu", "float32"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "mismatched":
        other = probe.measure_peaks("cpu", "float32")
        content = json.dumps({**other.to_dict(), "key": "another machine"})
        cache.clear()
    path.write_text(content)
    peaks = probe.cached_peaks("cpu", "float32")
    assert len(cache) == 1
    assert json.loads(path.read_text())["key"] == peaks.key  # overwritten


def test_the_command_prints_the_kept_figures_and_reruns(cache, capsys):
    probe.main([])
    out = capsys.readouterr().out
    assert "memory bandwidth (triad): " in out and " GB/s" in out
    assert "matmul float32: " in out and " TFLOP/s" in out
    assert "kept in " in out and probe.DIR in out
    assert len(cache) == 1
    probe.main([])  # kept: printed again, not measured
    assert len(cache) == 1 and capsys.readouterr().out.splitlines()[1:3] == out.splitlines()[1:3]
    probe.main(["--rerun", "--dtype", "bfloat16"])
    assert len(cache) == 2 and "matmul bfloat16: " in capsys.readouterr().out
    probe.main(["--rerun", "--dtype", "bfloat16"])
    assert len(cache) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
        (["--device", "cuda"], "--device cuda: no CUDA device is visible"),
    ],
)
def test_the_command_refuses_bad_arguments_in_one_line(cache, capsys, monkeypatch, argv, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        probe.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert cache == []
