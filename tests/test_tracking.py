"""MLflow tracking: what the callback logs, read back from a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from runner.results import RunError
from runner.tracking.store import TrackingError, check_uri
from tests.test_report import result, write_run


def test_check_uri_refuses_what_cannot_be_written(tmp_path):
    check_uri(f"sqlite:///{tmp_path}/a/mlflow.db")  # created on the way
    assert (tmp_path / "a").is_dir()
    check_uri("http://tracking.example:5000")  # remote: left to MLflow
    with pytest.raises(TrackingError, match="cannot write to /proc/no"):
        check_uri("sqlite:////proc/no/mlflow.db")
    with pytest.raises(TrackingError, match="unknown scheme 'sqllite'"):
        check_uri("sqllite:///x.db")
    (tmp_path / "file").write_text("")
    with pytest.raises(TrackingError, match="cannot write"):
        check_uri(f"file:{tmp_path}/file/store")


def _config(sweep: Path, run_dir: Path | None = None, uri: str | None = None):
    return OmegaConf.create(
        {
            "tracking": {"backend": "mlflow", "uri": uri, "experiment": "test"},
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweep": {"dir": str(sweep)},
                "runtime": {"output_dir": str(run_dir or sweep)},
            },
        }
    )


@pytest.mark.slow
def test_jobs_and_sweep_read_back_from_a_real_store(tmp_path):
    from mlflow.tracking import MlflowClient

    from runner.tracking.callback import TrackingCallback, settle_interrupted

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    cb = TrackingCallback()
    cb.on_multirun_start(_config(sweep))
    ok = sweep / "quant=none"
    cb.on_job_start(_config(sweep, ok))
    ok_result = result(["quant=none"])
    ok_result["quality"] = {"perplexity": 19.5, "evaluation": {"tokens_scored": 1020}}
    write_run(sweep, "quant=none", ok_result)
    (ok / "emissions.csv").write_text("timestamp,energy_consumed\n0,1\n")
    cb.on_job_end(_config(sweep, ok), job_return=None)
    failed = sweep / "quant=nf4"
    cb.on_job_start(_config(sweep, failed))
    error = RunError("RuntimeError", "out of memory", None, "load")
    write_run(
        sweep, "quant=nf4", result(["quant=nf4"], status="failed", error=error), requests=False
    )
    cb.on_job_end(_config(sweep, failed), job_return=None)
    stopped = sweep / "quant=int8"
    cb.on_job_start(_config(sweep, stopped))
    write_run(sweep, "quant=int8", result(["quant=int8"], status="interrupted"), requests=False)
    (sweep / "report.md").write_text("# report\n")
    # A stop: Hydra calls no on_job_end; the command settles what ran.
    settle_interrupted([ok, failed, stopped], multirun=True)

    client = MlflowClient(f"sqlite:///{sweep / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("test")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"sweep", "quant=none", "quant=nf4", "quant=int8"}
    parent = runs["sweep"]
    assert parent.info.status == "KILLED" and parent.data.tags["runner.kind"] == "sweep"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["report.md"]
    expected = {"quant=none": "FINISHED", "quant=nf4": "FAILED", "quant=int8": "KILLED"}
    for name, status in expected.items():
        run = runs[name]
        assert run.info.status == status
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["runner.config_hash"] == "abc123"
    job = runs["quant=none"]
    assert job.data.tags["runner.status"] == "ok"
    assert job.data.params["override.quant"] == "none"
    assert job.data.params["measure.min_repeats"] == "3"  # the flattened resolved config
    metrics = job.data.metrics
    assert metrics["e2e_ms_mean"] == pytest.approx(400.0)
    assert metrics["e2e_ms_ci95_low"] < 400.0 < metrics["e2e_ms_ci95_high"]
    assert metrics["energy_per_token_mj_net"] == pytest.approx(160.0)
    assert metrics["perplexity"] == 19.5 and metrics["perplexity_tokens"] == 1020
    assert "token_agreement_mean" not in metrics  # no reference: not logged as a number
    assert {a.path for a in client.list_artifacts(job.info.run_id)} == {
        "result.json",
        "requests.parquet",
        "emissions.csv",
        "run.log",
    }
    assert runs["quant=nf4"].data.tags["runner.error"] == "RuntimeError: out of memory"

    # Resuming the sweep: the same parent, the ok job not logged twice, the rerun logged.
    cb.on_multirun_start(_config(sweep))
    cb.on_job_start(_config(sweep, ok))
    cb.on_job_end(_config(sweep, ok), job_return=None)
    cb.on_job_start(_config(sweep, stopped))
    write_run(tmp_path / "rerun", "quant=int8", result(["quant=int8"]))
    (tmp_path / "rerun" / "quant=int8" / "result.json").replace(stopped / "result.json")
    cb.on_job_end(_config(sweep, stopped), job_return=None)
    cb.on_multirun_end(_config(sweep))
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 5
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    int8 = sorted(
        (r for r in runs if r.info.run_name == "quant=int8"), key=lambda r: r.info.start_time
    )
    assert sorted(r.info.status for r in int8) == ["FINISHED", "KILLED"]
