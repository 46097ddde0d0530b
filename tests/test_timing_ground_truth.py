"""The timers recover known prefill and per-token times, per request, call after call.

The tolerances are generous on purpose (a noisy 2-core CI machine): they catch
a timer that counts the wrong thing (the gap between calls, one step too many,
the prefill inside the first interval), not microseconds.
"""

from __future__ import annotations

import time

import pytest
import torch
from transformers import AutoTokenizer

from runner.measure.generation import timed_generate
from runner.measure.latency import latency_metrics, records_for_call
from tests.sleepy import load_sleepy

PREFILL_S, STEP_S, NEW_TOKENS = 0.100, 0.040, 8


@pytest.fixture(autouse=True)
def one_thread():
    # Intra-op threads spinning against another busy process cause stalls of a whole
    # scheduler slice; the timers are under test here, not torch's thread pool.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sleepy(tiny_dir):
    return load_sleepy(tiny_dir, PREFILL_S, STEP_S), AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def compute_only(tiny_dir):
    """The same model without sleeps: its real compute adds to the known sleeps."""
    return load_sleepy(tiny_dir, 0.0, 0.0)


def _batch(tokenizer, texts):
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


class _Req:
    def __init__(self, i, n):
        self.index, self.prompt_id, self.input_tokens = i, f"p{i}", n


@pytest.mark.parametrize("texts", [["hello there"], ["a short one", "and a second, longer prompt"]])
def test_ttft_and_inter_token_latency_match_known_times(sleepy, compute_only, texts):
    model, tok = sleepy
    ids, mask = _batch(tok, texts)
    kwargs = {
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,
        "do_sample": False,
        "pad_token_id": tok.pad_token_id,
    }
    bare = [timed_generate(compute_only, ids, mask, kwargs, eos_ids=[]) for _ in range(3)][-1]
    step_compute = sorted(bare.timing.intervals_seconds(NEW_TOKENS))[NEW_TOKENS // 2]
    prefill_compute = bare.timing.ttft_seconds
    records, batches = [], []
    for call in range(3):
        if call:
            time.sleep(0.25)  # a gap between calls must not leak into any interval
        res = timed_generate(model, ids, mask, kwargs, eos_ids=[tok.eos_token_id])
        assert res.output_tokens == (NEW_TOKENS,) * len(texts)
        reqs = [_Req(i, int(m.sum())) for i, m in enumerate(mask)]
        r, b = records_for_call(call, 0, reqs, res.output_tokens, res.timing)
        records += r
        batches.append(b)
    metrics = latency_metrics(records, batches)

    ttft = metrics.ttft_seconds
    assert ttft.count == 3 * len(texts)
    # TTFT is the prefill pass: at least its sleep, and not a decode step more.
    assert ttft.min >= PREFILL_S
    assert ttft.median < PREFILL_S + prefill_compute + 0.5 * STEP_S

    itl = metrics.itl_seconds
    assert itl.count == 3 * len(texts) * (NEW_TOKENS - 1)
    assert itl.min >= STEP_S
    assert abs(itl.median - (STEP_S + step_compute)) < 0.3 * STEP_S
    # The 250 ms gaps between calls would show up as a huge maximum if they leaked.
    assert itl.max < 3 * STEP_S

    e2e = metrics.e2e_batch_seconds
    expected = PREFILL_S + (NEW_TOKENS - 1) * STEP_S
    assert expected <= e2e.min and e2e.max < expected * 1.5 + 0.020
    assert metrics.output_tokens == 3 * len(texts) * NEW_TOKENS
    assert metrics.clock == "perf_counter"


def test_on_cuda_every_mark_is_an_event_resolved_after_the_closing_sync(monkeypatch):
    """A stand-in for CUDA: marks record events without waiting for the device; the times
    come from the events once the end edge has synchronised, and say so (``clock``)."""
    from runner.measure.timing import StepRecorder

    gpu_now, log = [0.0], []

    class Event:  # torch.cuda.Event's timing API: record(), elapsed_time() in ms
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.at = None

        def record(self):
            self.at = gpu_now[0]
            log.append("record")

        def elapsed_time(self, end):
            assert log[-1] == "sync", "an event was read before the device was synchronised"
            return (end.at - self.at) * 1000.0

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("sync"))
    recorder = StepRecorder(torch.device("cuda", 0))
    recorder.start()
    for step_s in (0.030, 0.010, 0.012):  # the GPU's time between the marks
        gpu_now[0] += step_s
        recorder.mark()
    gpu_now[0] += 0.002
    timing = recorder.stop()
    assert log[:2] == ["sync", "record"] and log[2:5] == ["record"] * 3  # no wait per step
    assert timing.clock == "cuda-events"
    assert timing.token_times_seconds == pytest.approx((0.030, 0.040, 0.052))
    assert timing.total_seconds == pytest.approx(0.054)
    records, batch = records_for_call(0, 0, [_Req(0, 4)], [3], timing)
    assert latency_metrics(records, [batch]).clock == "cuda-events"


def test_tokens_after_eos_are_not_counted():
    from runner.measure.generation import count_new_tokens

    eos = 2
    new = torch.tensor([[5, 6, eos, eos, eos], [5, 6, 7, 8, 9], [eos, 0, 0, 0, 0]])
    assert count_new_tokens(new, [eos]) == [3, 5, 1]
    assert count_new_tokens(new, []) == [5, 5, 5]


def test_request_intervals_stop_at_its_own_last_token():
    from runner.measure.timing import CallTiming

    timing = CallTiming(total_seconds=1.0, token_times_seconds=(0.1, 0.2, 0.35, 0.5), rows=2)
    reqs = [_Req(0, 4), _Req(1, 4)]
    records, batch = records_for_call(0, 0, reqs, [4, 2], timing)
    assert records[0].itl_seconds == pytest.approx((0.1, 0.15, 0.15))
    assert records[1].itl_seconds == pytest.approx((0.1,))
    assert records[1].last_token_seconds == pytest.approx(0.2)
    assert records[0].tpot_seconds == pytest.approx(0.4 / 3)
    assert batch.decode_tokens == 3 + 1
