"""A model whose prefill and decode steps take known times: ground truth for the timers."""

from __future__ import annotations

import time

from transformers import LlamaForCausalLM


class SleepyLlama(LlamaForCausalLM):
    """The tiny Llama, plus a sleep of ``prefill_s`` (prompt pass) or ``step_s`` (one token)."""

    prefill_s = 0.060
    step_s = 0.020

    def forward(self, input_ids=None, **kwargs):
        out = super().forward(input_ids=input_ids, **kwargs)
        time.sleep(self.prefill_s if input_ids.shape[1] > 1 else self.step_s)
        return out


def load_sleepy(tiny_dir, prefill_s: float, step_s: float) -> SleepyLlama:
    model = SleepyLlama.from_pretrained(tiny_dir, device_map="cpu")
    model.eval()
    model.prefill_s, model.step_s = prefill_s, step_s
    return model
