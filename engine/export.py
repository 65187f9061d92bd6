"""Export an adapter, its base model and head as one ONNX graph, checked against the torch model before it is kept.

The folder it writes runs without AdapterLab, PyTorch or transformers: `model.onnx` (token ids, attention mask
and, where the model takes them, token types -> logits and probabilities at the adapter's temperature; batch and
sequence axes dynamic), the tokenizer's files, `adapter.json` (labels, threshold, max length, the parity check)
and a `predict.py` that needs only onnxruntime, numpy and tokenizers.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from engine.adapter_io import load_adapter, read_metadata
from engine.adapter_model import AdapterModel
from engine.calibration import temperature_in_use
from engine.data import DEMO_DATA, prepare, read_table
from engine.errors import ConfigError, DataError
from engine.folder_files import write_json

ONNX_FILE = "model.onnx"
TEMPLATE = Path(__file__).parent / "export_template"
PARITY_ROWS = 256  # validation rows the check runs on: enough to meet every length bucket, a few seconds
TOLERANCE = 1e-4  # largest probability difference accepted between onnxruntime and torch


@dataclass(frozen=True)
class Export:
    """What `export_onnx` wrote and how well it agrees with the torch model (`export --json`)."""

    output: str
    onnx_path: str
    max_abs_diff: float  # over every probability of the checked rows
    rows_checked: int
    rows_from: str
    onnx_mb: float

    def as_dict(self) -> dict:
        return asdict(self)


class _Graph(nn.Module):
    """The exported function: (ids, mask[, token types]) -> (logits, softmax(logits / temperature))."""

    def __init__(self, model: AdapterModel, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return logits, (logits / self.temperature).softmax(-1)


def _parity_texts(meta: dict, data: str | Path | None) -> tuple[list[str], list[str] | None, str]:
    """Rows to check the graph on: `data`'s, else the validation rows the adapter was trained with (its job's data
    split again with the job's seed), else the built-in demo texts. (texts, pairs, words for where from)."""
    text_col, pair_col = meta.get("text_column") or "text", meta.get("text_pair_column")
    if data is not None:
        frame = read_table(data)
        for col in (text_col, pair_col):
            if col and col not in frame.columns:
                raise DataError(f"{Path(data).name}: no column '{col}' (the adapter was trained on it); the columns "
                                f"are {', '.join(map(repr, frame.columns))}.")
        frame = frame[frame[text_col].fillna("").astype(str).str.strip() != ""].head(PARITY_ROWS)
        if frame.empty:
            raise DataError(f"{Path(data).name}: every row is empty in '{text_col}': nothing to check the export on.")
        texts = frame[text_col].astype(str).tolist()
        pairs = frame[pair_col].fillna("").astype(str).tolist() if pair_col else None
        return texts, pairs, f"the first {len(texts)} rows of {Path(data).name}"
    training = meta.get("training") or {}
    source = training.get("data")
    if source and Path(source).is_file():
        with contextlib.suppress(DataError):
            prepared = prepare(source, training.get("validation"), text_col, pair_col,
                               meta.get("label_column") or "label", training.get("validation_fraction", 0.1),
                               training.get("seed", 42), max_eval_samples=PARITY_ROWS)
            valid = prepared.validation
            return valid.texts, valid.pairs, f"{len(valid)} validation rows of the training data"
    if pair_col:
        raise DataError("The data this adapter was trained on is gone: give a file with its text columns "
                        f"('{text_col}', '{pair_col}') to check the export on (--data).")
    texts = read_table(DEMO_DATA)["text"].astype(str).tolist()[:PARITY_ROWS]
    return texts, None, f"{len(texts)} built-in demo texts (the training data is gone)"


def _inputs(model: AdapterModel, max_length: int, texts: list[str], pairs: list[str] | None,
            batch_size: int = 32) -> list[dict[str, torch.Tensor]]:
    """The parity rows as batches (sorted by length, padded per batch), as predict makes them."""
    batcher = model.batcher(max_length, bf16=False)
    encoded = batcher.encode(texts, pairs)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    return [batcher.collate([encoded[i] for i in order[s : s + batch_size]]) for s in range(0, len(order), batch_size)]


def _check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} already exists and is not empty: choose a new folder for the export (nothing "
                          "is overwritten).")


def export_onnx(adapter_dir: str | Path, output: str | Path, data: str | Path | None = None,
                on_phase: Callable[[str], None] | None = None) -> Export:
    """Write the export folder (see the module docstring); refuse, writing nothing, when onnxruntime's
    probabilities differ from torch's by more than `TOLERANCE` on the parity rows."""
    phase = on_phase or (lambda what: None)
    adapter_dir, output = Path(adapter_dir), Path(output)
    _check_output(output)
    if not adapter_dir.is_dir():
        raise ConfigError(f"{adapter_dir}: no such adapter folder.")
    meta = read_metadata(adapter_dir)
    texts, pairs, rows_from = _parity_texts(meta, data)
    phase("loading the adapter")
    model = AdapterModel(meta.get("base_model"), labels_as_text=bool(meta.get("labels_as_text"))).eval()
    load_adapter(model, adapter_dir, "adapter")
    model.set_active("adapter")
    max_length = int(meta.get("max_length") or 128)
    graph = _Graph(model, temperature_in_use(meta)).eval()
    batches = _inputs(model, max_length, texts, pairs)
    names = list(batches[0])
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        phase("tracing the model into ONNX")
        _trace(graph, batches, names, staging / ONNX_FILE)
        phase(f"checking onnxruntime against torch on {rows_from}")
        diff = _parity(graph, batches, staging / ONNX_FILE)
        if not diff <= TOLERANCE:
            raise ConfigError(f"The exported graph disagrees with the torch model (largest probability difference "
                              f"{diff:.2e} > {TOLERANCE:.0e}); nothing was written. Please report this adapter's "
                              f"method ({meta.get('method')}) and base model.")
        model.tokenizer.save_pretrained(str(staging))
        result = Export(str(output), str(output / ONNX_FILE), diff, len(texts), rows_from,
                        round((staging / ONNX_FILE).stat().st_size / 2**20, 1))
        _write_companions(staging, meta, names, max_length, result)
        if output.exists():
            output.rmdir()  # empty: checked above
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _trace(graph: _Graph, batches: list[dict[str, torch.Tensor]], names: list[str], path: Path) -> None:
    """torch.export -> ONNX with the batch and sequence axes dynamic; its progress lines kept off stdout (a
    script's `--json`)."""
    # the widest batch that has padding, so the mask is traced in use
    example = max(batches, key=lambda b: (bool((b["attention_mask"] == 0).any()), b["input_ids"].shape[1]))
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed", a note per missing optional op
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's own deprecation and axis-naming notes
            _export(graph, example, names, path)
    finally:
        exporter_log.setLevel(level)


def _export(graph: _Graph, example: dict[str, torch.Tensor], names: list[str], path: Path) -> None:
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(graph, tuple(example[n] for n in names), str(path), dynamo=True, external_data=False,
                      input_names=names, output_names=["logits", "probabilities"],
                      dynamic_shapes={n: {0: batch, 1: sequence} for n in names}, verbose=False)


def _parity(graph: _Graph, batches: list[dict[str, torch.Tensor]], path: Path) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            expected = graph(**batch)[1]
            got = session.run(["probabilities"], {k: v.numpy() for k, v in batch.items()})[0]
            worst = max(worst, float((torch.from_numpy(got) - expected).abs().max()))
    return worst


def _write_companions(folder: Path, meta: dict, names: list[str], max_length: int, result: Export) -> None:
    """adapter.json, predict.py and README.md beside the graph."""
    labels = meta["labels"]
    write_json(folder / "adapter.json", {
        "name": meta.get("name"), "method": meta.get("method"), "base_model": meta.get("base_model"),
        "labels": labels, "max_length": max_length, "inputs": names, "temperature": temperature_in_use(meta),
        "threshold": meta.get("threshold"), "text_column": meta.get("text_column"),
        "text_pair_column": meta.get("text_pair_column"),
        "parity": {"max_abs_diff": result.max_abs_diff, "rows": result.rows_checked, "rows_from": result.rows_from}})
    shutil.copy(TEMPLATE / "predict.py", folder / "predict.py")
    pair = meta.get("text_pair_column")
    example = '"my card was charged twice"' + (' "the second text"' if pair else "")
    readme = (TEMPLATE / "README.md").read_text().format(
        name=meta.get("name") or "adapter", method=meta.get("method"), base_model=meta.get("base_model"),
        labels=", ".join(labels), example=example, diff=f"{result.max_abs_diff:.1e}", rows_from=result.rows_from,
        pairs=("It was trained on text pairs: give both texts." if pair else ""),
        labels_json=json.dumps(labels))
    (folder / "README.md").write_text(readme)
