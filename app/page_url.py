"""The page's address keeps where the user is (`?tab=jobs&job=ID`, `&compare=ID,ID`), so a reload or a shared
link lands there.

The browser writes the address with history.replaceState, keeping every other parameter (Gradio's `view=api`);
the server only reads it when the page loads.
"""

from __future__ import annotations

import gradio as gr

from app.tabs import compare, jobs

TAB_IDS = ("data", "train", "jobs", "playground")

_SET = ('const params = new URLSearchParams(location.search); {}; '
        'history.replaceState(history.state, "", "?" + params + location.hash);')

# Tabs.change fires on a click and when a callback switches tabs; the Playground's inner tabs have other ids.
TAB_JS = ("() => { const tab = [...document.querySelectorAll('button[role=tab][aria-selected=true]')]"
          f".map(b => b.dataset.tabId).find(id => {list(TAB_IDS)}.includes(id)); "
          "if (tab) { " + _SET.format('params.set("tab", tab)') + " } }")
JOB_JS = "(job) => { " + _SET.format('job ? params.set("job", job) : params.delete("job")') + " }"

# Gradio 6 renders the API panel for `?view=api` only once its code is loaded, which only hovering or clicking
# the footer's "Use via API" does: on a first load the panel stays shut. Clicking it twice (shut, open) loads it.
OPEN_API_JS = ("() => { if (new URLSearchParams(location.search).get('view') !== 'api') return; "
               "const link = document.querySelector('button.show-api'); if (link) { link.click(); link.click(); } }")


def landing(request: gr.Request):
    """On load: select the tab, open the job and the comparison that the address names (a job or a comparison
    alone means the Jobs tab)."""
    params = request.query_params
    job = jobs.find_job(params.get("job"))
    compared = params.get("compare")
    tab = params.get("tab") if params.get("tab") in TAB_IDS else "jobs" if job or compared else None
    return (gr.Tabs(selected=tab) if tab else gr.skip(),
            gr.update(choices=jobs.choices(), value=job["id"]) if job else gr.skip(), *compare.landing(compared))


def connect(demo: gr.Blocks, tabs: gr.Tabs, jobs_tab: jobs.JobsTab) -> None:
    """Read the address on load; write it from the browser alone (no server round trip) as the user moves."""
    picker = jobs_tab.picker
    demo.load(landing, None, [tabs, picker, jobs_tab.compare_section, jobs_tab.compare], show_progress="hidden")
    tabs.change(None, None, None, js=TAB_JS)
    picker.change(None, picker, None, js=JOB_JS)
