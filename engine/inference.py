"""Predict with many adapters over one base model: load each once, switch by name, never reload the base."""

from __future__ import annotations

import csv
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from engine.adapter_io import METADATA, load_adapter, read_metadata
from engine.adapter_model import AdapterModel
from engine.base_models import resolve_base_model
from engine.calibration import Calibration, calibrate, decide, nll, temperature_in_use
from engine.data import DataReport, Split, fingerprint, load_labelled, read_table
from engine.errors import ConfigError, DataError
from engine.evaluation import classification_metrics, logits_in_length_order, predict_logits
from engine.onnx_session import OnnxSession
from engine.packed_linear import pack_frozen_linears
from engine.review import issues_frame, rows_frame
from engine.training import pick_device

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ONNX_MAX_BYTES = 1_800_000_000  # weights an export may hold: it is one file, and ONNX files end at 2 GB


def spreadsheet_safe(value: object) -> object:
    """Prefix text a spreadsheet would run as a formula with a quote (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@dataclass
class Evaluation:
    """One evaluation on a labelled file: metrics (as training reports them), calibration under the adapter's
    temperature, the file's size, report and content fingerprint, and every row's logits (the error browser)."""

    metrics: dict
    calibration: Calibration
    rows: int
    data_report: list[str]
    fingerprint: str
    frame: pd.DataFrame

    def as_dict(self) -> dict:
        """The `evaluate --json` contract: `metrics`, `calibration` (ece, ece_before, temperature, ...)."""
        return {"metrics": self.metrics, "calibration": self.calibration.as_dict(), "rows": self.rows,
                "data_report": self.data_report, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class FilePredictions:
    """What `predict_file` wrote: `rows` rows, of which `skipped` had an empty text and got no prediction; the
    columns the text was read from."""

    rows: int
    skipped: int
    text_column: str
    text_pair_column: str | None = None

    @property
    def predicted(self) -> int:
        return self.rows - self.skipped

    @property
    def columns_named(self) -> str:
        return _named(self.text_column, self.text_pair_column)


def _named(text_column: str, text_pair_column: str | None) -> str:
    """The text columns for a message: 'a', or 'a' or 'b'."""
    return f"'{text_column}'" + (f" or '{text_pair_column}'" if text_pair_column else "")


def _results(probs: torch.Tensor, labels: list[str], threshold: dict | None) -> list[dict]:
    """`{"label", "probabilities"}` per row of one adapter's probabilities (its threshold deciding the label)."""
    return [{"label": labels[best], "probabilities": {lab: float(p) for lab, p in zip(labels, row, strict=True)}}
            for best, row in zip(decide(probs, labels, threshold), probs.tolist(), strict=True)]


class Predictor:
    """Holds one `AdapterModel` per base model (on CPU with its frozen linears packed: engine/packed_linear.py);
    `predict` activates the named adapter and runs it. An adapter given its ONNX export (`serve_from_onnx`) runs
    its own rows in onnxruntime instead, for the `onnx_sessions` most recently used (each holds its base model's
    weights again).

    Batches of 32 rows: on the AMD EPYC (2 cores) 7% faster than 64 for one adapter's file and 27% for a mixed
    batch (docs/benchmarks.md, rows of one batch on different adapters).
    """

    def __init__(self, device: str | None = None, batch_size: int = 32, onnx_sessions: int = 4) -> None:
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.models: dict[str, AdapterModel] = {}
        self.loaded: dict[str, tuple[AdapterModel, str]] = {}  # adapter folder -> (model, adapter name)
        self.onnx: OrderedDict[str, OnnxSession] = OrderedDict()  # adapter folder -> its export's session
        self.onnx_sessions = onnx_sessions
        self._weight_bytes: dict[int, int] = {}  # id of a base model -> the bytes of its weights
        self._names = itertools.count()
        self._stamps: dict[str, int | None] = {}  # adapterlab.json -> its mtime when its settings were read

    def can_serve_from_onnx(self, folder: str | Path) -> bool:
        """Whether the adapter at `folder` could run from an ONNX export here: on CPU, over a base model whose
        weights fit one ONNX file (a decoder LLM of half a billion parameters does not)."""
        if self.device.type != "cpu":
            return False
        model, _ = self.load(folder)
        if id(model) not in self._weight_bytes:  # asked at every request: summed once per base model
            self._weight_bytes[id(model)] = sum(p.numel() * p.element_size() for p in model.parameters())
        return self._weight_bytes[id(model)] <= ONNX_MAX_BYTES

    def serve_from_onnx(self, folder: str | Path, export: str | Path) -> None:
        """Run the adapter at `folder` from its ONNX export folder `export` (engine/export.py) from now on (CPU
        only; called again, it counts as a use); the least recently used session beyond `onnx_sessions` is
        closed."""
        key = str(Path(folder).resolve())
        if self.device.type != "cpu":
            return
        if key not in self.onnx or self.onnx[key].folder != Path(export):
            self.onnx[key] = OnnxSession(export)
        self.onnx.move_to_end(key)
        while len(self.onnx) > self.onnx_sessions:
            self.onnx.popitem(last=False)

    def runtime(self, folder: str | Path) -> str:
        """'onnxruntime' or 'pytorch': what runs the adapter at `folder` now."""
        return "onnxruntime" if str(Path(folder).resolve()) in self.onnx else "pytorch"

    def load(self, folder: str | Path) -> tuple[AdapterModel, str]:
        """Load the adapter at `folder` once (its base model too, if new); later calls are free."""
        key = str(Path(folder).resolve())
        if key in self.loaded:
            return self.loaded[key]
        if not Path(key).is_dir():
            raise ConfigError(f"{folder}: no such adapter folder.")
        meta = read_metadata(key)
        base = resolve_base_model(meta.get("base_model"))
        as_text = bool(meta.get("labels_as_text"))
        task = f"{base} (labels as text)" if as_text else base  # another task model over the same weights
        model = self.models.get(task)
        if model is None:
            model = self.models[task] = AdapterModel(base, labels_as_text=as_text).to(self.device).eval()
            if self.device.type == "cpu":
                pack_frozen_linears(model.encoder)
        name = f"a{next(self._names)}"
        load_adapter(model, key, name)
        model.to(self.device)
        self.loaded[key] = (model, name)
        return model, name

    def unload(self, folder: str | Path) -> None:
        key = str(Path(folder).resolve())
        self.onnx.pop(key, None)
        model, name = self.loaded.pop(key)
        model.delete_adapter(name)

    def labels(self, folder: str | Path) -> list[str]:
        model, name = self.load(folder)
        return model.adapters[name].labels

    def decision(self, folder: str | Path) -> tuple[float, dict | None]:
        """(temperature, threshold) predict uses now, from the folder's `adapterlab.json`: re-read when the file
        changed, so a threshold chosen in the page or a temperature switched off applies at once."""
        model, name = self.load(folder)
        path = Path(folder).resolve() / METADATA
        stamp = path.stat().st_mtime_ns if path.is_file() else None
        if self._stamps.setdefault(str(path), stamp) != stamp:
            model.adapters[name].meta = read_metadata(folder)
            self._stamps[str(path)] = stamp
        meta = model.adapters[name].meta
        return temperature_in_use(meta), meta.get("threshold")

    def logits(self, folder: str | Path, texts: list[str], pairs: list[str] | None = None,
               onnx: bool = False) -> torch.Tensor:
        """Raw logits, one row per text, columns in the adapter's label order; from its ONNX session when it has
        one and `onnx` (serving: evaluation and the trust checks stay on the torch model)."""
        model, name = self.load(folder)
        max_length = int(model.adapters[name].meta.get("max_length") or 128)
        batcher = model.batcher(max_length)
        split = Split(list(texts), list(pairs) if pairs is not None else None, [0] * len(texts))
        session = self.onnx.get(str(Path(folder).resolve())) if onnx else None
        if session is not None:
            return logits_in_length_order(batcher, split, self.batch_size, len(model.adapters[name].labels),
                                          session.logits)
        model.set_active(name)
        return predict_logits(model, batcher, split, self.batch_size)

    def probabilities(self, folder: str | Path, texts: list[str], pairs: list[str] | None = None,
                      calibrated: bool = True) -> torch.Tensor:
        """Probabilities, one row per text: softmax of the logits over the adapter's temperature (1 when it has
        none, when it is switched off, or with `calibrated=False`)."""
        temperature = self.decision(folder)[0] if calibrated else 1.0
        return (self.logits(folder, texts, pairs) / temperature).softmax(-1)

    def predict(self, folder: str | Path, text: str, text_pair: str | None = None, calibrated: bool = True) -> dict:
        """`{"label": ..., "probabilities": {label: p}}` for one text (or pair); the label follows the adapter's
        threshold when one was chosen."""
        probs = self.probabilities(folder, [text], [text_pair] if text_pair is not None else None, calibrated)
        return _results(probs, self.labels(folder), self.decision(folder)[1])[0]

    def predict_batch(self, texts: list[str], adapters: list[str | Path], text_pairs: list[str | None] | None = None,
                      calibrated: bool = True) -> list[dict]:
        """`predict` for every text, text i with adapter folder `adapters[i]` (and second text `text_pairs[i]`,
        None for a single text): rows of one base model share one forward pass per batch
        (`AdapterModel.mixed_logits`), whatever their adapters' methods; rows of one adapter alone run in its ONNX
        session where it has one (`serve_from_onnx`)."""
        if len(adapters) != len(texts) or (text_pairs is not None and len(text_pairs) != len(texts)):
            raise ConfigError(f"{len(texts)} texts need as many adapters (got {len(adapters)})"
                              + (f" and second texts (got {len(text_pairs)})." if text_pairs is not None else "."))
        loaded = [self.load(folder) for folder in adapters]
        by_model: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(loaded):
            by_model.setdefault(id(model), []).append(i)
        results: list[dict] = [{} for _ in texts]
        for rows in by_model.values():
            model = loaded[rows[0]][0]
            names = [loaded[i][1] for i in rows]
            pairs = [text_pairs[i] for i in rows] if text_pairs is not None else None
            if len(set(names)) == 1 and (pairs is None or len({p is None for p in pairs}) == 1):
                # one adapter: its own forward pass, without routing (a request of one adapter's texts)
                logits = self.logits(adapters[rows[0]], [texts[i] for i in rows],
                                     None if pairs is None or pairs[0] is None else pairs, onnx=True)
            else:
                logits = self._mixed_logits(model, names, [texts[i] for i in rows], pairs)
            by_adapter: dict[str, list[int]] = {}
            for j, name in enumerate(names):
                by_adapter.setdefault(name, []).append(j)
            for positions in by_adapter.values():  # each adapter's labels and decision read once
                folder = adapters[rows[positions[0]]]
                labels = self.labels(folder)
                temperature, threshold = self.decision(folder)
                probs = (logits[positions, : len(labels)] / (temperature if calibrated else 1.0)).softmax(-1)
                for j, result in zip(positions, _results(probs, labels, threshold), strict=True):
                    results[rows[j]] = result
        return results

    def _mixed_logits(self, model: AdapterModel, names: list[str], texts: list[str],
                      pairs: list[str | None] | None) -> torch.Tensor:
        """Each row tokenised with its own adapter's max length, batched by length across adapters."""
        encoded: list[dict[str, list[int]]] = [{} for _ in texts]
        groups: dict[tuple[int, bool], list[int]] = {}  # (max length, with a second text) -> rows
        for i, name in enumerate(names):
            paired = pairs is not None and pairs[i] is not None
            groups.setdefault((int(model.adapters[name].meta.get("max_length") or 128), paired), []).append(i)
        for (max_length, paired), rows in groups.items():
            found = model.batcher(max_length).encode([texts[i] for i in rows],
                                                     [pairs[i] for i in rows] if paired else None)
            for i, row in zip(rows, found, strict=True):
                encoded[i] = row
        batcher = model.batcher(max(length for length, _ in groups))
        extra = {name: model.method(name).virtual_tokens(model, name) for name in set(names)}
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]["input_ids"]) + extra[names[i]])
        out = torch.empty(len(texts), max(len(model.adapters[n].labels) for n in names))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                with batcher.autocast():
                    out[chunk] = model.mixed_logits(batcher.collate([encoded[i] for i in chunk]),
                                                    [names[i] for i in chunk]).float().cpu()
        return out

    def predict_file(self, folder: str | Path, input_path: str | Path, output_path: str | Path,
                     text_column: str | None = None, text_pair_column: str | None = None) -> FilePredictions:
        """Add `prediction` and `prob_<label>` columns to a table and write it as CSV.

        The text columns default to those the adapter was trained on. A row with an empty text (or second text)
        keeps its place with an empty prediction: a confident label for nothing would mislead.
        """
        model, name = self.load(folder)
        meta = model.adapters[name].meta
        frame = read_table(input_path)
        file = Path(input_path).name
        text_col = text_column or meta.get("text_column") or "text"
        pair_col = text_pair_column or meta.get("text_pair_column")
        trained = {meta.get("text_column"), meta.get("text_pair_column")}
        for col in (text_col, pair_col):
            if col and col not in frame.columns:
                why = " (the adapter was trained on it)" if col in trained else ""
                raise DataError(f"{file}: no column '{col}'{why}; the columns are "
                                f"{', '.join(map(repr, frame.columns))}. Choose the column that holds the text.")
        texts = frame[text_col].fillna("").astype(str).tolist()
        pairs = frame[pair_col].fillna("").astype(str).tolist() if pair_col else None
        keep = [i for i, t in enumerate(texts) if t.strip() and (pairs is None or pairs[i].strip())]
        if not keep:
            raise DataError(f"{file}: every row is empty in {_named(text_col, pair_col)}: nothing to predict. "
                            "Choose the column that holds the text.")
        probs = self.probabilities(folder, [texts[i] for i in keep],
                                   [pairs[i] for i in keep] if pairs is not None else None)
        labels = model.adapters[name].labels
        predictions = [""] * len(frame)
        table = np.full((len(frame), len(labels)), np.nan)
        chosen = decide(probs, labels, self.decision(folder)[1])
        for row, best, p in zip(keep, chosen, probs.numpy().round(6), strict=True):
            predictions[row], table[row] = labels[best], p
        out = frame.copy()
        out["prediction"] = predictions
        for j, label in enumerate(labels):
            out[f"prob_{label}"] = table[:, j]
        out = out.map(spreadsheet_safe)
        out.to_csv(output_path, index=False, quoting=csv.QUOTE_MINIMAL)
        return FilePredictions(len(out), len(out) - len(keep), text_col, pair_col)

    def evaluate(self, folder: str | Path, data: str | Path, text_column: str | None = None,
                 text_pair_column: str | None = None, label_column: str | None = None) -> Evaluation:
        """The adapter on every usable row of a labelled file (columns default to those it was trained on):
        metrics of the labels predict would give, and calibration under the adapter's temperature."""
        split, report, labels = self._labelled(folder, data, text_column, text_pair_column, label_column)
        logits = self.logits(folder, split.texts, split.pairs)
        temperature, threshold = self.decision(folder)
        metrics = classification_metrics(split.labels, decide((logits / temperature).softmax(-1), labels, threshold),
                                         labels)
        metrics["loss"] = nll(logits, split.labels, temperature)
        return Evaluation(metrics, calibrate(logits, split.labels, temperature), len(split), report.lines(),
                          fingerprint(split, labels), rows_frame(split, logits, labels))

    def label_issues(self, folder: str | Path, data: str | Path, text_column: str | None = None,
                     text_pair_column: str | None = None, label_column: str | None = None) -> pd.DataFrame:
        """Rows of a labelled file (one the adapter did not train on) whose label it confidently disagrees with,
        most suspicious first (engine/label_issues.py)."""
        split, _, labels = self._labelled(folder, data, text_column, text_pair_column, label_column)
        return issues_frame(split, self.logits(folder, split.texts, split.pairs).softmax(-1), labels)

    def _labelled(self, folder: str | Path, data: str | Path, text_column: str | None,
                  text_pair_column: str | None, label_column: str | None) -> tuple[Split, DataReport, list[str]]:
        model, name = self.load(folder)
        meta = model.adapters[name].meta
        labels = model.adapters[name].labels
        split, report = load_labelled(data, labels, text_column or meta.get("text_column") or "text",
                                      text_pair_column or meta.get("text_pair_column"),
                                      label_column or meta.get("label_column") or "label",
                                      label_names=meta.get("label_names"))
        return split, report, labels

    def explain(self, folder: str | Path, text: str, text_pair: str | None = None) -> dict:
        """`predict`'s result plus which words pushed each label's logit up (positive) or down: `attributions`
        (`[[word, weight], ...]` for the predicted label) and `attributions_by_label` (engine/attribution.py)."""
        from engine.attribution import explain  # captum brings matplotlib: loaded only when asked for

        result = self.predict(folder, text, text_pair)
        model, name = self.load(folder)
        labels = model.adapters[name].labels
        found = explain(model, name, text, text_pair, int(model.adapters[name].meta.get("max_length") or 128))
        by_label = {label: found.words_for(i) for i, label in enumerate(labels)}
        return {**result, "attributions": by_label[result["label"]], "attributions_by_label": by_label}
