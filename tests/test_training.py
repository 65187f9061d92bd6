"""The training loop on tiny encoders: frozen base, progress, cancel, early stop, resume, every architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.adapter_model import AdapterModel
from engine.errors import ConfigError
from engine.training import Progress, TrainConfig, train
from tests.conftest import make_tiny_model


def _config(data: Path, base: Path, out: Path, method: str = "pfeiffer", **kw) -> TrainConfig:
    return TrainConfig(data=str(data), method=method, output=str(out), base_model=str(base), batch_size=8, **kw)


@pytest.mark.parametrize("method", ["pfeiffer", "houlsby", "ia3"])
def test_only_adapter_and_head_change(method, sentiment_csv, tiny_bert, tmp_path, monkeypatch) -> None:
    snapshots = {}
    original = AdapterModel.train_adapter

    def spy(self, name):
        params = original(self, name)
        snapshots["base"] = {k: v.clone() for k, v in self.backbone.state_dict().items()
                             if not any(t in k for t in (".adapters.", "ia3_l", "classifier"))}
        snapshots["model"] = self
        snapshots["trainable"] = [p.clone() for p in params]
        return params

    monkeypatch.setattr(AdapterModel, "train_adapter", spy)
    result = train(_config(sentiment_csv, tiny_bert, tmp_path / "a", method, epochs=1, learning_rate=1e-2))
    model = snapshots["model"]
    after = model.backbone.state_dict()
    # unchanged, apart from being stored in bf16 for mixed-precision training on CPUs that have it
    assert all(torch.equal(v.to(after[k].dtype), after[k]) for k, v in snapshots["base"].items())
    changed = [not torch.equal(b, a) for b, a in zip(snapshots["trainable"], model.trainable_parameters(model.active),
                                                     strict=True)]
    assert all(changed)
    assert result.adapter_params == sum(p.numel() for p in model.adapter_parameters(model.active))
    assert result.trainable_params > result.adapter_params


def test_progress_metrics_and_saved_metadata(sentiment_csv, tiny_bert, tmp_path) -> None:
    reports: list[Progress] = []
    epochs: list[int] = []
    phases: list[tuple[str, int, int]] = []
    result = train(_config(sentiment_csv, tiny_bert, tmp_path / "out", epochs=2),
                   on_progress=reports.append, on_epoch=lambda e, m: epochs.append(e), progress_every=1,
                   on_phase=lambda *phase: phases.append(phase))
    named = [what for what, _, _ in phases]
    assert named[0] == "reading the data" and named.index("loading the base model") < named.index("tokenising")
    assert phases[-1] == ("tokenising", 44, 44)  # the set-up ends with every training row tokenised
    assert [p.step for p in reports] == list(range(1, reports[-1].total_steps + 1))
    assert reports[-1].step == reports[-1].total_steps == 2 * 6  # 44 training rows / batch 8 = 6 steps per epoch
    assert all(p.samples_per_second > 0 and p.eta_seconds >= 0 and p.learning_rate >= 0 for p in reports)
    assert epochs == [1, 2] and len(result.history) == 2
    m = result.metrics
    assert set(m) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert sum(map(sum, m["confusion_matrix"])) == 4 and set(m["per_class"]) == {"neg", "pos"}
    meta = json.loads((tmp_path / "out" / "adapterlab.json").read_text())
    assert meta["method"] == "pfeiffer" and meta["labels"] == ["neg", "pos"]
    assert meta["text_column"] == "text" and meta["max_length"] == 128 and meta["data_fingerprint"].startswith("sha")
    assert meta["training"]["epochs"] == 2 and meta["metrics"]["accuracy"] == m["accuracy"]
    assert {"torch", "transformers", "adapterlab"} <= set(meta["library_versions"])
    assert meta["started_at"] <= meta["finished_at"]


def test_cancel_keeps_best_adapter_so_far(sentiment_csv, tiny_bert, tmp_path) -> None:
    steps = []
    result = train(_config(sentiment_csv, tiny_bert, tmp_path / "c", epochs=3),
                   on_progress=steps.append, should_cancel=lambda: len(steps) >= 8, progress_every=1)
    assert result.cancelled and result.best_epoch == 1
    assert (tmp_path / "c" / "pytorch_adapter.bin").is_file()
    assert json.loads((tmp_path / "c" / "adapterlab.json").read_text())["cancelled"] is True


def test_early_stopping_and_max_train_samples(sentiment_csv, tiny_bert, tmp_path) -> None:
    result = train(_config(sentiment_csv, tiny_bert, tmp_path / "e", epochs=6, learning_rate=1e-9,
                           early_stopping_patience=1, max_train_samples=20))
    assert len(result.history) == 2  # no improvement after epoch 1
    assert "20 for training" in result.data_report[0]


def test_resume_from_checkpoint_matches_uninterrupted(sentiment_csv, tiny_bert, tmp_path) -> None:
    full = train(_config(sentiment_csv, tiny_bert, tmp_path / "full", epochs=2))
    ckpt = tmp_path / "ckpt"
    steps = []
    first = train(_config(sentiment_csv, tiny_bert, tmp_path / "part", epochs=2), checkpoint_dir=str(ckpt),
                  on_progress=steps.append, should_cancel=lambda: steps and steps[-1].epoch > 1, progress_every=1)
    assert first.cancelled and (ckpt / "checkpoint.pt").is_file()
    resumed = train(_config(sentiment_csv, tiny_bert, tmp_path / "part", epochs=2), checkpoint_dir=str(ckpt))
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[1]["train_loss"] == pytest.approx(full.history[1]["train_loss"], rel=1e-4)
    assert resumed.metrics["accuracy"] == full.metrics["accuracy"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "pytorch_adapter.bin", weights_only=True)


def test_a_run_stopped_mid_epoch_resumes_from_its_timed_checkpoint_to_the_same_adapter(sentiment_csv, tiny_bert,
                                                                                     tmp_path) -> None:
    settings = {"epochs": 2, "base_dropout": True, "adapter_name": "same"}  # dropout on: its RNG must resume
    full = train(_config(sentiment_csv, tiny_bert, tmp_path / "full", **settings))
    ckpt, steps = tmp_path / "ckpt", []
    first = train(_config(sentiment_csv, tiny_bert, tmp_path / "part", **settings), checkpoint_dir=str(ckpt),
                  checkpoint_seconds=1e-9, on_progress=steps.append, progress_every=1,
                  should_cancel=lambda: bool(steps) and steps[-1].epoch > 1 and steps[-1].epoch % 1 > 0.3)
    per_epoch = steps[0].total_steps // 2
    saved = torch.load(ckpt / "checkpoint.pt", weights_only=False)  # written after every step, mid-epoch too
    assert first.cancelled and saved["epoch"] == 1 and steps[-1].step == per_epoch + saved["batches_done"]
    assert 0 < saved["batches_done"] < per_epoch - 1
    resumed_steps = []
    resumed = train(_config(sentiment_csv, tiny_bert, tmp_path / "part", **settings), checkpoint_dir=str(ckpt),
                    on_progress=resumed_steps.append, progress_every=1)
    assert resumed_steps[0].step == steps[-1].step + 1 and [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history == full.history  # the same losses and scores, epoch by epoch
    ours, theirs = _weights(tmp_path / "part"), _weights(tmp_path / "full")
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model_type", ["roberta", "distilbert", "electra", "xlm-roberta"])
def test_bert_family_architectures(model_type, sentiment_csv, tmp_path) -> None:
    from engine.inference import Predictor

    base = make_tiny_model(tmp_path / model_type, model_type)
    for method in ("houlsby", "ia3"):
        out = tmp_path / f"{model_type}-{method}"
        result = train(_config(sentiment_csv, base, out, method, epochs=1))
        assert result.adapter_params > 0
        probs = Predictor().probabilities(out, ["i love it"])
        assert probs.shape == (1, 2) and torch.allclose(probs.sum(), torch.tensor(1.0))


def test_invalid_settings_are_refused(sentiment_csv, tiny_bert, tmp_path) -> None:
    with pytest.raises(ConfigError, match="Unknown method"):
        train(_config(sentiment_csv, tiny_bert, tmp_path / "x", "adamix"))
    with pytest.raises(ConfigError, match="Epochs must be at least 1"):
        train(_config(sentiment_csv, tiny_bert, tmp_path / "x", epochs=0))
    with pytest.raises(ConfigError, match="too large"):
        train(_config(sentiment_csv, tiny_bert, tmp_path / "x", method_options={"reduction_factor": 64}))
