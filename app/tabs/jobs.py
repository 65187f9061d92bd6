"""Step 3: every job in a live table, and one job's curves, scores, settings and actions.

The page only reads the job store (through worker.api) on a timer; it changes jobs only through the API's
cancel, retry and delete. Nothing here trains.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app import access, services
from app import job_views as views
from app.security import check_job_id, safe_filename
from app.tabs import compare, search, trust
from app.ui import friendly, note
from engine.errors import AdapterLabError
from worker import api as jobs
from worker.access import may_change

REFRESH_SECONDS = 2.0
ABOUT_JOBS = """\
- A job waits as *Queued* until a worker is free, then trains as *Running*. A worker trains one job at a time. The
  page never trains: closing or reloading it loses nothing, and its address keeps the open job.
- AdapterLab normally runs one worker beside this page. If jobs stay *Queued* while none is running, no worker is
  running: it was started without one, or its worker stopped. Whoever runs AdapterLab can start one.
- The time left follows the recent speed. It says *estimating…* until the first steps are done.
- **Cancel** stops a running job at its next step and keeps the adapter from its best epoch so far; the job says
  which epoch. **Retry** runs a failed, cancelled or interrupted job again, from its last finished epoch.
- *Interrupted*: the worker stopped (a restart, a crash). The job resumes from its last finished epoch when a
  worker is free.
"""
EXPORT_LABEL = "⇪ Export to ONNX"
_zips: dict[str, Path] = {}  # "<job id> <finished_at>" -> the adapter's zip


@dataclass
class JobsTab:
    """The job table and menu: the Train tab sets them to take the user to a new job."""

    table: gr.Dataframe
    picker: gr.Dropdown
    clone: gr.Button  # "Train again with these settings": the Train tab fills its form from the job
    compare_section: gr.Accordion  # the comparison of several jobs, and its job menu (`?compare=ID,ID`)
    compare: gr.Dropdown
    search: search.SearchSection  # a search's page: its trials, plots and best adapter


def filter_choices(all_jobs: list[dict]) -> tuple[list[str], list[str]]:
    """The methods and data sets the jobs have, for the table's filters."""
    return (sorted({views.method_name(j) for j in all_jobs}), sorted({views.data_name(j) for j in all_jobs}))


def choices(all_jobs: list[dict] | None = None) -> list[tuple[str, str]]:
    return [(views.job_label(j), j["id"]) for j in (jobs.list_jobs(access.current()) if all_jobs is None else all_jobs)]


def adapter_zip(job: dict) -> Path:
    """The job's adapter folder as a zip, built once per finished run (a retry makes a new one)."""
    meta = Path(job["adapter_dir"]) / "adapterlab.json"  # a new threshold rewrites it and its model card
    key = f"{job['id']} {job.get('finished_at')} {meta.stat().st_mtime_ns if meta.is_file() else ''}"
    if key not in _zips or not _zips[key].is_file():
        target = services.work_dir() / f"{safe_filename(job.get('name') or 'adapter')}-adapter"
        _zips[key] = Path(shutil.make_archive(str(target), "zip", root_dir=job["adapter_dir"]))
    return _zips[key]


def _signature(job: dict | None) -> str:
    return json.dumps(job, sort_keys=True, default=str)


def _shown(html: str):
    """An HTML block that takes no room while empty."""
    return gr.update(value=html, visible=bool(html))


def _detail(job: dict | None):
    """Everything the job page shows, in the order of the `detail` components in `build`."""
    if job is None:
        hidden = gr.update(visible=False)
        return (note("Choose a job above, or launch one on the Train tab.", "info"), "", *(hidden,) * 15,
                *search.detail(None))
    state, is_search = job["state"], job.get("kind") == "search"
    error = note(f"{job.get('error_kind') or 'error'}: {job['error']}", "error") if job.get("error") else ""
    metrics = None if is_search else job.get("metrics")  # a search's are its best trial's: that trial's page
    done = state in ("succeeded", "cancelled") and job.get("adapter_dir") and Path(job["adapter_dir"]).is_dir()
    loss = views.loss_frame(job)
    return (search.header(job) if is_search else views.header(job), error,
            gr.update(value=loss, visible=views.training_points(job) >= 2, y_lim=views.loss_y_lim(loss)),
            gr.update(value=views.metrics_frame(job), visible=len(job.get("history") or []) >= 2),
            _shown(views.epoch_figures(job)), _shown(views.confusion_html(metrics)),
            gr.update(value=views.per_class_frame(metrics), visible=bool(metrics)),
            _shown(views.settings_html(job)),
            gr.update(visible=state in ("queued", "running", "interrupted")),
            gr.update(visible=state in ("failed", "cancelled") and not is_search and not job.get("parent_id")),
            gr.update(visible=state not in ("running", "cancelling")),
            gr.update(value=str(adapter_zip(job)) if done else None, visible=bool(done)),
            gr.update(visible=False), gr.update(visible=not is_search),
            gr.update(visible=bool(done) and not is_search), gr.update(value=None, visible=False),
            _share_box(job), *search.detail(job))


def _share_box(job: dict):
    """The share toggle, on a server with accounts, for who may change the job."""
    actor = access.current()
    shown = access.login_required() and may_change(actor, job.get("owner")) and not job.get("parent_id")
    return gr.update(value=bool(job.get("shared")), visible=shown)


def find_job(job_id: str | None) -> dict | None:
    """The job with this id, or None for no id, a malformed one or one not in the store."""
    if not job_id:
        return None
    try:
        return jobs.get_job(check_job_id(job_id), access.current())
    except AdapterLabError:
        return None


def _table_outputs(all_jobs: list[dict], filters: tuple) -> tuple:
    """The table as filtered and sorted; every job in the menus; the filters' choices."""
    method_choices, data_choices = filter_choices(all_jobs)
    menu = choices(all_jobs)
    return (views.table(views.filter_jobs(all_jobs, *filters)), gr.update(choices=menu), gr.update(choices=menu),
            gr.update(choices=method_choices), gr.update(choices=data_choices))


def refresh(job_id: str | None, table_seen: str, detail_seen: str, *filters):
    """One timer tick: redraw the table and the job page only where the store changed (no flicker)."""
    all_jobs = jobs.list_jobs(access.current())
    table_sig = _signature([all_jobs, filters])
    job = find_job(job_id)
    detail_sig = _signature(job)
    skip_table = (gr.skip(),) * 5
    table_out = _table_outputs(all_jobs, filters)
    detail_out = _detail(job) if detail_sig != detail_seen else (gr.skip(),) * len(_detail(None))
    return (*(table_out if table_sig != table_seen else skip_table), table_sig, *detail_out, detail_sig)


@friendly
def show(job_id: str | None):
    job = find_job(job_id)
    return (*_detail(job), _signature(job))


def pick_row(evt: gr.SelectData):
    """Clicking a table row opens that job (its id is the row's last cell)."""
    return gr.update(choices=choices(), value=evt.row_value[-1]) if evt.row_value else gr.skip()


@friendly
def cancel(job_id: str):
    jobs.cancel(check_job_id(job_id), access.current())
    gr.Info("Stopping the job: the best epoch so far is kept.")


@friendly
def retry(job_id: str):
    new_id = jobs.retry(check_job_id(job_id), access.current())
    return gr.update(choices=choices(), value=new_id)


def filtered(*filters):
    """The table after a filter or the order changed."""
    all_jobs = jobs.list_jobs(access.current())
    return (*_table_outputs(all_jobs, filters), _signature([all_jobs, filters]))


def select_shown(*filters) -> list[str]:
    return [j["id"] for j in views.filter_jobs(jobs.list_jobs(access.current()), *filters)]


def _each(ids: list[str] | None, action, done: str) -> None:
    """Apply `action` to every selected job; say how many it did and why the others were left."""
    if not ids:
        raise gr.Error("Select jobs first (the menu above the buttons, or “Select all shown”).")
    problems = []
    for job_id in ids:
        try:
            action(check_job_id(job_id))
        except AdapterLabError as exc:
            problems.append(str(exc))
    count = len(ids) - len(problems)
    gr.Info(f"{done.format(count=count, s='' if count == 1 else 's')}" + (
        f" Left {len(problems)}: {' '.join(problems[:3])}" if problems else ""))


@friendly
def cancel_selected(ids: list[str] | None):
    actor = access.current()
    _each(ids, lambda job_id: jobs.cancel(job_id, actor),
          "Cancelled {count} job{s} (running ones stop at their next step).")


@friendly
def delete_selected(ids: list[str] | None):
    actor = access.current()

    def delete_one(job_id: str) -> None:
        try:
            jobs.delete(job_id, actor)
        except jobs.JobNotFound:  # a trial deleted with its search, selected too
            pass

    _each(ids, delete_one, "Deleted {count} job{s}.")
    return gr.update(choices=choices(), value=[]), gr.update(visible=False)


def compare_selected(ids: list[str] | None):
    if not ids or len(ids) < 2:
        raise gr.Error("Select two jobs or more to compare them.")
    return gr.Accordion(open=True), gr.Dropdown(choices=choices(), value=list(ids))


@friendly
def export_onnx(job_id: str):
    """The adapter as one ONNX graph, zipped, with the parity check the export ran (engine/export.py)."""
    archive, report = services.export_onnx(check_job_id(job_id), access.current())
    gr.Info(f"Exported: onnxruntime agrees with the model to {report['max_abs_diff']:.1e} on {report['rows_from']}.")
    return gr.update(value=str(archive), visible=True,
                     label=f"ONNX export ({report['onnx_mb']} MB graph; largest probability difference "
                           f"{report['max_abs_diff']:.1e} on {report['rows_from']})")


@friendly
def share(job_id: str, shared: bool):
    job = jobs.share(check_job_id(job_id), shared, access.current())
    gr.Info("Every user can now see this job and use its adapter." if job["shared"] else
            "Only you and the admins see this job now.")


@friendly
def delete(job_id: str):
    jobs.delete(check_job_id(job_id), access.current())
    gr.Info("Job deleted.")
    return gr.update(choices=choices(), value=None), gr.update(visible=False)


def build() -> JobsTab:
    gr.Markdown("## Step 3 · Watch your jobs\nThe table updates by itself. Click a row to see its details.")
    table_seen, detail_seen = gr.State(""), gr.State("")
    with gr.Row(elem_id="jobs-filters"):
        find = gr.Textbox(label="Find", placeholder="name or id", elem_id="jobs-find", scale=2)
        states = gr.Dropdown([(views.state_text(s), s) for s in views.STATES], multiselect=True, label="State",
                             elem_id="jobs-state-filter", scale=2)
        method_filter = gr.Dropdown([], multiselect=True, label="Method", elem_id="jobs-method-filter", scale=2)
        data_filter = gr.Dropdown([], multiselect=True, label="Data set", elem_id="jobs-data-filter", scale=2)
        sort = gr.Dropdown(list(views.SORTS), value="Newest first", label="Sort by", elem_id="jobs-sort", scale=1)
    filters = [find, states, method_filter, data_filter, sort]
    table = gr.Dataframe(lambda: views.table(jobs.list_jobs(access.current())), headers=views.TABLE_COLUMNS,
                         datatype=["str", "str", "str", "html", "str", "str", "str", "str", "str"], interactive=False,
                         label="All jobs", max_height=360, elem_id="jobs-table")
    with gr.Row(elem_id="jobs-bulk"):
        selected = gr.Dropdown([], multiselect=True, label="Selected jobs", elem_id="jobs-selected", scale=4,
                               info="For the buttons beside: cancel, delete or compare several jobs at once.")
        select_btn = gr.Button("Select all shown", size="md", elem_id="jobs-select-shown", scale=0, min_width=150)
        compare_btn = gr.Button("Compare selected", size="md", elem_id="jobs-compare-selected", scale=0,
                                min_width=170)
        cancel_many = gr.Button("■ Cancel selected", size="md", variant="stop", elem_id="jobs-cancel-selected",
                                scale=0, min_width=170)
        delete_many = gr.Button("Delete selected", size="md", elem_id="jobs-delete-selected", scale=0,
                                min_width=160)
    with gr.Row(visible=False) as confirm_many:
        gr.Markdown("Delete the selected jobs and their adapters for good (a search with its trials)?")
        confirm_many_btn = gr.Button("Yes, delete them", variant="stop", size="md", elem_id="jobs-delete-confirm")
        keep_many_btn = gr.Button("No, keep them", size="md")
    compare_section, compare_picker = compare.build([])
    picker = gr.Dropdown([], label="Job", elem_id="job-picker", info="The job shown below.")
    header = gr.Markdown(elem_id="job-header")
    error = gr.Markdown(elem_id="job-error")
    with gr.Row():
        cancel_btn = gr.Button("■ Cancel", variant="stop", visible=False, size="md", elem_id="job-cancel",
                               scale=0, min_width=140)
        retry_btn = gr.Button("↻ Retry", visible=False, size="md", elem_id="job-retry", scale=0, min_width=140)
        download = gr.DownloadButton("⬇ Download adapter (.zip)", visible=False, size="md", variant="primary",
                                     elem_id="job-download", scale=0, min_width=260)
        export_btn = gr.Button(EXPORT_LABEL, visible=False, size="md", elem_id="job-export-onnx", scale=0,
                               min_width=200)
        clone_btn = gr.Button("⧉ Train again with these settings", visible=False, size="md", elem_id="job-clone",
                              scale=0, min_width=300)
        delete_btn = gr.Button("Delete", visible=False, size="md", elem_id="job-delete", scale=0, min_width=140)
    exported = gr.File(visible=False, interactive=False, elem_id="job-onnx-file")
    share_box = gr.Checkbox(False, label="Shared with every user", visible=False, elem_id="job-share",
                            info="Every user sees this job and may use its adapter; only you and the admins change "
                                 "it.")
    with gr.Row(visible=False) as confirm_row:
        gr.Markdown("Delete this job and its adapter for good?")
        confirm_btn = gr.Button("Yes, delete it", variant="stop", size="md", elem_id="job-delete-confirm")
        keep_btn = gr.Button("No, keep it", size="md")
    with gr.Row():
        loss_plot = gr.LinePlot(x="epoch", y="loss", color="curve", title="Loss (lower is better)", visible=False,
                                x_lim=[0, None], height=280, elem_id="job-loss")
        metrics_plot = gr.LinePlot(x="epoch", y="score", color="metric", title="Validation scores per epoch",
                                   y_lim=[0, 1], visible=False, height=280, elem_id="job-metrics")
    figures = gr.HTML(elem_id="job-epoch-figures")
    with gr.Row():
        confusion = gr.HTML(elem_id="job-confusion")
        per_class = gr.Dataframe(label="Scores per label", visible=False, interactive=False, elem_id="job-per-class")
    search_section = search.build()
    settings = gr.HTML(elem_id="job-settings")
    trust.build(picker, header)
    with gr.Accordion("About jobs", open=False, elem_id="jobs-help"):
        gr.Markdown(ABOUT_JOBS)

    detail = [header, error, loss_plot, metrics_plot, figures, confusion, per_class, settings, cancel_btn, retry_btn,
              delete_btn, download, confirm_row, clone_btn, export_btn, exported, share_box, *search_section.outputs]
    timer = gr.Timer(REFRESH_SECONDS)
    table_outputs = [table, picker, selected, method_filter, data_filter]
    # the timer and the filters draw the table one at a time, in the order sent: a tick sent before a filter
    # changed cannot finish after it and show the table unfiltered again
    ordered = {"concurrency_id": "jobs-table", "concurrency_limit": 1}
    timer.tick(refresh, [picker, table_seen, detail_seen, *filters],
               [*table_outputs, table_seen, *detail, detail_seen], show_progress="hidden", **ordered)
    for control in filters:
        control.change(filtered, filters, [*table_outputs, table_seen], show_progress="hidden", **ordered)
    select_btn.click(select_shown, filters, selected)
    compare_btn.click(compare_selected, selected, [compare_section, compare_picker])
    cancel_many.click(cancel_selected, selected, None)
    delete_many.click(lambda ids: gr.update(visible=bool(ids)), selected, confirm_many)
    keep_many_btn.click(lambda: gr.update(visible=False), None, confirm_many)
    confirm_many_btn.click(delete_selected, selected, [selected, confirm_many])
    picker.change(show, picker, [*detail, detail_seen], show_progress="hidden")
    table.select(pick_row, None, picker)
    search_section.trials.select(pick_row, None, picker)
    export_btn.click(lambda: gr.update(value="Exporting and checking… (about half a minute)", interactive=False),
                     None, export_btn).then(export_onnx, picker, exported).then(
        lambda: gr.update(value=EXPORT_LABEL, interactive=True), None, export_btn)
    cancel_btn.click(cancel, picker, None)
    share_box.input(share, [picker, share_box], None)
    retry_btn.click(retry, picker, picker)
    delete_btn.click(lambda: gr.update(visible=True), None, confirm_row)
    keep_btn.click(lambda: gr.update(visible=False), None, confirm_row)
    confirm_btn.click(delete, picker, [picker, confirm_row])
    return JobsTab(table, picker, clone_btn, compare_section, compare_picker, search_section)
