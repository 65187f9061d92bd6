"""The training precision is measured on the machine (engine/precision.py): probe, cache, override."""

from __future__ import annotations

import json

import pytest
import torch

from engine import precision as precision_module
from engine.base_models import load_config
from engine.errors import ConfigError
from engine.precision import CANDIDATES, Precision, _pick, choose, cpu_model
from engine.training import TrainConfig, train

CPU = torch.device("cpu")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    path = tmp_path / "precision.json"
    monkeypatch.setenv("ADAPTERLAB_PRECISION_CACHE", str(path))
    monkeypatch.delenv("ADAPTERLAB_PRECISION", raising=False)
    return path


def test_the_fastest_is_picked_and_of_equal_speeds_the_smaller():
    timings = {"fp32": {"seconds": 3.0, "peak_rss_mb": 700}, "bf16": {"seconds": 2.0, "peak_rss_mb": 720},
               "bf16-keep-kernels": {"seconds": 1.5, "peak_rss_mb": 800}}
    assert _pick(timings).name == "bf16-keep-kernels"
    timings["bf16"]["seconds"] = 1.55  # within 5% of the fastest: less memory wins
    chosen = _pick(timings)
    assert (chosen.name, chosen.bf16, chosen.onednn_cache, chosen.source) == ("bf16", True, 16, "measured")


def test_probe_runs_once_per_cpu_and_model_shape_then_is_read(cache, tiny_bert, tmp_path):
    config = load_config(str(tiny_bert))
    cache.write_text("{not json")  # an unreadable cache is measured again, not an error
    first = choose(CPU, str(tiny_bert), config)
    assert first.source == "measured" and set(first.probe) == set(CANDIDATES)
    assert first.probe["fp32"]["seconds"] > 0 and first.probe["fp32"]["peak_rss_mb"] > 0  # timed first, in full
    for timing in first.probe.values():  # the others timed, or stopped as too slow (bf16 without bf16 hardware)
        if "seconds" in timing:
            assert timing["seconds"] > 0 and timing["peak_rss_mb"] > 0
        else:
            assert timing.get("stopped_after_s") or timing["not_run"]
    assert first.name == _pick(first.probe).name
    stored = json.loads(cache.read_text())
    (key,) = stored
    assert key.startswith(cpu_model()) and f"torch {torch.__version__}" in key and "bert-32-2-64-4" in key
    assert torch.backends.cpu.get_cpu_capability() in key  # "AMD EPYC" names Zen 3 (AVX2) and Zen 4 alike
    again = choose(CPU, str(tiny_bert), config)
    assert (again.name, again.source) == (first.name, "cached")
    assert "measured on this CPU before" in again.describe()


def test_override_wins_and_a_wrong_value_says_what_to_write(cache, tiny_bert, monkeypatch):
    config = load_config(str(tiny_bert))
    monkeypatch.setenv("ADAPTERLAB_PRECISION", "fp32")
    assert choose(CPU, str(tiny_bert), config) == Precision("fp32", False, None, "override")
    monkeypatch.setenv("ADAPTERLAB_PRECISION", "bf16")
    assert choose(CPU, str(tiny_bert), config).bf16
    assert not cache.exists()  # nothing measured
    monkeypatch.setenv("ADAPTERLAB_PRECISION", "half")
    with pytest.raises(ConfigError, match="set it to auto, fp32, bf16, bf16-keep-kernels"):
        choose(CPU, str(tiny_bert), config)


@pytest.mark.parametrize("precision", ["fp32", "bf16-keep-kernels"])
def test_a_run_trains_in_its_precision_and_records_it(cache, tiny_bert, sentiment_csv, tmp_path, monkeypatch,
                                                      precision):
    """The whole training loop in each precision (the rest of the suite trains in fp32)."""
    monkeypatch.setenv("ADAPTERLAB_PRECISION", precision)
    result = train(TrainConfig(data=str(sentiment_csv), method="pfeiffer", output=str(tmp_path / "ad"),
                               base_model=str(tiny_bert), epochs=2))
    meta = json.loads((tmp_path / "ad" / "adapterlab.json").read_text())
    assert meta["precision"] == f"{precision} (set by ADAPTERLAB_PRECISION)"
    assert len(result.history) == 2 and all(h["train_loss"] == h["train_loss"] for h in result.history)  # no NaN


def test_a_probe_that_cannot_run_says_how_to_skip_it(cache, tiny_bert, tmp_path):
    config = load_config(str(tiny_bert))
    with pytest.raises(ConfigError, match="ADAPTERLAB_PRECISION=fp32 to skip the probe"):
        choose(CPU, str(tmp_path / "no-such-model"), config)


def test_a_candidate_far_slower_than_fp32_is_stopped_not_waited_for(cache, tiny_bert, monkeypatch):
    """Without bf16 instructions bf16 trains 16x slower: the probe stops a candidate at SLOWEST times fp32's time,
    and does not start bf16 with the small kernel cache once bf16 keeping every kernel was stopped. Here the limit
    is set so low that bf16 keeping every kernel outlives it."""
    monkeypatch.setattr(precision_module, "SLOWEST", 0.05)
    chosen = choose(CPU, str(tiny_bert), load_config(str(tiny_bert)))
    assert chosen.name == "fp32" and chosen.source == "measured"
    assert chosen.probe["fp32"]["seconds"] > 0
    assert set(chosen.probe["bf16-keep-kernels"]) == {"stopped_after_s"}
    assert chosen.probe["bf16"] == {"not_run": "bf16-keep-kernels, the same with every kernel kept, was stopped"}
    assert set(chosen.probe) == set(CANDIDATES)
