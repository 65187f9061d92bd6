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

from app import job_views as views
from app import services
from app.security import check_job_id, safe_filename
from app.tabs import compare, trust
from app.ui import friendly, note
from engine.errors import AdapterLabError
from worker import api as jobs

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
_zips: dict[str, Path] = {}  # "<job id> <finished_at>" -> the adapter's zip


@dataclass
class JobsTab:
    """The job table and menu: the Train tab sets them to take the user to a new job."""

    table: gr.Dataframe
    picker: gr.Dropdown
    clone: gr.Button  # "Train again with these settings": the Train tab fills its form from the job
    compare_section: gr.Accordion  # the comparison of several jobs, and its job menu (`?compare=ID,ID`)
    compare: gr.Dropdown


def choices(all_jobs: list[dict] | None = None) -> list[tuple[str, str]]:
    return [(views.job_label(j), j["id"]) for j in (jobs.list_jobs() if all_jobs is None else all_jobs)]


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
        return (note("Choose a job above, or launch one on the Train tab.", "info"), "", *(hidden,) * 12)
    state = job["state"]
    error = note(f"{job.get('error_kind') or 'error'}: {job['error']}", "error") if job.get("error") else ""
    metrics = job.get("metrics")
    done = state in ("succeeded", "cancelled") and job.get("adapter_dir") and Path(job["adapter_dir"]).is_dir()
    loss = views.loss_frame(job)
    return (views.header(job), error,
            gr.update(value=loss, visible=views.training_points(job) >= 2, y_lim=views.loss_y_lim(loss)),
            gr.update(value=views.metrics_frame(job), visible=len(job.get("history") or []) >= 2),
            _shown(views.epoch_figures(job)), _shown(views.confusion_html(metrics)),
            gr.update(value=views.per_class_frame(metrics), visible=bool(metrics)),
            _shown(views.settings_html(job)),
            gr.update(visible=state in ("queued", "running", "interrupted")),
            gr.update(visible=state in ("failed", "cancelled")),
            gr.update(visible=state not in ("running", "cancelling")),
            gr.update(value=str(adapter_zip(job)) if done else None, visible=bool(done)),
            gr.update(visible=False), gr.update(visible=True))


def find_job(job_id: str | None) -> dict | None:
    """The job with this id, or None for no id, a malformed one or one not in the store."""
    if not job_id:
        return None
    try:
        return jobs.get_job(check_job_id(job_id))
    except AdapterLabError:
        return None


def refresh(job_id: str | None, table_seen: str, detail_seen: str):
    """One timer tick: redraw the table and the job page only where the store changed (no flicker)."""
    all_jobs = jobs.list_jobs()
    table_sig = _signature(all_jobs)
    job = find_job(job_id)
    detail_sig = _signature(job)
    skip_table = (gr.skip(),) * 2
    table_out = (views.table(all_jobs), gr.update(choices=choices(all_jobs)))
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
    jobs.cancel(check_job_id(job_id))
    gr.Info("Stopping the job: the best epoch so far is kept.")


@friendly
def retry(job_id: str):
    new_id = jobs.retry(check_job_id(job_id))
    return gr.update(choices=choices(), value=new_id)


@friendly
def delete(job_id: str):
    jobs.delete(check_job_id(job_id))
    gr.Info("Job deleted.")
    return gr.update(choices=choices(), value=None), gr.update(visible=False)


def build() -> JobsTab:
    gr.Markdown("## Step 3 · Watch your jobs\nThe table updates by itself. Click a row to see its details.")
    table_seen, detail_seen = gr.State(""), gr.State("")
    table = gr.Dataframe(lambda: views.table(jobs.list_jobs()), headers=views.TABLE_COLUMNS,
                         datatype=["str", "str", "str", "html", "str", "str", "str", "str", "str"], interactive=False,
                         label="All jobs", max_height=360, elem_id="jobs-table")
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
        clone_btn = gr.Button("⧉ Train again with these settings", visible=False, size="md", elem_id="job-clone",
                              scale=0, min_width=300)
        delete_btn = gr.Button("Delete", visible=False, size="md", elem_id="job-delete", scale=0, min_width=140)
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
    settings = gr.HTML(elem_id="job-settings")
    trust.build(picker, header)
    with gr.Accordion("About jobs", open=False, elem_id="jobs-help"):
        gr.Markdown(ABOUT_JOBS)

    detail = [header, error, loss_plot, metrics_plot, figures, confusion, per_class, settings, cancel_btn, retry_btn,
              delete_btn, download, confirm_row, clone_btn]
    timer = gr.Timer(REFRESH_SECONDS)
    timer.tick(refresh, [picker, table_seen, detail_seen], [table, picker, table_seen, *detail, detail_seen],
               show_progress="hidden")
    picker.change(show, picker, [*detail, detail_seen], show_progress="hidden")
    table.select(pick_row, None, picker)
    cancel_btn.click(cancel, picker, None)
    retry_btn.click(retry, picker, picker)
    delete_btn.click(lambda: gr.update(visible=True), None, confirm_row)
    keep_btn.click(lambda: gr.update(visible=False), None, confirm_row)
    confirm_btn.click(delete, picker, [picker, confirm_row])
    return JobsTab(table, picker, clone_btn, compare_section, compare_picker)
