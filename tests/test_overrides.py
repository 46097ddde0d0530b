"""Overrides are read in one place, with Hydra's own parser (runner.config.overrides)."""

from __future__ import annotations

import pytest
from hydra.errors import HydraException

from runner.config.overrides import (
    expand,
    parse,
    parse_lenient,
    read,
    split_joined,
    swept_keys,
    value_of,
)


@pytest.mark.parametrize(
    ("text", "key", "value", "deleted", "swept"),
    [
        ("quant=nf4", "quant", "nf4", False, False),
        ("+decoding.num_beams=4", "decoding.num_beams", "4", False, False),
        ("decoding.temperature=0.50", "decoding.temperature", "0.50", False, False),  # as written
        ("quant='nf4'", "quant", "nf4", False, False),  # a quoted string is unquoted
        ("model.path=a\\,b", "model.path", "a,b", False, False),  # and unescaped
        (
            "++loading.max_memory={0:1GiB,cpu:2GiB}",
            "loading.max_memory",
            "{0:1GiB,cpu:2GiB}",
            False,
            False,
        ),
        ("~energy", "energy", None, True, False),
        ("~hydra/launcher=basic", "hydra/launcher", "basic", True, False),
        ("quant=none,nf4", "quant", "none,nf4", False, True),
        ("workload.batch_size=range(1,4)", "workload.batch_size", "range(1,4)", False, True),
        ("model@alt=tiny", "model@alt", "tiny", False, False),
    ],
)
def test_an_override_is_read_as_hydra_reads_it(text, key, value, deleted, swept):
    s = read(text)
    assert (s.text, s.key, s.value, s.deleted, s.swept) == (text, key, value, deleted, swept)


def test_hydra_settings_are_told_apart_from_factors():
    hydra = parse(["hydra.run.dir=/x", "hydra/launcher=local", "hydra_x=1", "quant=nf4"])
    assert [s.is_hydra for s in hydra] == [True, True, False, False]


def test_a_malformed_override_raises_hydras_error_or_is_left_out_when_lenient():
    with pytest.raises(HydraException, match="quant=="):
        parse(["quant=nf4", "quant=="])
    assert [s.key for s in parse_lenient(["quant==", "compile=on"])] == ["compile"]


def test_value_of_the_first_override_of_a_key():
    settings = parse(["hydra.run.dir=/a", "hydra.run.dir=/b", "~hydra/launcher"])
    assert value_of("hydra.run.dir", settings) == "/a"
    assert value_of("hydra/launcher", settings) == ""  # a deletion
    assert value_of("quant", settings) is None


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("quant=none,compile=off", ["quant=none", "compile=off"]),
        ("quant=none, compile=off,", ["quant=none", "compile=off"]),
        (
            "loading.max_memory={0:1GiB,cpu:2GiB},quant=nf4",
            ["loading.max_memory={0:1GiB,cpu:2GiB}", "quant=nf4"],
        ),
        ("", []),
    ],
)
def test_a_comma_joined_list_splits_where_each_side_is_one_override(text, items):
    assert split_joined(text) == items


@pytest.mark.parametrize("text", ["quant", "quant=none,nf4", "=none", "quant=none,="])
def test_a_comma_joined_list_that_is_not_overrides_is_refused(text):
    with pytest.raises(ValueError, match="expected key=value"):
        split_joined(text)


def test_a_sweep_expands_to_its_jobs():
    overrides = ["quant=none,nf4", "compile=off"]
    assert swept_keys(overrides) == ["quant"]
    assert expand(overrides, multirun=True) == [
        ["quant=none", "compile=off"],
        ["quant=nf4", "compile=off"],
    ]
    assert expand(overrides, multirun=False) == [overrides]
