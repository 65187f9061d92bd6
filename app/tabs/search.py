"""The Jobs tab's page for a search: its trials as they end (macro-F1 against trainable parameters and against
time, by method, the best marked), the trials table, Optuna's importance of each setting, and the best adapter
one click from the Playground.

It reads the job store (worker.api) through app/search_views.py; the workers run the trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app import access
from app import search_views as views
from app.tabs.playground import adapter_choices
from app.ui import note
from worker import api as jobs

IMPORTANCE_WAIT = ("Optuna's importance of each setting appears once four trials have completed with different "
                   "scores.")


@dataclass
class SearchSection:
    outputs: list  # in the order `detail` returns their updates
    best_button: gr.Button
    best_job: gr.State
    trials: gr.Dataframe  # a row opens that trial's job page


def build() -> SearchSection:
    with gr.Column(visible=False, elem_id="search-page") as section:
        best_button = gr.Button("▶ Try the best adapter in the Playground", variant="primary", size="md",
                                visible=False, elem_id="search-best-playground", scale=0, min_width=320)
        with gr.Row():
            by_params = gr.ScatterPlot(x="parameters (thousands)", y="macro_f1", color="method",
                                       title="Macro-F1 against trainable parameters", y_lim=[0, 1], height=300,
                                       y_title="validation macro-F1", tooltip="all", elem_id="search-by-params")
            by_time = gr.ScatterPlot(x="minutes", y="macro_f1", color="method", title="Macro-F1 against time",
                                     y_lim=[0, 1], height=300, y_title="validation macro-F1", tooltip="all",
                                     x_title="trial's wall time (minutes)", elem_id="search-by-time")
        trials = gr.Dataframe(headers=views.TRIAL_COLUMNS, interactive=False, label="Trials (★ the best)",
                              max_height=320, elem_id="search-trials", wrap=True)
        importance_note = gr.Markdown(elem_id="search-importance-note")
        importance = gr.BarPlot(x="setting", y="importance", title="What mattered most (Optuna's importance)",
                                y_lim=[0, 1], height=260, visible=False, elem_id="search-importance", sort="-y")
    best_job = gr.State(None)
    outputs = [section, best_button, by_params, by_time, trials, importance_note, importance, best_job]
    return SearchSection(outputs, best_button, best_job, trials)


def header(job: dict) -> str:
    """The job page's header for a search: budget, trials and the best so far."""
    return views.header(views.search_result(job, jobs.trials(job["id"], access.current())), job)


def detail(job: dict | None) -> tuple:
    """The search page's updates for the job shown (hidden for a training job)."""
    if job is None or job.get("kind") != "search":
        return (gr.update(visible=False), *(gr.skip(),) * 6, None)
    result = views.search_result(job, jobs.trials(job["id"], access.current()))
    frame, importance = views.plot_frame(result), views.importance_frame(result)
    best = result["best"]
    waiting = "" if len(importance) else note(IMPORTANCE_WAIT, "info")
    return (gr.update(visible=True), gr.update(visible=bool(best and best["adapter_dir"])),
            gr.update(value=frame, visible=len(frame) > 0),
            gr.update(value=frame, visible=len(frame) > 0), views.trials_frame(result),
            gr.update(value=waiting, visible=bool(waiting)),
            gr.update(value=importance, visible=len(importance) > 0), best["job_id"] if best else None)


def connect(section: SearchSection, tabs: gr.Tabs, playground_menu: gr.Dropdown) -> None:
    """The best trial's button opens the Playground with its adapter chosen."""
    section.best_button.click(lambda best: (gr.Tabs(selected="playground"),
                                            gr.Dropdown(choices=adapter_choices(), value=best)),
                              section.best_job, [tabs, playground_menu])
