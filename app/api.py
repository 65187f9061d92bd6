"""The app's named Gradio API for scripts and tests: /submit_job, /submit_search, /job_status, /search_status,
/list_adapters, /predict, /explain, /evaluate, /label_issues, /set_threshold.

Each endpoint is a thin call into worker.api or the shared Predictor, as the caller's login or API token
(app/access.py). Gradio derives the parameter names and types from these signatures, so this module keeps its
annotations evaluated (no `from __future__`).
"""

import json

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder

from app import access, services
from app.search_views import search_result
from app.security import check_job_id, uploaded_path
from app.tabs.train import DEFAULT_METHOD, build_spec
from app.ui import friendly
from worker import api as jobs

API_NAMES = ("submit_job", "submit_search", "job_status", "search_status", "list_adapters", "predict", "explain",
             "evaluate", "label_issues", "set_threshold")


def _plain(value: object) -> object:
    """JSON-safe copy (datetimes as ISO strings)."""
    return json.loads(json.dumps(value, default=str))


@friendly
def submit_job(data_file: FileData, text_column: str, label_column: str, method: str,
               reduction_factor: float | None = None,
               epochs: int | None = None, text_pair_column: str | None = None, base_model: str | None = None,
               learning_rate: float | None = None, batch_size: int = 16, max_train_samples: int | None = None,
               name: str | None = None, method_options: dict | None = None, balance_classes: bool = False) -> str:
    """Queue a training job on an uploaded table; returns the job id. `method_options`: the method's own
    settings by name (e.g. {"lora_r": 16}; `adapterlab train --help` lists them); `reduction_factor` is the
    same as {"reduction_factor": ...}."""
    path = uploaded_path(data_file.get("path") if isinstance(data_file, dict) else None, get_upload_folder())
    data = {"source": str(path), "text": text_column, "pair": text_pair_column or None, "label": label_column}
    options = dict(method_options or {})
    if reduction_factor is not None:
        options.setdefault("reduction_factor", reduction_factor)
    spec = build_spec(data, {"method": method, "method_options": options, "base_model": base_model,
                             "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
                             "max_train_samples": max_train_samples, "name": name,
                             "balance_classes": balance_classes})
    return jobs.submit(spec, allow_folders=False, actor=access.current())


@friendly
def submit_search(data_file: FileData, text_column: str, label_column: str, budget_minutes: float = 15,
                  methods: list[str] | None = None, max_trials: int | None = None, parallel: int = 1,
                  text_pair_column: str | None = None, base_model: str | None = None, batch_size: int = 16,
                  max_train_samples: int | None = None, name: str | None = None) -> str:
    """Queue a search for the best method and settings on an uploaded table within `budget_minutes`; returns its
    id (`/search_status` follows it). `methods`: names to try (default: Houlsby, Pfeiffer, IA3)."""
    path = uploaded_path(data_file.get("path") if isinstance(data_file, dict) else None, get_upload_folder())
    data = {"source": str(path), "text": text_column, "pair": text_pair_column or None, "label": label_column}
    spec = build_spec(data, {"method": (methods or [DEFAULT_METHOD])[0], "base_model": base_model,
                             "batch_size": batch_size, "max_train_samples": max_train_samples, "name": name})
    return jobs.submit_search(spec, {"budget_minutes": budget_minutes, "methods": methods,
                                     "max_trials": max_trials, "parallel": parallel}, access.current())


@friendly
def search_status(search_id: str) -> dict:
    """A search as `adapterlab search --json` prints it: `state`, `best` and every trial (`job_id`, `state`,
    `method`, `macro_f1`, settings, outcome)."""
    actor = access.current()
    found = jobs.get_job(check_job_id(search_id), actor)
    if found["kind"] != "search":
        raise gr.Error(f"Job {search_id} is not a search; /job_status shows it.")
    return _plain(search_result(found, jobs.trials(found["id"], actor)))


@friendly
def job_status(job_id: str) -> dict:
    """The job's record: state, progress, eta_seconds, metrics, error, history, steps and settings."""
    job = _plain(jobs.get_job(check_job_id(job_id), access.current()))
    job.pop("traceback", None)  # for the server log and the CLI, not for web clients
    for key in ("data", "validation_data"):  # a dict with a "path" reads as a file to download in gradio_client
        if isinstance(job.get(key), dict):
            job[key].pop("path", None)
    return job


@friendly
def list_adapters() -> list[dict]:
    """Every finished adapter: id, name, method, labels, base_model, metrics."""
    return _plain(services.adapters(access.current()))


@friendly
def predict(adapter: str, text: str, text_pair: str | None = None) -> dict:
    """`{"label": ..., "probabilities": {label: p}}` from the adapter with this job id (or unique name)."""
    return services.predict(adapter, text, text_pair, access.current())


@friendly
def explain(adapter: str, text: str, text_pair: str | None = None) -> dict:
    """`/predict`'s result plus how much each word pushed each label's logit (Integrated Gradients):
    `attributions` ([[word, weight], ...] for the predicted label) and `attributions_by_label`."""
    return services.explain(adapter, text, text_pair, access.current())


@friendly
def evaluate(adapter: str, data_file: FileData, text_column: str | None = None, label_column: str | None = None,
             text_pair_column: str | None = None) -> dict:
    """Evaluate a finished job's adapter on an uploaded labelled file and keep it with the job (its page lists
    it): `id`, `rows`, `metrics` (as the job's) and `calibration` (`ece`, `ece_before`, `temperature`, ...).
    Columns default to those the adapter was trained on."""
    path = uploaded_path(data_file.get("path") if isinstance(data_file, dict) else None, get_upload_folder())
    actor = access.current()
    found = services.find_adapter(adapter, actor)
    text, pair, label = services.trained_columns(found)
    name = (data_file.get("orig_name") if isinstance(data_file, dict) else None) or path.name
    return _plain(services.evaluate_file(found["id"], path, name, text_column or text,
                                         text_pair_column or pair, label_column or label, actor))


@friendly
def label_issues(adapter: str, data_file: FileData | None = None) -> list[dict]:
    """Rows whose given label the adapter confidently disagrees with, most suspicious first (`split`, `row`,
    `text`, `given_label`, `suggested_label`, `score`): those found when its job trained, or, with a labelled
    file, that file's."""
    path = None
    if data_file:
        path = uploaded_path(data_file.get("path") if isinstance(data_file, dict) else None, get_upload_folder())
    return _plain(services.label_issues(adapter, path, access.current()))


@friendly
def set_threshold(adapter: str, rule: str | None = "max_f1", target: float | None = None,
                  label: str | None = None) -> dict:
    """Save a binary adapter's decision threshold, chosen on its validation rows: `rule` max_f1, precision or
    recall (the last two with a `target`), for `label` (default: the second); `rule` empty removes it. /predict
    applies it at once."""
    return _plain(services.set_threshold(adapter, rule or None, target, label, access.current()))


def register() -> None:
    """Add the endpoints to the Blocks being built; call before the tabs so these names stay unsuffixed."""
    for fn in (submit_job, submit_search, job_status, search_status, list_adapters, predict, explain, evaluate,
               label_issues, set_threshold):
        gr.api(fn, api_name=fn.__name__)
