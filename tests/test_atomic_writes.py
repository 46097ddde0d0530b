"""Every file a reader may open while it is rewritten appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from runner.report import build_report
from runner.results import atomic_path
from tests.test_report import result, write_run


def _half_then_fail(self, path, *args, **kwargs):
    Path(path).write_text("half a fi")
    raise OSError("disk full")


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "summary.csv"
    target.write_text("old, complete\n")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_text("half a fi")
        raise OSError("disk full")
    assert target.read_text() == "old, complete\n"
    assert os.listdir(tmp_path) == ["summary.csv"]  # no temp file left behind


@pytest.mark.parametrize(
    ("name", "writer"),
    [("summary.csv", "to_csv"), ("summary.parquet", "to_parquet")],
)
def test_report_tables_are_replaced_whole(tmp_path, monkeypatch, name, writer):
    root = tmp_path / "sweep"
    write_run(root, "a", result(["quant=none"]))
    write_run(root, "b", result(["quant=nf4"]))
    build_report([root], root)
    before = (root / name).read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((root / name).stat().st_mode) == 0o666 & ~umask  # shared like result.json

    monkeypatch.setattr(pd.DataFrame, writer, _half_then_fail)
    # The CSV's failure ends the report; the Parquet's is logged and skipped.
    with contextlib.suppress(OSError):
        build_report([root], root)
    assert (root / name).read_bytes() == before
    assert not list(root.glob(".*.tmp"))


def test_report_md_is_replaced_whole(tmp_path, monkeypatch):
    root = tmp_path / "sweep"
    write_run(root, "a", result(["quant=none"]))
    build_report([root], root)
    before = (root / "report.md").read_text()
    real = Path.write_text

    def failing(self, text, *args, **kwargs):
        if "report.md" in self.name:  # the target itself, or its temp file
            real(self, text[:10])
            raise OSError("disk full")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(OSError, match="disk full"):
        build_report([root], root)
    assert (root / "report.md").read_text() == before
    assert not list(root.glob(".*.tmp"))
