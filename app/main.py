"""The AdapterLab web app: four tabs (Data, Train, Jobs, Playground) and the named API, on one Gradio Blocks.

`build_app` only lays out and wires; each tab module owns its callbacks. `launch` applies the safe defaults.
"""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from app import access, api, page_url, rest
from app.security import DEFAULT_MAX_UPLOAD_MB
from app.tabs import data, jobs, playground, search, train
from engine.data import remember_last_file

CSS = """
.al-note {padding: 0.6em 0.9em; border-radius: 8px; margin: 0.3em 0; border: 1px solid transparent;}
.al-info {background: #eef4ff; border-color: #c7d7fe;}
.al-ok {background: #ecfdf3; border-color: #abefc6;}
.al-warn {background: #fffaeb; border-color: #fedf89;}
.al-error {background: #fef3f2; border-color: #fecdca; color: #912018;}
.dark .al-note {background: transparent; color: inherit;}
.al-progress {display: inline-block; width: 110px; height: 10px; background: #e4e7ec; border-radius: 5px;
  overflow: hidden; vertical-align: middle; margin-right: 6px;}
.al-progress-fill {height: 100%; background: #4f46e5;}
.al-progress-text {font-variant-numeric: tabular-nums;}
.al-confusion table {border-collapse: collapse; margin-top: 0.4em;}
.al-compare table {border-collapse: collapse; margin-top: 0.4em;}
.al-compare th, .al-compare td {border: 1px solid #d0d5dd; padding: 0.35em 0.7em; text-align: left;}
.al-compare td.al-differs {background: #fff4d6; font-weight: 600;}
.al-confusion th, .al-confusion td {border: 1px solid #d0d5dd; padding: 0.35em 0.7em; text-align: center;}
.al-caption {font-size: 0.9em; opacity: 0.8;}
/* Word attributions in the Playground: the text with each word's background tinted by its pull */
.al-words {white-space: pre-wrap; line-height: 2; padding: 0.6em 0.9em; border: 1px solid #e4e7ec; border-radius: 10px;}
.al-words mark {color: inherit; padding: 0.1em 0.2em; border-radius: 4px;}
.al-card {padding: 0.8em 1em; border: 1px solid #e4e7ec; border-radius: 10px; background: #f9fafb;}
.dark .al-card {background: transparent;}
.al-help ul {margin-top: 0;}
/* Method cards on the Train tab, by group; the chosen one outlined */
.al-methods {display: flex; flex-direction: column; gap: 0.6em;}
.al-method-group > div.al-method {display: inline-block; vertical-align: top; width: calc(50% - 0.6em);
  margin: 0 0.6em 0.6em 0; padding: 0.5em 0.7em; border: 1px solid #e4e7ec; border-radius: 8px; font-size: 0.92em;}
.al-method.al-chosen {border: 2px solid #6366f1; background: #eef2ff;}
.dark .al-method.al-chosen {background: transparent;}
.al-ref {opacity: 0.7; font-size: 0.9em;}
.al-bars {padding: 0.6em 0.9em; border: 1px solid #e4e7ec; border-radius: 10px;}
.al-bars-title {font-weight: 600; margin-bottom: 0.4em;}
.al-bar-row {display: flex; align-items: center; gap: 0.6em; margin: 0.25em 0;}
.al-bar-label {flex: 0 0 9em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; text-align: right;}
.al-bar-track {flex: 1; height: 14px; background: #eef0f4; border-radius: 4px; overflow: hidden;}
.al-bar-fill {display: block; height: 100%; background: #6366f1;}
.al-bar-fill.al-rare {background: #f59e0b;}
.al-bar-count {flex: 0 0 4em; font-variant-numeric: tabular-nums;}
#al-title h1 {margin-bottom: 0;}
.al-figures {display: flex; gap: 1em; flex-wrap: wrap;}
.al-figures > div {flex: 1 1 8em;}
.al-figure {font-size: 1.6em; font-variant-numeric: tabular-nums;}
/* The job's settings: a plain read-only table (Gradio's table styles would draw a grid) */
.al-settings, .al-settings tr, .al-settings th, .al-settings td {border: 0 !important; background: transparent;}
.al-settings tr {border-bottom: 1px solid #e4e7ec !important;}
.al-settings th, .al-settings td {text-align: left; padding: 0.3em 1.5em 0.3em 0;}
.al-settings {border-collapse: collapse;}
/* Phones: the four step tabs fit on one line (no "..." menu), side-by-side panels stack */
@media (max-width: 520px) {
  .tab-container button {padding-left: 6px !important; padding-right: 6px !important; font-size: 13px !important;}
  .al-stack {flex-direction: column !important;}
  .al-method-group > div.al-method {width: 100%;}
}
"""


def _theme() -> gr.themes.Base:
    """Soft indigo with system fonts: the page loads nothing from the internet."""
    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate",
                          font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
                          font_mono=["ui-monospace", "Consolas", "monospace"])


def build_app(max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB) -> gr.Blocks:
    # Uploads wait in Gradio's cache until a job copies them in; files older than a day are removed hourly.
    with gr.Blocks(title="AdapterLab", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        api.register()
        gr.Markdown("# AdapterLab\nTrain a text classifier with small adapters on top of a frozen transformer: "
                    "**1** choose data, **2** choose a method, **3** watch the job, **4** try the result.",
                    elem_id="al-title")
        who = gr.Markdown(elem_id="al-who")
        with gr.Tabs() as tabs:
            with gr.Tab("1 · Data", id="data"):
                data_tab = data.build(max_upload_mb)
            with gr.Tab("2 · Train", id="train"):
                train_tab = train.build(data_tab)
            with gr.Tab("3 · Jobs", id="jobs"):
                jobs_tab = jobs.build()
            with gr.Tab("4 · Playground", id="playground") as playground_tab:
                menus = playground.build()
        train.connect(train_tab, data_tab, tabs, jobs_tab)
        search.connect(jobs_tab.search, tabs, menus[0])
        playground_tab.select(playground.refresh_menus, menus[:3], menus)
        demo.load(playground.refresh_menus, menus[:3], menus)
        page_url.connect(demo, tabs, jobs_tab)
        demo.load(logged_in, None, who)
    _keep_only_named_api(demo)
    return demo


def logged_in() -> str:
    """'Logged in as ana · Log out' on a server with logins."""
    actor = access.current()
    if not access.login_required():
        return ""
    name = actor.name or ("an admin" if actor.admin else "a removed account")
    return f"Logged in as **{name}**{' (admin)' if actor.admin and actor.name else ''} · [Log out](/logout)"


def _keep_only_named_api(demo: gr.Blocks) -> None:
    """The page's own events stay callable by the page but out of the API docs and clients."""
    for fn in demo.fns.values():
        if fn.api_name not in api.API_NAMES:
            fn.api_visibility = "private"


# Gradio 6's English strings lack the key its status announcer reads out when an event completes: screen readers
# heard "common.complete".
ON_LOAD_JS = f"() => {{ ({page_url.OPEN_API_JS})(); ({data.TOO_BIG_JS})(); }}"

_I18N = gr.I18n(en={"common.complete": "Done"})


def launch(host: str = "127.0.0.1", port: int = 7860, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB) -> gr.Blocks:
    """Start the web server in the background and return: loopback by default, a login when the job store has
    users or ADAPTERLAB_USERNAME/PASSWORD are set (app/access.py), API tokens on every route. The caller keeps
    the process alive and closes the app."""
    remember_last_file()
    demo = build_app(max_upload_mb)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=port, auth=access.check_login if access.login_required() else None,
                auth_message="Log in to AdapterLab.", app_kwargs={"middleware": [Middleware(access.BearerTokens)]},
                max_file_size=f"{max_upload_mb}mb", prevent_thread_lock=True, quiet=True,
                ssr_mode=False, theme=_theme(), css=CSS, js=ON_LOAD_JS,
                footer_links=["api"], i18n=_I18N)
    rest.attach(demo.app)
    return demo
