"""Step 2: choose the adapter method, base model and hyperparameters, see the trainable-parameter count, launch;
or let a search choose the method and settings within a time budget.

Launching only queues a job (or a search) through worker.api and opens it on the Jobs tab; the workers train.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app import access, services
from app import job_views as views
from app.security import check_job_id
from app.tabs.data import DataTab
from app.tabs.jobs import JobsTab, choices
from app.ui import friendly, note
from engine import methods
from engine.base_models import DEFAULT_BASE_MODEL, on_this_machine
from engine.data import prepare
from engine.errors import AdapterLabError, ConfigError
from engine.methods.base import OptionSpec, option_fields
from engine.model_catalog import CATALOG
from engine.options import check_value, default_of, field_spec
from engine.search_space import default_methods
from engine.training import TrainConfig
from worker import api as jobs
from worker.access import Actor
from worker.search import SearchConfig

DEFAULT_METHOD = "pfeiffer"
TRAIN_ONE, SEARCH = "Train one adapter", "Search for the best method and settings"
SEARCH_HELP = ("AdapterLab tries each method at its defaults first, then settings Optuna chooses (method, "
               "reduction factor, learning rate, epochs), stopping weak trials after an epoch. Each trial is a job "
               "on the Jobs tab; the search page shows them as they end.")
def base_model_choices() -> list[tuple[str, str]]:
    """The recommended models per family (engine/model_catalog.py), each saying whether it is on this machine."""
    return [(m.label(on_this_machine(m.id)), m.id) for m in CATALOG]


@dataclass
class TrainTab:
    """The form's components by setting name (what the launch button reads), the button and its status line.
    A method's own options are named "method.option" (e.g. "lora.lora_r"): each method has its own controls."""

    form: dict[str, gr.components.Component]  # the search's own settings are "search.<field>"
    launch: gr.Button
    status: gr.Markdown
    cards: gr.HTML  # the method cards, and each method's options column (a clone shows its method's)
    groups: list[gr.Column]


def method_cards(chosen: str) -> str:
    """Every registered method, grouped, with its one-line explanation and measured defaults; `chosen` marked."""
    parts = []
    for group in methods.GROUPS:
        cards = []
        for m in (m for m in methods.REGISTRY.values() if m.group == group):
            mark = " al-chosen" if m.name == chosen else ""
            cards.append(f'<div class="al-method{mark}"><b>{html.escape(m.label)}</b> '
                         f'<span class="al-ref">{html.escape(m.reference)}</span><br>{html.escape(m.description)}'
                         f'<br><span class="al-ref">Default: learning rate {m.defaults["learning_rate"]:g}, '
                         f'{int(m.defaults["epochs"])} epochs</span></div>')
        if cards:
            parts.append(f'<div class="al-method-group"><div class="al-bars-title">{html.escape(group)}</div>'
                         f'{"".join(cards)}</div>')
    return f'<div class="al-methods">{"".join(parts)}</div>'


def method_choices() -> list[tuple[str, str]]:
    """The methods in the cards' order (by group), for the radio."""
    return [(m.label, m.name) for g in methods.GROUPS for m in methods.REGISTRY.values() if m.group == g]


def on_method(method: str) -> tuple:
    """The chosen method's card, its options shown (every other method's hidden), and its default epochs and
    learning rate."""
    defaults = methods.get(method).defaults
    return (method_cards(method), *[gr.update(visible=name == method) for name in methods.names()],
            gr.update(value=int(defaults["epochs"])), gr.update(value=defaults["learning_rate"]))


def chosen_options(method: str, values: dict) -> dict:
    """The chosen method's option values from the form's "method.option" entries."""
    prefix = f"{method}."
    return {key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix)}


def _size(count: int) -> str:
    """The size of `count` fp32 numbers, in KB or MB."""
    megabytes = 4 * count / 1e6
    if megabytes < 1:
        return f"{1000 * megabytes:.0f} KB"
    return f"{megabytes:.1f} MB" if megabytes < 10 else f"{megabytes:,.0f} MB"


def parameter_count(base_model: str, method: str, options: dict, labels: list[str],
                    labels_as_text: bool = False) -> str:
    """The live 'how much will be trained' line, with what the saved result costs on disk; from the model's
    config, so it follows every change at once."""
    try:
        adapter, trainable, base = services.parameter_count(base_model or DEFAULT_BASE_MODEL, method, options,
                                                            len(labels or []) or 2, access.current(),
                                                            bool(labels_as_text))
    except AdapterLabError as exc:
        return note(str(exc), "error")
    share = 100 * trainable / base if base else 0
    labels_note = f"{len(labels)} labels" if labels else "2 labels until you choose data"
    if method == "full":
        return (f"**{trainable:,} trainable parameters: every weight of the model** ({labels_note}). Each run "
                f"saves a whole model of about **{_size(trainable)}** and needs about {_size(4 * trainable)} of "
                "memory to train (weights, gradients and the optimizer's two averages); the Playground loads it "
                "as a model of its own.")
    head = (", and no classifier: the decoder writes each label as text" if labels_as_text else
            f" + {trainable - adapter:,} in the classifier ({labels_note})")
    return (f"**{trainable:,} trainable parameters**: {adapter:,} in the method{head}. That is "
            f"**{share:.2f}%** of the base model's {base / 1e6:.1f} million, which stays frozen; the saved adapter "
            f"is about {_size(trainable)}.")


def option_control(method: str, name: str, spec: OptionSpec, default: object) -> gr.components.Component:
    """One option's control: a choice of the offered values, or a text box the form checks (in the page's words)."""
    key = f"train-{method}-{name}".replace("_", "-")
    if spec.adapters_of:  # finished jobs' adapters of those methods (refreshed when the method is chosen)
        return gr.Dropdown(services.adapters_of(spec.adapters_of, access.current()), value=[], multiselect=True,
                           label=spec.label,
                           info=spec.help, elem_id=key)
    if spec.choices:
        return gr.Radio(list(spec.choices), value=default, label=spec.label, info=spec.help, elem_id=key)
    shown = ", ".join(default) if isinstance(default, list) else ("" if default is None else default)
    empty = "the model's default" if isinstance(default, list) else "none"
    return gr.Textbox(str(shown), label=spec.label, info=spec.help, elem_id=key, placeholder=empty)


# The hyperparameters the form shows, with their words, limits and defaults from TrainConfig (engine/options.py)
SETTINGS = {f.name: (f, spec) for f, spec in option_fields(TrainConfig)
            if f.name in ("epochs", "learning_rate", "batch_size", "max_length", "max_train_samples",
                          "max_eval_samples", "seed", "early_stopping_patience", "balance_classes",
                          "labels_as_text")}


def _checked(key: str, value: object) -> object:
    """A form value checked as a job would check it; an empty box is the setting's default."""
    f, spec = SETTINGS[key]
    if (value is None or not str(value).strip()) and not spec.optional:
        return default_of(f)
    return check_value(f, spec, value)


def _number_box(key: str, elem_id: str, value: object = None) -> gr.Number:
    """A number box for a setting, in its words. No minimum or maximum: the form checks them itself, naming the
    field in its message (Gradio's own limits say it in other words)."""
    f, spec = SETTINGS[key]
    return gr.Number(default_of(f) if value is None else value, label=spec.label, info=spec.help,
                     precision=0 if spec.whole else None, step=1 if spec.whole else 0.0001, elem_id=elem_id)


def _optional_box(key: str, elem_id: str, empty: str) -> gr.Textbox:
    """A text box for a setting whose empty value means something (an empty number box reads as 0 once shown)."""
    _, spec = SETTINGS[key]
    return gr.Textbox("", label=spec.label, placeholder=empty, info=spec.help, elem_id=elem_id)


def build_spec(data: dict | None, form: dict) -> dict:
    """The job spec for worker.api.submit from the checked data choice and the form's values by name, or a
    ConfigError saying what to fix in the page's words."""
    if not data:
        raise ConfigError("Choose the data and its text and label columns on the Data tab first.")
    method = methods.get(form["method"])
    spec = {"data": data["source"], "validation": (data.get("validation") or {}).get("path"),
            "text_column": data["text"], "text_pair_column": data.get("pair"), "label_column": data["label"],
            "label_names": data.get("label_names"), "method": method.name,
            "base_model": (form.get("base_model") or "").strip() or None,
            "method_options": dataclasses.asdict(method.options(form.get("method_options"))) or None}
    switches = ("balance_classes", "labels_as_text")  # stored only when on, as the command line stores them
    spec.update({key: _checked(key, form.get(key)) for key in SETTINGS if key not in switches})
    spec.update({key: True for key in switches if form.get(key)})
    if form.get("base_dropout"):
        spec["base_dropout"] = True
    if (form.get("name") or "").strip():
        spec["name"] = form["name"].strip()[:200]
    return {k: v for k, v in spec.items() if v is not None}


def data_summary(data: dict | None) -> str:
    if not data:
        return note("No data chosen yet: start on the Data tab.", "warn")
    texts = f"text column '{data['text']}'" + (f" + '{data['pair']}'" if data.get("pair") else "")
    labels = data["labels"]
    return note(f"Training on {data['name']}: {texts}, label column '{data['label']}', {len(labels)} labels "
                f"({', '.join(labels[:6])}{'…' if len(labels) > 6 else ''}).", "ok")


def _search_controls() -> dict[str, gr.components.Component]:
    """The search's budget, methods, trial limit and parallelism, in SearchConfig's words."""
    def spec(name: str) -> OptionSpec:
        return field_spec(SearchConfig, name)

    defaults = SearchConfig()
    return {
        "search.methods": gr.CheckboxGroup(method_choices(), value=default_methods(), label=spec("methods").label,
                                           info="The methods to try.", elem_id="search-methods"),
        "search.budget_minutes": gr.Number(defaults.budget_minutes, label=spec("budget_minutes").label,
                                           info=spec("budget_minutes").help, elem_id="search-budget"),
        "search.max_trials": gr.Textbox("", label=spec("max_trials").label, info=spec("max_trials").help,
                                        placeholder="as many as fit", elem_id="search-max-trials"),
        "search.parallel": gr.Number(defaults.parallel, label=spec("parallel").label, info=spec("parallel").help,
                                     precision=0, elem_id="search-parallel"),
    }


def on_mode(mode: str) -> tuple:
    """Searching hides what the search chooses (method, its options, epochs, learning rate) and shows its own
    settings."""
    searching = mode == SEARCH
    return (gr.update(visible=not searching), gr.update(visible=searching), gr.update(visible=not searching),
            gr.update(visible=not searching), gr.update(visible=not searching),
            gr.update(value="Start the search" if searching else "Launch training"))


def build(data: DataTab) -> TrainTab:
    gr.Markdown("## Step 2 · Choose how to train")
    summary = gr.Markdown(data_summary(None), elem_id="train-data-summary")
    mode = gr.Radio([TRAIN_ONE, SEARCH], value=TRAIN_ONE, show_label=False, elem_id="train-mode")
    with gr.Column(visible=False, elem_id="search-settings") as search_column:
        gr.Markdown(SEARCH_HELP, elem_classes=["al-card"])
        search_controls = _search_controls()
    option_controls: dict[str, gr.components.Component] = {}
    groups = []
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Column(elem_id="train-method-choice", visible=True) as method_column:
                method = gr.Radio(method_choices(), value=DEFAULT_METHOD, label="Method", elem_id="train-method")
                for m in methods.REGISTRY.values():
                    with gr.Column(visible=m.name == DEFAULT_METHOD, elem_id=f"train-options-{m.name}") as group:
                        defaults = m.options()
                        for f, spec in option_fields(m.Options):
                            option_controls[f"{m.name}.{f.name}"] = option_control(m.name, f.name, spec,
                                                                                   getattr(defaults, f.name))
                    groups.append(group)
                cards = gr.HTML(method_cards(DEFAULT_METHOD), elem_id="train-method-cards")
            base_model = gr.Dropdown(base_model_choices(), value=DEFAULT_BASE_MODEL, allow_custom_value=True,
                                     label="Base model", elem_id="train-base-model",
                                     info="GPU memory: an adapter at batch 16 and 128 tokens. Or type any Hugging "
                                          "Face model id or a model folder on the server. A model marked "
                                          "“download needed” is fetched once, which needs the network; offline, "
                                          "choose the bundled model or a folder.")
        with gr.Column(scale=2):
            count = gr.Markdown(elem_id="train-param-count", elem_classes=["al-card"])
            defaults = methods.get(DEFAULT_METHOD).defaults
            with gr.Row():
                epochs = _number_box("epochs", "train-epochs", int(defaults["epochs"]))
                learning_rate = _number_box("learning_rate", "train-lr", defaults["learning_rate"])
                batch_size = _number_box("batch_size", "train-batch-size")
            balance = gr.Checkbox(False, label=SETTINGS["balance_classes"][1].label, elem_id="train-balance",
                                  info=SETTINGS["balance_classes"][1].help)
            with gr.Accordion("Advanced", open=False, elem_id="train-advanced"):
                max_length = _number_box("max_length", "train-max-length")
                max_train_samples = _optional_box("max_train_samples", "train-max-samples", "all rows")
                max_eval_samples = _number_box("max_eval_samples", "train-max-eval-samples")
                seed = _number_box("seed", "train-seed")
                patience = _optional_box("early_stopping_patience", "train-patience", "never")
                labels_as_text = gr.Checkbox(False, label=SETTINGS["labels_as_text"][1].label,
                                             elem_id="train-labels-as-text", info=SETTINGS["labels_as_text"][1].help)
                base_dropout = gr.Checkbox(False, label="Keep the base model's dropout while training",
                                           elem_id="train-base-dropout",
                                           info="Off by default: training is faster, and was as accurate in our "
                                                "measurements. AdapterHub and PEFT keep it on.")
    name = gr.Textbox(label="Job name (optional)", placeholder="e.g. tickets-pfeiffer-v1", elem_id="train-name")
    launch = gr.Button("Launch training", variant="primary", size="lg", elem_id="train-launch")
    status = gr.Markdown(elem_id="train-status")

    method.input(on_method, method, [cards, *groups, epochs, learning_rate])  # by the user: a clone sets its own
    for key, control in option_controls.items():
        method_name, option_name = key.split(".", 1)
        kinds = field_spec(methods.get(method_name).Options, option_name).adapters_of
        if kinds:  # the adapters finished since the page loaded
            method.input(lambda kinds=kinds: gr.Dropdown(choices=services.adapters_of(kinds, access.current())),
                         None, control)
    mode.change(on_mode, mode, [method_column, search_column, count, epochs, learning_rate, launch])
    # On load and on every change; one at a time and newest last, so the count always matches the form.
    labels = gr.State([])
    data.chosen.change(lambda chosen: (chosen or {}).get("labels") or [], data.chosen, labels)
    names = {component: key for key, component in option_controls.items()}

    def count_line(values: dict) -> str:
        chosen = values[method]
        options = chosen_options(chosen, {names[c]: v for c, v in values.items() if c in names})
        return parameter_count(values[base_model], chosen, options, values[labels], values[labels_as_text])

    gr.on(None, count_line, {base_model, method, labels, labels_as_text, *option_controls.values()}, count,
          concurrency_limit=1,
          concurrency_id="parameter-count", trigger_mode="always_last", show_progress="minimal")
    data.chosen.change(data_summary, data.chosen, summary)
    form = {**option_controls, "method": method, "base_model": base_model, "epochs": epochs,
            "learning_rate": learning_rate, "batch_size": batch_size, "max_length": max_length,
            "max_train_samples": max_train_samples, "max_eval_samples": max_eval_samples, "seed": seed,
            "early_stopping_patience": patience,
            "base_dropout": base_dropout, "balance_classes": balance, "labels_as_text": labels_as_text, "name": name,
            "mode": mode,
            **search_controls}
    return TrainTab(form, launch, status, cards, groups)


def search_values(form: dict) -> dict:
    """The search's own settings from the form's "search.<field>" entries."""
    return {key.removeprefix("search."): value for key, value in form.items() if key.startswith("search.")}


@friendly
def launch_job(data: dict | None, form: dict):
    """Queue the job (or the search) and open it on the Jobs tab; a setting to fix is said under the button, and
    nothing is queued."""
    searching = form.get("mode") == SEARCH
    actor = access.current()
    try:
        spec = build_spec(data, form)
        job_id = jobs.submit_search(spec, search_values(form), actor) if searching else \
            jobs.submit(spec, like=(data or {}).get("like"), allow_folders=False, actor=actor)
    except AdapterLabError as exc:
        return gr.skip(), gr.skip(), gr.skip(), note(str(exc), "error")
    all_jobs = jobs.list_jobs(actor)
    what = "Search" if searching else "Job"
    return (gr.Tabs(selected="jobs"), views.table(all_jobs), gr.update(choices=choices(all_jobs), value=job_id),
            note(f"{what} {job_id} queued. Opening it on the Jobs tab.", "ok"))


def clone_values(job: dict, actor: Actor) -> tuple[dict, dict]:
    """(the Data tab's choice, the form's values by name) that train job `job` again: its data snapshot and
    columns, label names, method and options, and every setting."""
    spec = job["spec"]
    validation = {"path": spec["validation"], "name": (job.get("validation_data") or {}).get("filename")
                  or Path(spec["validation"]).name} if spec.get("validation") else None
    data = {"source": spec["data"], "name": (job.get("data") or {}).get("filename") or
            (job.get("data") or {}).get("name") or Path(spec["data"]).name, "validation": validation,
            "text": spec["text_column"], "pair": spec.get("text_pair_column"), "label": spec["label_column"],
            "labels": job.get("labels") or [], "label_names": spec.get("label_names"), "like": job["id"]}
    method = methods.get(spec["method"])
    options = {**dataclasses.asdict(method.options()), **(spec.get("method_options") or {})}
    by_folder = {str(Path(a["adapter_dir"]).resolve()): a["id"] for a in services.adapters(actor)}
    form = {}
    for f, option in option_fields(method.Options):
        value = options.get(f.name)
        if option.adapters_of:  # stored as folders, chosen in the page by job id
            form[f"{method.name}.{f.name}"] = [by_folder[v] for v in value if v in by_folder]
        else:
            form[f"{method.name}.{f.name}"] = ", ".join(value) if isinstance(value, list) else value
    form.update({key: spec.get(key) for key in SETTINGS})
    form.update(method=method.name, base_model=spec.get("base_model") or DEFAULT_BASE_MODEL, name="", mode=TRAIN_ONE,
                base_dropout=bool(spec.get("base_dropout")), balance_classes=bool(spec.get("balance_classes")),
                labels_as_text=bool(spec.get("labels_as_text")),
                max_train_samples=spec.get("max_train_samples") or "",
                max_eval_samples=spec.get("max_eval_samples") or default_of(SETTINGS["max_eval_samples"][0]),
                early_stopping_patience=spec.get("early_stopping_patience") or "")
    return data, form


def filled_value(key: str, values: dict, actor: Actor):
    """What a clone puts in the form's control `key`: its value, with the adapters `actor` may fuse as the
    choices of an adapter list."""
    if key not in values:
        return gr.skip()
    method_name, _, option = key.partition(".")
    if method_name in methods.names() and field_spec(methods.get(method_name).Options, option).adapters_of:
        kinds = field_spec(methods.get(method_name).Options, option).adapters_of
        return gr.Dropdown(choices=services.adapters_of(kinds, actor), value=values[key])
    return values[key]


def connect(train: TrainTab, data: DataTab, tabs: gr.Tabs, jobs_tab: JobsTab) -> None:
    """Wire the launch button across tabs: it reads the Data tab's choice and the form by name."""
    names = {component: name for name, component in train.form.items()}

    def launch(values: dict):
        form = {names[c]: v for c, v in values.items() if c in names}
        form["method_options"] = chosen_options(form["method"], form)
        return launch_job(values[data.chosen], form)

    train.launch.click(launch, {data.chosen, *train.form.values()},
                       [tabs, jobs_tab.table, jobs_tab.picker, train.status])
    data.next_button.click(lambda: gr.Tabs(selected="train"), None, tabs)
    filled = list(train.form.values())

    @friendly
    def clone(job_id: str):
        actor = access.current()
        chosen, values = clone_values(jobs.get_job(check_job_id(job_id or ""), actor), actor)
        if not chosen["labels"]:  # a job that has not trained yet: read its labels as the Data tab would
            chosen["labels"] = prepare(chosen["source"], (chosen["validation"] or {}).get("path"), chosen["text"],
                                       chosen["pair"], chosen["label"]).renamed(chosen["label_names"]).labels
        method = values["method"]
        shown = [gr.update(visible=m == method) for m in methods.names()]
        return (gr.Tabs(selected="train"), chosen, method_cards(method), *shown,
                *[filled_value(names[c], values, actor) for c in filled],
                note(f"Settings copied from job {job_id}: change what you want and launch.", "info"))

    jobs_tab.clone.click(clone, jobs_tab.picker, [tabs, data.chosen, train.cards, *train.groups, *filled,
                                                  train.status])
    data.balance_button.click(lambda: (True, gr.Tabs(selected="train")), None, [train.form["balance_classes"], tabs])
