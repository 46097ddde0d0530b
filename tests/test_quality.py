"""Quality beside cost, without a model: windows, perplexity arithmetic, agreement, the
outputs file, bad quality inputs, and the report's quality columns, plot and section."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from runner.cli import EXIT_USER_ERROR, main
from runner.quality.agreement import (
    WorkloadMismatch,
    agreement,
    check_same_workload,
    compare_ids,
    compare_runs,
    read_reference,
)
from runner.quality.outputs import (
    OUTPUTS_FILE,
    OutputRecord,
    read_outputs,
    workload_fingerprint,
    write_outputs,
)
from runner.quality.perplexity import TokenizedText, perplexity, plan_windows, score
from runner.quality.text import QualityInputError, builtin_text, user_text
from runner.report import build_report
from runner.report.quality import headline, perplexity_ratio
from runner.sections.quality import PerplexityEval, Quality
from tests.test_report import result, write_run

# --- windows ----------------------------------------------------------------------------


def test_windows_cover_the_text_and_drop_a_lone_last_token():
    assert plan_windows(10, 4, None) == [(0, 4), (4, 8), (8, 10)]
    assert plan_windows(9, 4, None) == [(0, 4), (4, 8)]  # (8, 9) has nothing to score
    assert plan_windows(1, 4, None) == []
    with pytest.raises(ValueError):
        plan_windows(10, 1, None)


def test_a_token_budget_takes_full_windows_spread_from_first_to_last():
    windows = plan_windows(1000, 100, 300)  # 10 full windows, 3 wanted
    assert windows == [(0, 100), (500, 600), (900, 1000)]
    assert plan_windows(1000, 100, 400) == [(0, 100), (300, 400), (600, 700), (900, 1000)]
    assert plan_windows(1050, 100, 350) == [(0, 100), (500, 600), (900, 1000)]  # not the tail
    assert plan_windows(1000, 100, 50) == [(0, 100)]  # at least one
    assert plan_windows(1000, 100, 10_000) == plan_windows(1000, 100, None)


# --- perplexity arithmetic ----------------------------------------------------------------


def _text(n: int, vocab: int, kinds=("prose", "code")) -> TokenizedText:
    ids = tuple((7 * i + 3) % vocab for i in range(n))
    return TokenizedText(ids, tuple(kinds[i * len(kinds) // n] for i in range(n)))


def _uniform(vocab: int):
    def forward(ids, mask):
        return torch.zeros(ids.shape[0], ids.shape[1], vocab)

    return forward


def _oracle(text: TokenizedText, vocab: int, confidence: float):
    """Logits giving the true next token probability ``confidence`` (rest spread evenly)."""
    follow = dict(zip(text.ids[:-1], text.ids[1:], strict=True))

    def forward(ids, mask):
        rest = (1 - confidence) / (vocab - 1)
        probs = torch.full((ids.shape[0], ids.shape[1], vocab), rest)
        for b in range(ids.shape[0]):
            for t in range(ids.shape[1]):
                nxt = follow.get(int(ids[b, t]))
                if nxt is not None:
                    probs[b, t, nxt] = confidence
        return probs.log()

    return forward


def test_uniform_logits_give_the_vocabulary_size():
    vocab = 50
    text = _text(1000, vocab)
    windows = plan_windows(1000, 64, None)
    scores = score(_uniform(vocab), text, windows, 3)
    assert len(scores.nll) == sum(e - s - 1 for s, e in windows)  # padding never scored
    ppl = perplexity(scores)
    assert ppl.value == pytest.approx(vocab, rel=1e-6)
    assert ppl.by_kind == pytest.approx({"code": vocab, "prose": vocab}, rel=1e-6)
    assert sum(ppl.tokens_by_kind.values()) == len(scores.nll)


def test_known_next_token_probability_gives_its_inverse():
    vocab = 50
    text = _text(300, vocab)  # a cycle of period 50: each token has one successor
    scores = score(_oracle(text, vocab, 0.5), text, plan_windows(300, 32, None), 4)
    assert perplexity(scores).value == pytest.approx(2.0, rel=1e-5)


def test_padded_rows_score_the_same_as_unpadded():
    """The short last window is right-padded in a batch: causal attention and the mask keep
    its scores identical to scoring it alone."""
    vocab = 40
    text = _text(150, vocab)
    windows = plan_windows(150, 64, None)  # 64, 64, 22
    batched = score(_oracle(text, vocab, 0.3), text, windows, 3, pad_id=0)
    alone = score(_oracle(text, vocab, 0.3), text, windows, 1, pad_id=0)
    assert batched.nll == pytest.approx(alone.nll)
    assert batched.window == alone.window


def test_perplexity_ci_is_over_windows_and_contains_the_estimate():
    vocab = 30
    text = _text(2000, vocab)
    noisy = _oracle(text, vocab, 0.4)
    scores = score(noisy, text, plan_windows(2000, 100, None), 5)
    ppl = perplexity(scores)
    assert ppl.ci95_low <= ppl.value <= ppl.ci95_high
    assert math.log(ppl.value) == pytest.approx(ppl.nll_per_token)


def test_the_builtin_text_mixes_prose_code_and_dialogue():
    text = builtin_text()
    kinds = [k for k, _ in text.passages]
    assert set(kinds) == {"prose", "code", "dialogue"}
    assert kinds[:3] == ["prose", "code", "dialogue"]  # interleaved: a budget samples all
    assert sum(len(t) for _, t in text.passages) > 15_000  # a few thousand tokens
    assert len(text.sha256) == 64


# --- the user's text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "file not found"),
        (b"", "the file is empty"),
        (b" \n\t\n", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        (b"caf\xe9 au lait", "not UTF-8 text"),
    ],
    ids=["missing", "empty", "blank", "binary", "latin-1"],
)
def test_a_bad_text_file_is_one_line(tmp_path, content, fragment):
    path = tmp_path / "text.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(QualityInputError) as info:
        user_text(str(path))
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"quality.text_path={path}")


def test_a_text_file_is_one_passage(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Hello there.\nGeneral Kenobi.\n")
    text = user_text(str(path))
    assert text.passages == (("text", "Hello there.\nGeneral Kenobi.\n"),)


# --- agreement ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "cand", "match", "exact", "first"),
    [
        ((1, 2, 3, 4), (1, 2, 3, 4), 1.0, True, None),
        ((1, 2, 3, 4), (1, 2, 9, 4), 0.75, False, 2),
        ((1, 2, 3, 4), (9, 2, 3, 4), 0.75, False, 0),
        ((1, 2, 3, 4), (1, 2), 0.5, False, 2),  # stopped early: parts where it ended
        ((1, 2), (1, 2, 3, 4), 0.5, False, 2),
        ((), (), 1.0, True, None),
        ((5,), (), 0.0, False, 0),
    ],
)
def test_compare_ids(ref, cand, match, exact, first):
    got = compare_ids(ref, cand)
    assert (got.token_match, got.exact, got.first_divergence) == (match, exact, first)


def _records(outputs: list[tuple[int, ...]], repeat: int = 0) -> list[OutputRecord]:
    return [OutputRecord(repeat, i, i, f"p{i}", ids) for i, ids in enumerate(outputs)]


def test_agreement_over_requests():
    ref = _records([(1, 2, 3, 4)] * 4)
    cand = _records([(1, 2, 3, 4), (1, 2, 3, 4), (1, 9, 9, 9), (1, 2, 3, 9)])
    a = agreement(ref, cand, reference_dir="/r")
    assert a.requests == 4 and a.diverged_requests == 2
    assert a.token_match.mean == pytest.approx((1 + 1 + 0.25 + 0.75) / 4)
    assert a.exact_match.mean == 0.5
    assert a.first_divergence.mean == 2.0  # (1 + 3) / 2, over the requests that differ
    assert 0.0 <= a.exact_match.ci95_low <= 0.5 <= a.exact_match.ci95_high <= 1.0  # clipped
    assert a.token_match.ci_unit == "request" and a.method


def test_agreement_uses_each_requests_first_measured_output():
    ref = _records([(1, 2), (3, 4)])
    cand = _records([(7, 7), (7, 7)], repeat=1) + _records([(1, 2), (3, 4)], repeat=0)
    assert agreement(ref, cand).exact_match.mean == 1.0


def test_self_agreement_is_complete_and_has_no_divergence():
    outs = _records([(1, 2, 3), (4, 5), (6,)])
    a = agreement(outs, outs)
    assert (a.token_match.mean, a.exact_match.mean, a.diverged_requests) == (1.0, 1.0, 0)
    assert a.first_divergence.count == 0


def test_workloads_are_compared_by_their_input_token_ids():
    a = workload_fingerprint([[1, 2, 3], [4, 5]])
    assert a == workload_fingerprint([(1, 2, 3), (4, 5)])
    assert a != workload_fingerprint([[4, 5], [1, 2, 3]])  # order matters
    assert a != workload_fingerprint([[1, 2, 3], [4, 6]])
    assert a != workload_fingerprint([[1, 2, 3]])
    check_same_workload(a, a, "ref", "run")
    with pytest.raises(WorkloadMismatch) as info:
        check_same_workload(a, workload_fingerprint([[1]]), "ref", "run")
    assert "different workloads" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(WorkloadMismatch):
        check_same_workload(None, a, "ref", "run")


def test_outputs_file_round_trip(tmp_path):
    records = _records([(1, 2, 3), (), (49151, 0)])
    write_outputs(tmp_path / OUTPUTS_FILE, records)
    assert read_outputs(tmp_path / OUTPUTS_FILE) == records


# --- reference runs ----------------------------------------------------------------------


def _evaluation(nll: list[float], scored: list[int] | None = None) -> PerplexityEval:
    scored = scored or [255] * len(nll)
    return PerplexityEval(
        text_sha256="t",
        text_tokens=5000,
        window_tokens=256,
        tokens_scored=sum(scored),
        window_nll=tuple(nll),
        window_scored=tuple(scored),
    )


def _run_with_outputs(
    root: Path, name: str, outputs: list[tuple[int, ...]], *, fp: str = "w1", **kw
) -> Path:
    ppl = kw.pop("ppl", 20.0)
    data = result([name], **kw)
    data["workload"] = {"token_ids_sha256": fp}
    log_ppl = math.log(ppl)
    data["quality"] = Quality(
        mode="perplexity",
        perplexity=ppl,
        perplexity_ci95_low=19.0,
        perplexity_ci95_high=21.0,
        evaluation=_evaluation([log_ppl - 0.5, log_ppl + 0.1, log_ppl + 0.4]),
    ).to_dict()
    run_dir = write_run(root, name, data)
    write_outputs(run_dir / OUTPUTS_FILE, _records(outputs))
    return run_dir


def test_a_reference_must_be_a_finished_ok_run_with_outputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (tmp_path / "nowhere", "no such run directory"),
        (empty, "no result.json there"),
    ]
    failed = write_run(tmp_path, "failed", result(["quant=nf4"], status="failed"))
    cases.append((failed, "status is failed"))
    no_outputs = write_run(tmp_path, "old", result(["quant=none"]))
    cases.append((no_outputs, f"no {OUTPUTS_FILE}"))
    for path, fragment in cases:
        with pytest.raises(QualityInputError) as info:
            read_reference(str(path))
        message = str(info.value)
        assert message.startswith(f"quality.reference={path}") and fragment in message, message


def test_compare_runs_refuses_other_workloads(tmp_path):
    a = _run_with_outputs(tmp_path, "quant=none", [(1, 2)], fp="w1")
    b = _run_with_outputs(tmp_path, "quant=nf4", [(1, 3)], fp="w1")
    c = _run_with_outputs(tmp_path, "quant=int8", [(1, 2)], fp="w2")
    assert compare_runs(a, b).token_match.mean == 0.5
    with pytest.raises(WorkloadMismatch):
        compare_runs(a, c)


# --- the report --------------------------------------------------------------------------


@pytest.fixture
def quality_sweep(tmp_path) -> Path:
    root = tmp_path / "sweep"
    root.mkdir()
    _run_with_outputs(root, "quant=none", [(1, 2, 3, 4)] * 4, energy_j_per_tok=0.4, ppl=20.0)
    _run_with_outputs(
        root,
        "quant=nf4",
        [(1, 2, 3, 4), (1, 2, 3, 9), (1, 9, 9, 9), (1, 2, 3, 4)],
        energy_j_per_tok=0.2,
        ppl=21.0,
    )
    _run_with_outputs(root, "quant=int8", [(1, 2, 3, 4)] * 4, fp="other", energy_j_per_tok=0.3)
    return root


def test_perplexity_ratio_is_paired_over_windows():
    base = _evaluation([2.0, 3.0, 4.0])
    shifted = _evaluation([2.0 + math.log(1.1), 3.0 + math.log(1.1), 4.0 + math.log(1.1)])
    assert perplexity_ratio(base, shifted) == pytest.approx((1.1, 1.1, 1.1))
    noisy = _evaluation([2.05, 3.2, 4.1])
    ratio, low, high = perplexity_ratio(base, noisy)
    assert ratio == pytest.approx(math.exp((0.05 + 0.2 + 0.1) / 3))
    assert low < ratio < high
    # The windows differ (another tokenizer, text or budget): no ratio.
    assert perplexity_ratio(base, _evaluation([2.0, 3.0])) is None
    assert perplexity_ratio(base, _evaluation([2.0, 3.0, 4.0], [255, 255, 100])) is None
    assert perplexity_ratio(base, None) is None


def test_quality_columns_come_from_the_result_alone():
    data = result(["quant=none"])
    assert math.isnan(headline(data)["perplexity"])  # an old result: no quality section
    data["quality"] = Quality(
        perplexity=12.5,
        evaluation=PerplexityEval(tokens_scored=1020),
        lm_eval=None,
    ).to_dict()
    row = headline(data)
    assert row["perplexity"] == 12.5 and row["perplexity_tokens"] == 1020
    assert math.isnan(row["token_agreement_mean"])


def test_report_with_baseline_adds_agreement_and_refuses_other_workloads(quality_sweep, tmp_path):
    out = build_report([quality_sweep], tmp_path / "out", baseline="quant=none")
    df = out.table.set_index("quant")
    assert df.loc["none", "token_agreement_mean"] == 1.0
    assert df.loc["nf4", "token_agreement_mean"] == pytest.approx((1 + 0.75 + 0.25 + 1) / 4)
    assert df.loc["nf4", "exact_match_mean"] == 0.5
    assert df.loc["nf4", "agreement_reference"] == "quant=none"
    assert math.isnan(df.loc["int8", "token_agreement_mean"])  # another workload
    assert df.loc["nf4", "perplexity"] == 21.0
    assert df.loc["nf4", "perplexity_ratio"] == pytest.approx(21.0 / 20.0)
    assert df.loc["none", "perplexity_ratio"] == pytest.approx(1.0)
    text = out.report_md.read_text()
    assert "| perplexity | ppl × | token agree | exact match | speed-up |" in text
    assert "Not compared:" in text and "quant=int8 and baseline quant=none measured " in text
    front = next(line for line in text.splitlines() if "Energy/perplexity Pareto front" in line)
    assert "quant=nf4 (21.00, 160.0 mJ/token)" in front and "quant=none" not in front
    names = {p.name for p in out.plots}
    assert {"pareto_energy_perplexity.png", "pareto_energy_token_agreement_mean.png"} <= names
    assert {"main_effects_perplexity.png", "main_effects_token_agreement_mean.png"} <= names
    csv = pd.read_csv(out.summary_csv)
    assert {"perplexity", "token_agreement_ci95_low", "first_divergence_mean"} <= set(csv)


def test_report_without_baseline_reads_no_outputs_file(quality_sweep, tmp_path, monkeypatch):
    import runner.report.quality as rq

    def boom(path):
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(rq, "read_outputs", boom)
    out = build_report([quality_sweep], tmp_path / "out")
    assert out.table["perplexity"].notna().all()
    names = {p.name for p in out.plots}
    assert "pareto_energy_perplexity.png" in names
    assert "pareto_energy_token_agreement_mean.png" not in names  # no baseline, no agreement


def test_lm_eval_results_become_columns(tmp_path):
    from runner.sections.quality import LmEval

    data = result(["quant=none"])
    data["quality"] = Quality(
        lm_eval=LmEval(results={"facts": {"acc": 0.75, "acc_stderr": 0.1}})
    ).to_dict()
    write_run(tmp_path, "quant=none", data)
    out = build_report([tmp_path], tmp_path / "out")
    assert out.table.loc[0, "lm_eval.facts.acc"] == 0.75


def test_lm_eval_metric_names():
    from runner.quality.lmeval import _numbers

    got = _numbers({"acc,none": 0.5, "acc_stderr,none": 0.1, "alias": "x", "exact,strict": 1})
    assert got == {"acc": 0.5, "acc_stderr": 0.1, "exact,strict": 1.0}


# --- the command line ----------------------------------------------------------------------


def _refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(["model=tiny", *argv])
    assert info.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "file not found"), (b"", "the file is empty"), (b"\x00\x01\x02", "not a text file")],
    ids=["missing", "empty", "binary"],
)
def test_bad_text_path_exits_2(tmp_path, capsys, content, fragment):
    path = tmp_path / "text.txt"
    if content is not None:
        path.write_bytes(content)
    err = _refused([f"quality.text_path={path}"], capsys)
    assert f"quality.text_path={path}: {fragment}" in err


def test_reference_without_result_exits_2(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    err = _refused([f"quality.reference={tmp_path / 'half'}"], capsys)
    assert "no result.json there" in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["quality=bogus"], "quality=bogus: unknown option; allowed: full, lm-eval, off"),
        (["quality.windows=3"], "quality.windows: unknown key"),
        (["quality.window=1"], "quality.window=1: must be >= 2"),
        (["quality=off", "quality.text_path=x.txt"], "only applies with quality other than off"),
        (["quality.tasks=[a]"], "quality.tasks=['a']: only applies with quality=lm-eval"),
        (["quality=lm-eval", "quality.tasks=[]"], "name at least one lm-eval task"),
    ],
)
def test_bad_quality_options_exit_2(argv, fragment, capsys):
    assert fragment in _refused(argv, capsys)


@pytest.mark.slow  # ~10 s: make test-fast stays under 3 minutes
def test_unknown_lm_eval_task_exits_2(capsys):
    pytest.importorskip("lm_eval")
    err = _refused(["quality=lm-eval", "quality.tasks=[no_such_task_anywhere]"], capsys)
    assert "quality.tasks: unknown task 'no_such_task_anywhere'" in err


def test_a_name_the_registrys_files_mention_is_looked_up_in_the_registry(monkeypatch):
    """Only a name some task file contains reaches lm-eval's index (here a stand-in for
    its ten-second index, of one task): found there it passes, otherwise it is refused."""
    pytest.importorskip("lm_eval")
    from runner.quality import lmeval

    indexed = []

    def index(task_dir, include_defaults):
        indexed.append(include_defaults)
        return frozenset({"hellaswag"})

    monkeypatch.setattr(lmeval, "_task_names", index)
    with pytest.raises(QualityInputError, match="unknown task 'acc'"):
        # both in many files; "acc" (a metric) is no task, "hellaswag" is one
        lmeval.check_tasks([lmeval.BUILTIN_TASK, "hellaswag", "acc"], None)
    assert indexed == [True]
    with pytest.raises(QualityInputError, match="unknown task 'hellaswagg'"):
        lmeval.check_tasks(["hellaswagg", "hellaswag"], None)  # in no file: no index read
    assert indexed == [True]


def test_result_json_names(tmp_path):
    """The dotted names docs/results.md gives for objectives and queries exist."""
    from runner.results import flatten

    q = Quality(mode="perplexity", perplexity=3.0, evaluation=PerplexityEval(tokens_scored=9))
    flat = flatten({"quality": json.loads(json.dumps(q.to_dict()))})
    assert flat["quality.perplexity"] == 3.0
    assert flat["quality.evaluation.tokens_scored"] == 9


def test_a_compiled_model_is_scored_with_its_eager_forward_and_says_so():
    """Windows of new shapes through a compiled model would each compile a graph: the
    quality phase runs the eager forward (nothing compiles) and records why."""
    from runner.config.schema_measure import QualityConfig, QualityMode
    from runner.models.readback import compiled_frames
    from runner.quality.phase import EAGER_NOTE, Plan, eager_forward, measure_quality
    from runner.quality.text import load_text

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(16, 16)

        def forward(self, input_ids, attention_mask=None, **_):
            return types.SimpleNamespace(logits=self.emb(input_ids))

    model = Tiny()
    model.compile(backend="eager")
    with compiled_frames() as compiled:
        model(torch.ones(1, 3, dtype=torch.long))
    assert compiled.frames >= 1  # compiled outside the block
    with eager_forward(model) as eager, compiled_frames() as inside:
        for n in (4, 5, 6):
            model(torch.ones(1, n, dtype=torch.long))
    assert eager and inside.frames == 0
    assert model._compiled_call_impl is not None  # restored for whatever comes after

    class Tok:
        pad_token_id = 0

        def __call__(self, text, **_):
            return {"input_ids": [i % 16 for i in range(len(text.split()))]}

    plan = Plan(load_text(None), None)
    q = QualityConfig(mode=QualityMode.perplexity, window=8, batch_size=2, max_tokens=64)
    scored = measure_quality(q, plan, model, Tok(), torch.device("cpu"), [])
    assert EAGER_NOTE in scored.evaluation.method
    assert EAGER_NOTE not in measure_quality(q, plan, Tiny(), Tok(), None, []).evaluation.method
