"""Step 2: choose the adapter method, base model and hyperparameters, see the trainable-parameter count, launch.

Launching only queues a job through worker.api and opens it on the Jobs tab; the worker process trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app import job_views as views
from app import services
from app.tabs.data import DataTab
from app.tabs.jobs import JobsTab, choices
from app.ui import friendly, note
from engine.base_models import DEFAULT_BASE_MODEL
from engine.errors import AdapterLabError, ConfigError
from engine.methods import DESCRIPTIONS, METHOD_DEFAULTS
from worker import api as jobs

METHODS = [("Houlsby", "houlsby"), ("Pfeiffer", "pfeiffer"), ("IA3", "ia3")]
REDUCTION_FACTORS = [2, 4, 8, 16, 32, 64]
BASE_MODELS = [("all-MiniLM-L6-v2 (bundled, small and fast, works offline)", DEFAULT_BASE_MODEL)]


@dataclass
class TrainTab:
    """The form's components that the launch button reads."""

    method: gr.Radio
    reduction_factor: gr.Radio
    base_model: gr.Dropdown
    hyperparameters: list[gr.components.Component]
    name: gr.Textbox
    launch: gr.Button
    status: gr.Markdown
    base_dropout: gr.Checkbox


def method_help() -> str:
    return "\n".join(f"- **{label}**: {DESCRIPTIONS[key]}" for label, key in METHODS)


def on_method(method: str):
    """Per-method defaults, and the reduction factor only for the bottleneck methods."""
    defaults = METHOD_DEFAULTS[method]
    return (gr.update(visible=method != "ia3"), gr.update(value=int(defaults["epochs"])),
            gr.update(value=defaults["learning_rate"]))


def parameter_count(base_model: str, method: str, reduction_factor: float, labels: list[str]) -> str:
    """The live 'how much will be trained' line; loads the base model once per web process."""
    try:
        adapter, trainable, base = services.parameter_count(base_model or DEFAULT_BASE_MODEL, method,
                                                            float(reduction_factor or 16), len(labels or []) or 2)
    except AdapterLabError as exc:
        return note(str(exc), "error")
    share = 100 * trainable / base if base else 0
    labels_note = f"{len(labels)} labels" if labels else "2 labels until you choose data"
    return (f"**{trainable:,} trainable parameters**: {adapter:,} in the adapter + {trainable - adapter:,} in the "
            f"classifier ({labels_note}). That is **{share:.2f}%** of the base model's {base / 1e6:.1f} million, "
            "which stays frozen.")


def _int(value: float | None, name: str, minimum: int | None = None) -> int | None:
    if value is None or value == "":
        return None
    if float(value) != int(value) or (minimum is not None and int(value) < minimum):
        raise ConfigError(f"{name} must be a whole number" + (f" of at least {minimum}." if minimum else "."))
    return int(value)


def build_spec(source: str | None, validation: str | None, text: str | None, pair: str | None, label: str | None,
               method: str, reduction_factor: float, base_model: str | None, epochs: float | None,
               learning_rate: float | None, batch_size: float | None, max_length: float | None,
               max_train_samples: float | None, seed: float | None, patience: float | None,
               name: str | None, base_dropout: bool = False) -> dict:
    """The job spec for worker.api.submit from the form's values, or a ConfigError saying what to fix."""
    if not source or not text or not label:
        raise ConfigError("Choose the data and its text and label columns on the Data tab first.")
    if learning_rate is not None and learning_rate <= 0:
        raise ConfigError("The learning rate must be greater than 0.")
    spec = {"data": source, "validation": validation or None, "text_column": text, "text_pair_column": pair or None,
            "label_column": label, "method": method, "reduction_factor": float(reduction_factor or 16),
            "base_model": (base_model or "").strip() or None, "epochs": _int(epochs, "Epochs", 1),
            "learning_rate": learning_rate, "batch_size": _int(batch_size, "Batch size", 1) or 16,
            "max_length": _int(max_length, "Max length", 8) or 128,
            "max_train_samples": _int(max_train_samples, "Max training rows", 2),
            "seed": 42 if seed is None else _int(seed, "Random seed"),
            "early_stopping_patience": _int(patience, "Early stopping patience", 1)}
    if base_dropout:
        spec["base_dropout"] = True
    if (name or "").strip():
        spec["name"] = name.strip()[:200]
    return spec


def data_summary(name: str | None, text: str | None, pair: str | None, label: str | None, labels: list[str]) -> str:
    if not name or not labels:
        return note("No data chosen yet: start on the Data tab.", "warn")
    texts = f"text column '{text}'" + (f" + '{pair}'" if pair else "")
    return note(f"Training on {name}: {texts}, label column '{label}', {len(labels)} labels "
                f"({', '.join(labels[:6])}{'…' if len(labels) > 6 else ''}).", "ok")


def build(data: DataTab) -> TrainTab:
    gr.Markdown("## Step 2 · Choose how to train")
    summary = gr.Markdown(data_summary(None, None, None, None, []), elem_id="train-data-summary")
    with gr.Row():
        with gr.Column(scale=3):
            method = gr.Radio(METHODS, value="pfeiffer", label="Adapter method", elem_id="train-method")
            gr.Markdown(method_help(), elem_classes=["al-help"])
            reduction_factor = gr.Radio(REDUCTION_FACTORS, value=16, label="Reduction factor",
                                        elem_id="train-reduction",
                                        info="Bottleneck size = the model's hidden size ÷ this factor. A smaller "
                                             "factor trains more parameters.")
            base_model = gr.Dropdown(BASE_MODELS, value=DEFAULT_BASE_MODEL, allow_custom_value=True,
                                     label="Base model", elem_id="train-base-model",
                                     info="Or type a Hugging Face model id (e.g. bert-base-uncased) or a model "
                                          "folder on the server.")
        with gr.Column(scale=2):
            count = gr.Markdown(elem_id="train-param-count", elem_classes=["al-card"])
            defaults = METHOD_DEFAULTS["pfeiffer"]
            with gr.Row():
                epochs = gr.Number(int(defaults["epochs"]), label="Epochs", precision=0, minimum=1, maximum=100,
                                   info="Passes over the training rows.", elem_id="train-epochs")
                learning_rate = gr.Number(defaults["learning_rate"], label="Learning rate", minimum=0,
                                          step=0.0001, info="Default depends on the method.",
                                          elem_id="train-lr")
                batch_size = gr.Number(16, label="Batch size", precision=0, minimum=1, maximum=1024,
                                       info="Rows per training step.", elem_id="train-batch-size")
            with gr.Accordion("Advanced", open=False):
                max_length = gr.Number(128, label="Max length (tokens)", precision=0, minimum=8, maximum=8192,
                                       info="Longer texts are cut to this many tokens.")
                max_train_samples = gr.Number(None, label="Max training rows", precision=0, minimum=2,
                                              info="Leave empty to use every row.", elem_id="train-max-samples")
                seed = gr.Number(42, label="Random seed", precision=0, info="Same seed, same result.")
                patience = gr.Number(None, label="Early stopping patience (epochs)", precision=0, minimum=1,
                                     info="Stop after this many epochs without improvement. Empty: never.")
                base_dropout = gr.Checkbox(False, label="Keep the base model's dropout while training",
                                           elem_id="train-base-dropout",
                                           info="Off by default: faster, and as accurate in our measurements "
                                                "(docs/defaults.md). AdapterHub and PEFT keep it on.")
    name = gr.Textbox(label="Job name (optional)", placeholder="e.g. tickets-pfeiffer-v1", elem_id="train-name")
    launch = gr.Button("Launch training", variant="primary", size="lg", elem_id="train-launch")
    status = gr.Markdown(elem_id="train-status")

    method.change(on_method, method, [reduction_factor, epochs, learning_rate])
    # On load and on every change; one at a time and newest last, so the count always matches the form.
    gr.on(None, parameter_count, [base_model, method, reduction_factor, data.labels], count, concurrency_limit=1,
          concurrency_id="parameter-count", trigger_mode="always_last", show_progress="minimal")
    gr.on([data.source_name.change, data.text.change, data.pair.change, data.label.change, data.labels.change],
          data_summary, [data.source_name, data.text, data.pair, data.label, data.labels], summary)
    return TrainTab(method, reduction_factor, base_model,
                    [epochs, learning_rate, batch_size, max_length, max_train_samples, seed, patience], name, launch,
                    status, base_dropout)


@friendly
def launch_job(*values):
    """Queue the job and open it on the Jobs tab."""
    job_id = jobs.submit(build_spec(*values))
    all_jobs = jobs.list_jobs()
    return (gr.Tabs(selected="jobs"), views.table(all_jobs), gr.update(choices=choices(all_jobs), value=job_id),
            note(f"Job {job_id} queued. Opening it on the Jobs tab.", "ok"))


def connect(train: TrainTab, data: DataTab, tabs: gr.Tabs, jobs_tab: JobsTab) -> None:
    """Wire the launch button across tabs: it reads the Data tab and opens the Jobs tab."""
    inputs = [data.source, data.validation, data.text, data.pair, data.label, train.method,
              train.reduction_factor, train.base_model, *train.hyperparameters, train.name, train.base_dropout]
    train.launch.click(launch_job, inputs, [tabs, jobs_tab.table, jobs_tab.picker, train.status])
    data.next_button.click(lambda: gr.Tabs(selected="train"), None, tabs)
