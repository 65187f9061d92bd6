"""Job commands: `submit`, `search`, `compare`, `jobs`, `job`, `cancel`, `retry`, `delete`, `share`, and the
`worker` that runs the jobs. Each acts as the user of `--token`, or as the machine's admin without one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial

from app.cli_users import actor
from app.cli_users import add_token_arg as _add_token_arg

SEARCH_FLAGS = {"budget_minutes": "--budget-minutes", "methods": "--methods", "max_trials": "--trials",
                "parallel": "--parallel"}  # SearchConfig field -> flag (scripts rely on these names)
POLL_SECONDS = 1.0


def _print_json(data: object) -> None:
    print(json.dumps(data, default=str))


def _percent(job: dict) -> str:
    return f"{job['progress'] * 100:.0f}%"


def cmd_submit(args: argparse.Namespace) -> int:
    from app.cli import given_settings, train_config_kwargs
    from engine.errors import ConfigError
    from worker import api

    who = actor(args)
    if args.like:
        spec, changes = api.like_spec(args.like, args.method, who), given_settings(args)
        if "method_options" in changes:  # the options not given keep the job's values
            changes["method_options"] = {**spec.get("method_options", {}), **changes["method_options"]}
        spec = {**spec, **changes, "name": args.name}
    elif args.data and args.method:
        spec = {**train_config_kwargs(args), "name": args.name}
    else:
        raise ConfigError("submit needs --data and --method, or --like JOB_ID to copy a job's settings.")
    job_id = api.submit(spec, like=args.like, actor=who)
    if args.json:
        _print_json({"job_id": job_id})
    else:
        print(job_id)
    return 0


def _trial_line(row: dict) -> str:
    from app.search_views import options_words

    options = options_words(row)
    score = f"macro-F1 {row['macro_f1']:.4f}" if row["macro_f1"] is not None else "no score"
    return (f"trial {row['number']:>3}  {row['method']:<9} lr {row['learning_rate']:.2g}, {row['epochs']} epochs"
            f"{', ' + options if options else ''}: {score} ({row['outcome']}, {row['epochs_run']} epochs run)")


def _wait_for_search(search_id: str, who) -> dict:
    """Poll until the search ends, printing each trial as it ends (on stderr: stdout keeps the result)."""
    from app.search_views import search_result
    from worker import api

    print(f"search {search_id}: waiting for it to end (it needs a running worker: `adapterlab worker`)",
          file=sys.stderr)
    shown: set[str] = set()
    while True:
        search = api.get_job(search_id, who)
        result = search_result(search, api.trials(search_id, who))
        for row in result["trials"]:
            if row["job_id"] not in shown and row["ended"]:
                shown.add(row["job_id"])
                print(_trial_line(row), file=sys.stderr)
        if search["state"] in ("succeeded", "failed", "cancelled"):
            return result
        time.sleep(POLL_SECONDS)


def cmd_search(args: argparse.Namespace) -> int:
    from app.cli import search_spec
    from worker import api

    values = {field: getattr(args, field) for field in SEARCH_FLAGS}
    if args.methods is not None:
        values["methods"] = [m for m in args.methods.split(",") if m.strip()]
    who = actor(args)
    search_id = api.submit_search(search_spec(args), values, who)
    if not args.wait:
        if args.json:
            _print_json({"search_id": search_id, "state": api.get_job(search_id, who)["state"]})
        else:
            print(search_id)
        return 0
    result = _wait_for_search(search_id, who)
    if args.json:
        _print_json(result)
        return 0
    best = result["best"]
    print(f"search {search_id}: {result['state']}, {len(result['trials'])} trials ({result['pruned']} pruned)")
    if best:
        print(f"best: trial {best['number']} ({best['method']}), macro-F1 {best['macro_f1']:.4f}, job "
              f"{best['job_id']}, adapter {best['adapter_dir']}")
    return 0 if result["state"] == "succeeded" else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from app.compare_views import compare
    from engine.errors import ConfigError
    from worker import api

    if len(args.ids) < 2:
        raise ConfigError("compare needs two job ids or more.")
    who = actor(args)
    result = compare([api.get_job(job_id, who) for job_id in args.ids])
    if args.json:
        _print_json(result)
        return 0

    def shown(value: object, digits: int = 4) -> str:
        return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}" \
            if isinstance(value, int) else str(value)

    width = max(14, *(len(j["name"]) for j in result["jobs"]))
    print(f"{'':<22}" + "".join(f"{j['id']:>{width + 2}}" for j in result["jobs"]))
    for key, words in (("name", "name"), ("state", "state"), ("macro_f1", "macro-F1"), ("accuracy", "accuracy"),
                       ("trainable_params", "trainable params"), ("size_mb", "size (MB)"),
                       ("train_seconds", "training (s)"), ("samples_per_second", "samples/s")):
        digits = 1 if key in ("train_seconds", "samples_per_second") else 4
        print(f"{words:<22}" + "".join(f"{shown(j[key], digits):>{width + 2}}" for j in result["jobs"]))
    if result["differences"]:
        print("settings that differ:")
        for name, values in result["differences"].items():
            print(f"  {name:<20}" + "".join(f"{v:>{width + 2}}" for v in values))
    else:
        print("the settings are the same")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from worker import api

    jobs = api.list_jobs(actor(args))
    if args.json:
        _print_json(jobs)
        return 0
    if not jobs:
        print("no jobs yet: `adapterlab submit ...` queues one")
        return 0
    owners = any(job["owner"] for job in jobs)  # a team's server: say whose each job is
    print(f"{'ID':<12}  {'STATE':<11}  {'PROGRESS':>8}  {'METHOD':<8}  {'CREATED':<25}  " +
          ("OWNER           " if owners else "") + "NAME")
    for job in jobs:
        owner = f"{(job['owner'] or 'admin') + (' (shared)' if job['shared'] else ''):<16}" if owners else ""
        print(f"{job['id']:<12}  {job['state']:<11}  {_percent(job):>8}  {job['method']:<8}  "
              f"{job['created_at']:<25}  {owner}{job['name']}")
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    from worker import api

    who = actor(args)
    job = api.get_job(args.id, who)
    if args.json:
        _print_json(job)
        return 0
    if job["kind"] == "search":
        return _print_search(job, who)
    eta = f", about {job['eta_seconds']:.0f}s left" if job["eta_seconds"] else ""
    print(f"{job['id']}  {job['name']}")
    print(f"  state      {job['state']} ({_percent(job)}{eta}), attempts {job['attempts']}")
    print(f"  training   {job['method']} on {job['base_model']}, data {job['data'].get('filename') or job['data']}")
    if job["owner"] or job["shared"]:
        print(f"  owner      {job['owner'] or 'admin'}{', shared with every user' if job['shared'] else ''}")
    for key in ("created_at", "started_at", "finished_at"):
        if job[key]:
            print(f"  {key.removesuffix('_at'):<10} {job[key]}")
    for epoch in job["history"]:
        print(f"  epoch {epoch['epoch']:<4} accuracy {epoch['accuracy']:.4f}, macro-F1 {epoch['macro_f1']:.4f}, "
              f"validation loss {epoch['loss']:.4f}")
    if job["metrics"]:
        print(f"  result     accuracy {job['metrics']['accuracy']:.4f}, macro-F1 {job['metrics']['macro_f1']:.4f} "
              f"(best epoch {job['best_epoch']})")
    if job["adapter_dir"]:
        print(f"  adapter    {job['adapter_dir']}")
    if job["error"]:
        print(f"  error      {job['error_kind']}: {job['error']}")
    return 0


def _print_search(job: dict, who) -> int:
    from app.search_views import search_result
    from worker import api

    result = search_result(job, api.trials(job["id"], who))
    eta = f", about {job['eta_seconds']:.0f}s of the budget left" if job["eta_seconds"] else ""
    print(f"{job['id']}  {job['name']}")
    print(f"  state      search {job['state']} ({_percent(job)}{eta}); budget {result['budget_minutes']:g} min, "
          f"methods {', '.join(result['methods'])}")
    print(f"  data       {job['data'].get('filename') or job['data'].get('name')}, base model {job['base_model']}")
    for row in result["trials"]:
        print(f"  {_trial_line(row)}" if row["ended"] else f"  trial {row['number']:>3}  {row['method']:<9} "
              f"{row['state']}")
    if result["best"]:
        best = result["best"]
        print(f"  best       trial {best['number']}, job {best['job_id']}, macro-F1 {best['macro_f1']:.4f}, "
              f"adapter {best['adapter_dir']}")
    for name, value in result["importance"].items():
        print(f"  importance {result['importance_labels'][name]}: {value:.2f}")
    if job["error"]:
        print(f"  error      {job['error_kind']}: {job['error']}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from worker import api

    job = api.cancel(args.id, actor(args))
    if args.json:
        _print_json(job)
    else:
        print(f"{job['id']}: {job['state']}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from worker import api

    job_id = api.retry(args.id, actor(args))
    if args.json:
        _print_json({"job_id": job_id})
    else:
        print(f"{job_id}: queued")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from worker import api

    api.delete(args.id, actor(args))
    print(f"{args.id}: deleted")
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    from worker import api

    job = api.share(args.id, not args.off, actor(args))
    if args.json:
        _print_json(job)
    else:
        print(f"{job['id']}: {'shared with every user' if job['shared'] else 'seen by its owner and the admins'}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker import settings

    settings.check_data_dir()
    from worker.consumer import run_worker

    run_worker(gpu=args.gpu, cpu=args.cpu, parent_pid=args.exit_with_parent)
    return 0


def _add_search_args(p: argparse.ArgumentParser) -> None:
    """The search's own flags, with the help and limits of worker.search.SearchConfig."""
    from engine.options import field_spec
    from worker.search import SearchConfig

    for field, flag in SEARCH_FLAGS.items():
        spec = field_spec(SearchConfig, field)
        default = getattr(SearchConfig(), field)
        extra = " Comma-separated." if field == "methods" else f" (default {default:g})" if default else ""
        p.add_argument(flag, dest=field, default=None, metavar=field.split("_")[-1].upper(), help=spec.help + extra)
    p.add_argument("--name", help="display name (default: data file and 'search')")
    p.add_argument("--wait", action="store_true", help="return when the search ends, printing each trial")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the job and worker sub-commands to `adapterlab`."""
    from app.cli import add_search_train_args, add_train_args, later
    from worker.flags import add_worker_args

    p = sub.add_parser("submit", help="check a training and queue it as a job (the flags of train, no --output)")
    add_train_args(p, required=False)
    _add_token_arg(p)
    p.add_argument("--like", metavar="JOB_ID", help="copy this job's data and settings; the flags given change "
                   "them (another --method starts from its own defaults)")
    p.add_argument("--name", help="display name (default: data file and method)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("search", help="find the best method and settings for the data within a time budget: "
                       "trials run as jobs, chosen by Optuna")
    add_search_train_args(p)
    later(p, partial(_add_search_args, p))  # worker/search.py brings Optuna and the engine: only for `search`
    _add_token_arg(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("compare", help="several jobs side by side: results and the settings that differ")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--json", action="store_true")
    _add_token_arg(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("jobs", help="list jobs, newest first")
    p.add_argument("--json", action="store_true")
    _add_token_arg(p)
    p.set_defaults(func=cmd_jobs)

    for name, func, help_text in (("job", cmd_job, "show one job: state, progress, metrics, adapter, error"),
                                  ("cancel", cmd_cancel, "cancel a job (a running one keeps its best adapter)"),
                                  ("retry", cmd_retry, "queue a failed, cancelled or interrupted job again"),
                                  ("delete", cmd_delete, "delete a job that is not running, with its files"),
                                  ("share", cmd_share, "show a job (a search with its trials) to every user; "
                                                       "--off: to its owner and the admins only")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("id", metavar="ID")
        if name != "delete":
            p.add_argument("--json", action="store_true")
        if name == "share":
            p.add_argument("--off", action="store_true", help="stop sharing it")
        _add_token_arg(p)
        p.set_defaults(func=func)

    p = sub.add_parser("worker", help="run jobs from the queue, one at a time (one worker per GPU)")
    add_worker_args(p)
    p.set_defaults(func=cmd_worker)
