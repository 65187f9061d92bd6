"""What the web callbacks share: one Predictor per process (base models load once), adapter lookup, counts.

Adapters are found by job id in the job store, never by a path from the browser, and only among those the
asking `actor` may use (worker/access.py). One lock serialises every use of the shared models, because counting
parameters and predicting both switch the active adapter.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from app import onnx_serving
from app.coalescing import Coalescer
from app.security import safe_filename
from engine.adapter_io import read_metadata, update_metadata
from engine.base_models import load_config, resolve_base_model, skeleton
from engine.calibration import RULES
from engine.data import TABLE_SUFFIXES
from engine.errors import ConfigError, DataError
from engine.inference import FilePredictions, Predictor
from engine.methods import get as get_method
from engine.thresholds import pick
from worker import api as jobs
from worker import evaluations, settings
from worker.access import Actor, check_change

_lock = threading.RLock()
_work_dir = None  # a TemporaryDirectory, removed when the process exits
_predictor: Predictor | None = None
_loaded_versions: dict[str, str | None] = {}  # adapter folder -> finished_at of the weights loaded from it


def predictor() -> Predictor:
    """The process's one Predictor: switching adapters never reloads a base model."""
    global _predictor
    with _lock:
        if _predictor is None:
            _predictor = Predictor()
        return _predictor


def work_dir() -> Path:
    """A fresh folder for files the page offers for download (zips, prediction CSVs); Gradio may serve it."""
    global _work_dir
    with _lock:
        if _work_dir is None:
            _work_dir = tempfile.TemporaryDirectory(prefix="adapterlab-web-")
    return Path(tempfile.mkdtemp(dir=_work_dir.name))


def adapters(actor: Actor) -> list[dict]:
    """The finished adapters `actor` may use, newest first, as the job store lists them."""
    return jobs.finished_adapters(actor)


def runtime(adapter: dict) -> str:
    """What answers the REST endpoint for this adapter now: 'onnxruntime' or 'pytorch'."""
    with _lock:
        folder = _current(adapter)
        _from_onnx(adapter, folder, start=False)
        return predictor().runtime(folder)


def find_adapter(key: str, actor: Actor) -> dict:
    """The finished adapter with this job id (or, failing that, this unique name) that `actor` may use."""
    key = (key or "").strip()
    by_id = jobs.finished_adapter(key, actor) if key else None
    if by_id:
        return by_id
    found = adapters(actor)
    named = [a for a in found if a.get("name") == key]
    if len(named) == 1:
        return named[0]
    if not key:
        raise ConfigError("Choose an adapter first.")
    if named:
        raise ConfigError(f"Several adapters are named '{key}'; use the job id instead.")
    raise ConfigError(f"There is no finished adapter '{key}'. Train one on the Train tab, or pick one from the list.")


_metadata: dict[str, tuple[int, dict]] = {}  # adapterlab.json -> (its mtime, what it says)


def _read_metadata(folder: str) -> dict:
    """`read_metadata`, read again only when the file changed: a prediction asks for the columns each time
    (parsing the file was a tenth of a one-text REST call)."""
    path = Path(folder) / "adapterlab.json"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return read_metadata(folder)
    cached = _metadata.get(str(path))
    if cached is None or cached[0] != stamp:
        cached = _metadata[str(path)] = (stamp, read_metadata(folder))
    return cached[1]


def trained_columns(adapter: dict) -> tuple[str, str | None, str]:
    """(text column, second text column or None, label column) the adapter was trained on; files it reads (a
    batch to predict, a test file) default to them."""
    try:
        meta = _read_metadata(adapter["adapter_dir"])
    except (ConfigError, OSError):
        return "text", None, "label"
    return meta.get("text_column") or "text", meta.get("text_pair_column"), meta.get("label_column") or "label"


def text_columns(adapter: dict) -> tuple[str, str | None]:
    """(text column, second text column or None) the adapter was trained on; batch files need the same."""
    return trained_columns(adapter)[:2]


def pair_column(adapter: dict) -> str | None:
    """The second text column the adapter was trained with, if it takes pairs."""
    return text_columns(adapter)[1]


def _current(adapter: dict) -> str:
    """The adapter's folder, reloaded if its job was retried since it was loaded (same folder, new weights).

    Call with the lock held."""
    folder = str(Path(adapter["adapter_dir"]).resolve())
    version = adapter.get("finished_at")
    p = predictor()
    if folder in p.loaded and _loaded_versions.get(folder) != version:
        p.unload(folder)
    _loaded_versions[folder] = version
    return folder


def _one_text(key: str, text: str, text_pair: str | None, actor: Actor) -> tuple[dict, str | None]:
    """The adapter with this id or name, and the second text it takes (None unless trained on pairs), checked."""
    adapter = find_adapter(key, actor)
    if not (text or "").strip():
        raise DataError("Type a text to classify.")
    takes_pairs = bool(pair_column(adapter))
    if takes_pairs and not (text_pair or "").strip():
        raise DataError(f"Adapter '{adapter['name']}' was trained on text pairs: type the second text too.")
    return adapter, text_pair if takes_pairs else None


def predict(key: str, text: str, text_pair: str | None, actor: Actor) -> dict:
    """`{"label", "probabilities"}` for one text through the adapter with this id or name."""
    adapter, text_pair = _one_text(key, text, text_pair, actor)
    with _lock:
        return predictor().predict(_current(adapter), text, text_pair)


def explain(key: str, text: str, text_pair: str | None, actor: Actor) -> dict:
    """`predict`'s result plus each word's attribution: `attributions` (for the predicted label) and
    `attributions_by_label` ({label: [[word, weight], ...]})."""
    adapter, text_pair = _one_text(key, text, text_pair, actor)
    with _lock:
        return predictor().explain(_current(adapter), text, text_pair)


def classify(items: list[tuple[str, str, str | None]], actor: Actor) -> list[dict]:
    """`{"adapter", "label", "probabilities"}` for each (adapter id or name, text, second text), in input order,
    with each adapter's temperature and threshold: rows of different adapters share the model's forward passes
    (`Predictor.predict_batch`)."""
    adapters = {key: find_adapter(key, actor) for key, _, _ in items}
    pairs: list[str | None] = []
    for i, (key, text, text_pair) in enumerate(items):
        adapter = adapters[key]
        if not (text or "").strip():
            raise DataError(f"Text {i + 1} is empty: send a text to classify.")
        takes_pairs = bool(pair_column(adapter))
        if takes_pairs and not (text_pair or "").strip():
            raise DataError(f"Adapter '{adapter['name']}' was trained on text pairs: text {i + 1} needs its "
                            "second text (text_pair) too.")
        pairs.append(text_pair if takes_pairs else None)
    results = _classifier([(adapters[key], text, pair) for (key, text, _), pair in zip(items, pairs, strict=True)])
    return [{"adapter": adapters[key]["id"], **result} for (key, _, _), result in zip(items, results, strict=True)]


def _classify_rows(rows: list[tuple[dict, str, str | None]]) -> list[dict]:
    """(adapter, text, second text) rows, maybe of several requests, through one `predict_batch`; each adapter
    from onnxruntime once its export is made (app/onnx_serving.py)."""
    with _lock:
        adapters = {adapter["id"]: adapter for adapter, _, _ in rows}
        folders = {key: _current(adapter) for key, adapter in adapters.items()}
        for key, adapter in adapters.items():
            _from_onnx(adapter, folders[key], start=True)
        return predictor().predict_batch([text for _, text, _ in rows], [folders[a["id"]] for a, _, _ in rows],
                                         [pair for _, _, pair in rows])


_classifier = Coalescer(threading.Lock(), _classify_rows)  # concurrent REST requests share forward passes
_onnx_exports = onnx_serving.OnnxExports()


def _from_onnx(adapter: dict, folder: str, start: bool) -> None:
    """Serve the adapter from its ONNX export once that is made; with `start`, have it made if it can be. Call
    with the lock held."""
    if onnx_serving.enabled() and (not start or predictor().can_serve_from_onnx(folder)):
        export = _onnx_exports.ready(f"{adapter['id']} {adapter.get('finished_at')}", folder, start)
        if export is not None:
            predictor().serve_from_onnx(folder, export)


_exports: dict[str, tuple[Path, dict]] = {}  # "<job id> <finished_at> <metadata mtime>" -> (zip, export report)


def export_onnx(key: str, actor: Actor) -> tuple[Path, dict]:
    """The finished adapter exported to ONNX (engine/export.py) and zipped for download: (zip, the export's
    report with its parity check). Made once per version of the adapter (a new threshold makes a new one)."""
    from engine.export import export_onnx as export  # onnx and onnxruntime load only when asked for

    adapter = find_adapter(key, actor)
    folder = Path(adapter["adapter_dir"])
    meta = folder / "adapterlab.json"
    version = f"{adapter['id']} {adapter.get('finished_at')} {meta.stat().st_mtime_ns if meta.is_file() else ''}"
    if version not in _exports or not _exports[version][0].is_file():
        where = work_dir()
        name = f"{safe_filename(adapter.get('name') or 'adapter')}-onnx"
        report = export(folder, where / name).as_dict()
        archive = Path(shutil.make_archive(str(where / name), "zip", root_dir=where / name))
        shutil.rmtree(where / name)
        _exports[version] = (archive, report)
    return _exports[version]


def predict_file(key: str, input_path: str | Path, output_name: str, text_column: str | None,
                 text_pair_column: str | None, actor: Actor) -> tuple[Path, FilePredictions]:
    """Predict every row of a table into a CSV for download, reading the text from the chosen columns."""
    adapter = find_adapter(key, actor)
    takes_pairs = bool(pair_column(adapter))
    if takes_pairs and not text_pair_column:
        raise DataError(f"Adapter '{adapter['name']}' was trained on text pairs: choose the second text column too.")
    out = work_dir() / output_name
    with _lock:
        result = predictor().predict_file(_current(adapter), input_path, out, text_column,
                                          text_pair_column if takes_pairs else None)
    return out, result


def parameter_count(base_model: str, method: str, options: dict, num_labels: int, actor: Actor,
                    labels_as_text: bool = False) -> tuple[int, int, int]:
    """(method, method + classifier head, base model) parameter counts for these settings, from the model's
    config alone (nothing is loaded), checked as a job would be; labels as text train no head."""
    config = load_config(resolve_base_model(base_model))
    kind = get_method(method)
    kind.supports(config, labels_as_text)
    chosen = kind.options(jobs.adapter_options(method, options, False, actor))  # a fusion's, by job id
    adapter, head = kind.count(chosen, config, max(2, num_labels))
    head = 0 if labels_as_text else head
    return adapter, adapter + head, sum(p.numel() for p in skeleton(config).base_model.parameters())


def adapters_of(method_names: tuple[str, ...], actor: Actor) -> list[tuple[str, str]]:
    """(label, job id) of the finished adapters of these methods, newest first: what a fusion can fuse."""
    return [(f"{a['name']} · {get_method(a['method']).label} · {a['id']}", a["id"]) for a in adapters(actor)
            if a["method"] in method_names]


def datasets_dir() -> Path:
    """The server-side folder whose tables the Data tab offers (ADAPTERLAB_DATASETS, or <data dir>/datasets)."""
    configured = os.environ.get("ADAPTERLAB_DATASETS")
    return Path(configured).expanduser() if configured else settings.data_dir() / "datasets"


def dataset_files() -> list[str]:
    """Names of the tables in the datasets folder (no sub-folders, no hidden files)."""
    folder = datasets_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES and not p.name.startswith("."))


def dataset_path(name: str) -> Path:
    """The full path of a listed dataset; any other name (a path, '..') is refused."""
    if name not in dataset_files():
        raise DataError(f"There is no dataset '{name}' in the datasets folder ({datasets_dir()}).")
    return datasets_dir() / name


def evaluate_file(job_id: str, path: str | Path, file_name: str, text_column: str, text_pair_column: str | None,
                  label_column: str, actor: Actor) -> dict:
    """Evaluate the job's adapter on a labelled file in this process and record it with the job."""
    adapter = find_adapter(job_id, actor)
    with _lock:
        result = predictor().evaluate(_current(adapter), path, text_column, text_pair_column or None, label_column)
    return evaluations.record(adapter["id"], result, file_name,
                              {"text": text_column, "pair": text_pair_column or None, "label": label_column}, actor)


def label_issues(key: str, path: str | Path | None, actor: Actor) -> list[dict]:
    """Suspicious labels, most suspicious first: those found when the job trained, or those of a labelled file
    (read with the adapter's training columns)."""
    adapter = find_adapter(key, actor)
    if path is None:
        frame = evaluations.label_issues(adapter["id"])
    else:
        with _lock:
            frame = predictor().label_issues(_current(adapter), path)
    return frame.to_dict(orient="records")


def set_threshold(key: str, rule: str | None, target: float | None, label: str | None, actor: Actor) -> dict:
    """Choose a binary adapter's threshold on its job's validation rows (`rule` max_f1, precision or recall) and
    save it; `rule=None` removes it (only its owner or an admin). Returns the adapter's saved settings."""
    adapter = find_adapter(key, actor)
    check_change(actor, "set the threshold of", adapter["id"], adapter["owner"])
    folder = adapter["adapter_dir"]
    chosen = None
    if rule is not None:
        rows = evaluations.stored_rows(adapter["id"], "validation")
        if rows.empty:
            raise ConfigError(f"Adapter '{adapter['name']}' has no stored validation rows to choose a threshold on "
                              "(it was trained before AdapterLab kept them): use `adapterlab threshold --data`.")
        if rule not in RULES:
            raise ConfigError(f"The rule must be one of {', '.join(RULES)}.")
        chosen = pick(rows, read_metadata(folder), rule, None if rule == "max_f1" else target, label)
    meta = update_metadata(folder, threshold=chosen)
    return {"threshold": meta.get("threshold"), "temperature": meta.get("temperature"),
            "apply_temperature": meta.get("apply_temperature", True)}
