"""Quality end to end, with real models: perplexity of random and trained weights, agreement
between runs, quantization's cost in quality, refused comparisons, lm-eval offline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from runner.quality.agreement import WorkloadMismatch, compare_runs
from runner.quality.outputs import OUTPUTS_FILE, read_outputs
from runner.results import Status
from tests.conftest import TINY

pytestmark = pytest.mark.slow

# SmolLM2-135M, shrunk to what the quality figures need.
SMOL = [
    "loading=cpu",
    "measure=quick",
    "energy=off",
    "workload.num_prompts=4",
    "workload.batch_size=4",
    "decoding.max_new_tokens=16",
    "measure.isolation=inline",
]


def _run(compose, run_dir: Path, overrides: list[str]):
    from runner.run import run

    result = run(compose(overrides), run_dir, overrides)
    assert result.status is Status.ok, result.error
    return result


def test_random_weights_score_about_the_vocabulary_size(compose, tmp_path):
    """The tiny model's weights are random: its perplexity is close to its 512 tokens."""
    from runner.models.tiny import VOCAB_SIZE

    result = _run(compose, tmp_path / "tiny", [*TINY, "quality=full"])
    q = result.quality
    assert abs(q.perplexity / VOCAB_SIZE - 1) < 0.1, q.perplexity
    assert q.perplexity_ci95_low <= q.perplexity <= q.perplexity_ci95_high
    assert q.evaluation.tokens_scored == q.evaluation.text_tokens - q.evaluation.windows
    outputs = read_outputs(tmp_path / "tiny" / OUTPUTS_FILE)
    assert [len(o.output_ids) for o in outputs] == [4, 4]  # every request, cut as counted


def test_greedy_agrees_with_itself_and_sampling_does_not(compose, tmp_path):
    runs = {
        name: tmp_path / name
        for name in ("greedy-a", "greedy-b", "sample-1", "sample-2", "fewer-prompts")
    }
    base = [*TINY, "quality=off", "decoding.max_new_tokens=12"]
    _run(compose, runs["greedy-a"], base)
    _run(compose, runs["greedy-b"], base)
    _run(compose, runs["sample-1"], [*base, "decoding=sample", "decoding.seed=1"])
    _run(compose, runs["sample-2"], [*base, "decoding=sample", "decoding.seed=2"])
    greedy = compare_runs(runs["greedy-a"], runs["greedy-b"])
    assert (greedy.token_match.mean, greedy.exact_match.mean) == (1.0, 1.0)
    assert greedy.requests == 2 and greedy.diverged_requests == 0
    itself = compare_runs(runs["greedy-a"], runs["greedy-a"])
    assert itself.token_match.mean == 1.0
    sampled = compare_runs(runs["sample-1"], runs["sample-2"])
    assert sampled.token_match.mean < greedy.token_match.mean
    assert sampled.exact_match.mean < 1.0

    # Another workload is refused, by the comparison and by a run before it measures.
    _run(compose, runs["fewer-prompts"], [*base, "workload.num_prompts=1"])
    with pytest.raises(WorkloadMismatch, match="different workloads"):
        compare_runs(runs["greedy-a"], runs["fewer-prompts"])
    from runner.run import run

    refused = run(
        compose([*TINY, "workload.num_prompts=1", f"quality.reference={runs['greedy-a']}"]),
        tmp_path / "refused",
    )
    assert refused.status is Status.failed and refused.error.phase == "load"
    assert "measured different workloads" in refused.error.message
    assert "\n" not in refused.error.message
    assert refused.metrics.latency is None  # nothing was measured


def test_smollm2_perplexity_and_what_nf4_costs(compose, tmp_path):
    """Trained weights score far below the vocabulary size; nf4 a little worse than none,
    and its greedy outputs part from none's."""
    none = _run(compose, tmp_path / "none", [*SMOL, "quant=none"])
    nf4 = _run(
        compose,
        tmp_path / "nf4",
        [*SMOL, "quant=nf4", f"quality.reference={tmp_path / 'none'}"],
    )
    vocab = 49152
    ppl_none, ppl_nf4 = none.quality.perplexity, nf4.quality.perplexity
    print(f"SmolLM2-135M perplexity: none {ppl_none:.3f}, nf4 {ppl_nf4:.3f}")
    assert ppl_none < vocab / 1000
    assert 1.0 < ppl_nf4 / ppl_none < 1.5  # measured: 19.46 -> 24.80 (+27%) on this machine
    agreed = nf4.quality.agreement
    print(
        f"nf4 vs none: token agreement {agreed.token_match.mean:.3f}, "
        f"exact match {agreed.exact_match.mean:.3f}, first divergence "
        f"{agreed.first_divergence.mean} over {agreed.diverged_requests} requests"
    )
    assert agreed.requests == 4 and agreed.token_match.mean < 1.0
    on_disk = json.loads((tmp_path / "nf4" / "result.json").read_text())
    assert on_disk["quality"]["agreement"]["reference"] == str(tmp_path / "none")


def test_lm_eval_on_the_loaded_model_offline(compose, tmp_path):
    """The built-in task and a task of the user's own, both from files on disk."""
    pytest.importorskip("lm_eval")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = tasks / "colours.jsonl"
    data.write_text(
        "".join(
            json.dumps({"q": f"Colour number {i}?", "choices": ["red", "blue"], "label": i % 2})
            + "\n"
            for i in range(6)
        )
    )
    (tasks / "colours.yaml").write_text(
        "task: my_colours\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\n"
        "test_split: test\n"
        'doc_to_text: "{{q}}"\n'
        "doc_to_target: label\n"
        'doc_to_choice: "{{choices}}"\n'
        "metric_list:\n  - metric: acc\n"
    )
    result = _run(
        compose,
        tmp_path / "run",
        [
            *TINY,
            "quality=lm-eval",
            "quality.max_tokens=256",
            "quality.tasks=[sweep_runner_facts,my_colours]",
            f"quality.task_dir={tasks}",
            "quality.limit=6",
        ],
    )
    lm = result.quality.lm_eval
    assert set(lm.results) == {"sweep_runner_facts", "my_colours"}
    for task in lm.results:
        assert 0.0 <= lm.results[task]["acc"] <= 1.0
        assert lm.samples[task] == 6
    assert lm.version and "HFLM" in lm.method
    assert not math.isnan(result.quality.perplexity)
