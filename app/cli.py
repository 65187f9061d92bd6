"""The `adapterlab` command line: train, predict and evaluate with the engine; jobs, worker and web app.

Every user-fixable problem ends as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
from collections.abc import Callable

from engine.errors import AdapterLabError

EXIT_USER_ERROR = 2


def _add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="CSV/TSV/JSONL/Parquet file, save_to_disk folder, or hub "
                   "dataset name[:config] (default: the built-in demo data)" if not required else
                   "CSV/TSV/JSONL/Parquet file, save_to_disk folder, or hub dataset name[:config]")
    p.add_argument("--validation", help="validation file (default: a seeded stratified 10%% split)")
    p.add_argument("--text-column", default=None, help="column with the text (default: text)")
    p.add_argument("--text-pair-column", default=None, help="second text column, for sentence pairs")
    p.add_argument("--label-column", default=None, help="column with the label (default: label)")


def _add_method_args(p: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    """--method, and one flag per method option (--reduction-factor, --lora-r, ...), generated from the registry:
    each option's help says which methods read it and their defaults. Values are checked by the method."""
    from engine import methods
    from engine.methods.base import option_fields

    p.add_argument("--method", required=required, default=default,
                   choices=methods.names(), help="; ".join(f"{m.name}: {m.label}" for m in methods.REGISTRY.values()))
    readers: dict[str, list[str]] = {}
    for m in methods.REGISTRY.values():
        for f, _ in option_fields(m.Options):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            readers.setdefault(f.name, []).append(f"{m.name} (default {_shown(default)})")
    lists = {f.name for m in methods.REGISTRY.values() for f, _ in option_fields(m.Options)
             if f.default is dataclasses.MISSING and isinstance(f.default_factory(), list)}
    for name, spec in methods.all_options().items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar=name.split("_")[-1].upper(),
                       nargs="+" if name in lists else None, help=f"{spec.help} Read by {', '.join(readers[name])}.")


def _shown(default: object) -> str:
    if isinstance(default, list):
        return ",".join(default) or "the model's"
    if isinstance(default, float):
        return f"{default:g}"
    return (repr(default) if default else "none") if isinstance(default, str) else str(default)


def method_options(args: argparse.Namespace) -> dict:
    """The method option flags given on the command line, by name."""
    from engine import methods

    found = {name: getattr(args, name) for name in methods.all_options() if getattr(args, name, None) is not None}
    # a list flag takes several values or one comma-separated one (--lora-targets query,value)
    return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in found.items()}


class Parser(argparse.ArgumentParser):
    """A sub-command's parser whose heavier flags (built from the method registry and TrainConfig, which load torch)
    are added when that sub-command is the one parsed, so `adapterlab --help` and `adapterlab jobs` stay quick."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deferred: list[Callable[[], None]] = []

    def parse_known_args(self, args=None, namespace=None):
        while self.deferred:
            self.deferred.pop(0)()
        return super().parse_known_args(args, namespace)


def later(p: argparse.ArgumentParser, add: Callable[[], None]) -> None:
    """Add flags when `p` parses (at once for a plain parser). Duck-typed: run as `python -m app.cli`, this module
    is loaded twice (as __main__ and as app.cli, which app/cli_jobs.py imports), with two Parser classes."""
    if hasattr(p, "deferred"):
        p.deferred.append(add)
    else:
        add()


def add_train_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The training flags shared by `train` and `submit` (whose --data and --method `submit --like` makes
    optional)."""
    if required:
        _add_data_args(p)
    else:
        _add_data_args(p, required=False)
        p.set_defaults(data=None)
    p.add_argument("--base-model", default=None, help="hub id or local folder (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    later(p, lambda: (_add_method_args(p, required), _add_setting_args(p)))


def add_search_train_args(p: argparse.ArgumentParser) -> None:
    """The training flags of `search`: the data and base model, and every hyperparameter but those the search
    chooses (method, its options, learning rate, epochs)."""
    _add_data_args(p)
    p.add_argument("--base-model", default=None, help="hub id or local folder (default: bundled all-MiniLM-L6-v2)")
    later(p, lambda: _add_setting_args(p, skip=("epochs", "learning_rate")))


def search_spec(args: argparse.Namespace) -> dict:
    """The training settings a `search` shares with all its trials, checked as a job's are."""
    from engine.options import check_all
    from engine.training import TrainConfig

    given = {k: v for k, v in vars(args).items() if v is not None and v is not False}
    out = {key: given[key] for key in ("data", "validation", "text_column", "text_pair_column", "label_column",
                                       "base_model", "name") if key in given}
    return {**out, **check_all(TrainConfig, given)}


def _add_setting_args(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per hyperparameter, with TrainConfig's help and default; values are checked as a job's are."""
    from engine.options import default_of, option_fields
    from engine.training import TrainConfig

    for f, spec in option_fields(TrainConfig):
        if f.name in skip:
            continue
        flag = f"--{f.name.replace('_', '-')}"
        default = default_of(f)
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=spec.help)
        else:
            shown = f" (default {default:g})" if isinstance(default, int | float) else ""
            p.add_argument(flag, default=None, metavar=f.name.split("_")[-1].upper(), help=spec.help + shown)


def train_config_kwargs(args: argparse.Namespace) -> dict:
    """TrainConfig fields from parsed `train`/`submit` flags, checked in the page's words; unset flags take
    TrainConfig's (or the method's) defaults."""
    from engine.options import check_all
    from engine.training import TrainConfig

    given = {k: v for k, v in vars(args).items() if v is not None and v is not False}
    return {"data": args.data, "validation": args.validation, "method": args.method,
            "text_column": args.text_column or "text", "text_pair_column": args.text_pair_column,
            "label_column": args.label_column or "label", "method_options": method_options(args) or None,
            "base_model": args.base_model, **check_all(TrainConfig, given)}


def given_settings(args: argparse.Namespace) -> dict:
    """Only the training flags given on the command line, checked (what `submit --like` changes)."""
    from engine.options import check_all
    from engine.training import TrainConfig

    given = {k: v for k, v in vars(args).items() if v is not None and v is not False}
    out = {key: given[key] for key in ("data", "validation", "method", "text_column", "text_pair_column",
                                       "label_column", "base_model") if key in given}
    return {**out, **({"method_options": method_options(args)} if method_options(args) else {}),
            **check_all(TrainConfig, given)}


def _lists_adapters(method: str, options: dict) -> bool:
    """Whether an option given lists trained adapters (the job store then resolves job ids among them)."""
    from engine import methods
    from engine.options import option_fields

    return any(spec.adapters_of and options.get(f.name) for f, spec in option_fields(methods.get(method).Options))


def _print_json(data: object) -> None:
    print(json.dumps(data, default=str))


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tqdm import tqdm

    from engine.training import TrainConfig, train

    bar = None

    def on_progress(p) -> None:
        nonlocal bar
        if bar is None:
            # started at the first report (step 10, or where a resumed run is): its rate counts from there
            bar = tqdm(total=p.total_steps, initial=p.step, unit="step", dynamic_ncols=True,
                       desc=f"training {args.method}")
        bar.n = p.step
        bar.set_postfix(epoch=f"{p.epoch:.2f}", loss=f"{p.loss:.4f}", lr=f"{p.learning_rate:.1e}",
                        samples_s=f"{p.samples_per_second:.0f}", refresh=False)
        bar.refresh()

    setup = None  # the bar of a counted set-up phase (tokenising)

    def on_phase(what: str, done: int, total: int) -> None:
        nonlocal setup
        if not total:
            if sys.stderr.isatty():  # a log or pipe gets the bars and results, not the set-up chatter
                print(f"{what}…", file=sys.stderr)
            return
        if setup is None:
            setup = tqdm(total=total, unit="row", unit_scale=True, dynamic_ncols=True, desc=what)
        setup.n = done
        setup.refresh()
        if done >= total:
            setup.close()
            setup = None

    def on_epoch(epoch: int, metrics: dict) -> None:
        line = f"epoch {epoch}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"
        (bar.write if bar else print)(line, file=sys.stderr)

    settings = train_config_kwargs(args)
    if _lists_adapters(args.method, settings.get("method_options") or {}):  # a fusion's: job ids, as folders
        from worker.api import adapter_folders

        settings = adapter_folders(settings)
    config = TrainConfig(output=args.output, **settings)
    quiet = args.json
    result = train(config, on_progress=None if quiet else on_progress, on_epoch=None if quiet else on_epoch,
                   on_phase=None if quiet else on_phase)
    if bar:
        bar.close()
    if args.json:
        out = asdict(result)
        out["train_seconds"] = round(out["train_seconds"], 3)
        _print_json(out)
    else:
        for line in result.data_report:
            print(line)
        print(f"{result.method} adapter ({result.adapter_params:,} adapter parameters, "
              f"{result.trainable_params:,} trainable with the head) saved to {result.adapter_dir}")
        print(f"validation accuracy {result.metrics['accuracy']:.4f}, macro-F1 {result.metrics['macro_f1']:.4f} "
              f"(best epoch {result.best_epoch}); {result.train_samples_per_second:.0f} samples/s")
        c = result.calibration
        print(f"calibration: temperature {c['temperature']:.3f}, expected calibration error {c['ece_before']:.4f} "
              f"-> {c['ece']:.4f} on validation (used by predict; `adapterlab threshold --temperature off` "
              "switches it off)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from engine.inference import Predictor

    predictor = Predictor()
    explain = getattr(args, "explain", False)  # `demo` calls this with only the flags it sets
    if args.text is not None:
        if explain:
            result = predictor.explain(args.adapter, args.text, args.text_pair)
            result = {k: result[k] for k in ("label", "probabilities", "attributions")}
        else:
            result = predictor.predict(args.adapter, args.text, args.text_pair)
        if args.json:
            _print_json(result)
            return 0
        print(result["label"])
        for label, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
            print(f"  {label:<20} {p:.4f}")
        if explain:
            print(f"words toward {result['label']} (+) and away from it (-):")
            for word, weight in result["attributions"]:
                print(f"  {word:<20} {weight:+.4f}")
        return 0
    if explain:
        raise AdapterLabError("--explain needs --text: it explains one text.")
    if not args.input or not args.output:
        raise AdapterLabError("predict needs --text, or --input CSV with --output CSV.")
    result = predictor.predict_file(args.adapter, args.input, args.output, args.text_column, args.text_pair_column)
    if args.json:
        _print_json({"rows": result.rows, "predicted": result.predicted, "skipped": result.skipped,
                     "output": args.output})
        return 0
    print(f"wrote {result.predicted} predictions to {args.output}")
    if result.skipped:
        print(f"{result.skipped} rows have an empty {result.columns_named}: they are in {args.output} with an "
              "empty prediction")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.inference import Predictor

    predictor = Predictor()
    result = predictor.evaluate(args.adapter, args.data, args.text_column, args.text_pair_column,
                                args.label_column)
    if args.output:
        _write_rows(predictor, result.frame, args.output, args.adapter)
    if args.json:
        _print_json(result.as_dict())
        return 0
    metrics, c = result.metrics, result.calibration
    for line in result.data_report:
        print(line)
    print(f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} on {result.rows} rows")
    for label, m in metrics["per_class"].items():
        print(f"  {label:<20} precision {m['precision']:.3f} recall {m['recall']:.3f} f1 {m['f1']:.3f} "
              f"support {m['support']}")
    print(f"calibration: expected calibration error {c.ece:.4f} with the adapter's temperature {c.temperature:.3f} "
          f"({c.ece_before:.4f} without)")
    if args.output:
        print(f"wrote every row's prediction to {args.output}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from engine.export import TOLERANCE, export_onnx

    tty = sys.stderr.isatty()
    result = export_onnx(args.adapter, args.output, args.data,
                         on_phase=(lambda what: print(f"{what}...", file=sys.stderr)) if tty or not args.json else None)
    if args.json:
        _print_json(result.as_dict())
        return 0
    print(f"wrote {result.onnx_path} ({result.onnx_mb} MB) with its tokenizer, adapter.json, predict.py and README.md")
    print(f"parity: onnxruntime and torch probabilities differ by at most {result.max_abs_diff:.1e} "
          f"(limit {TOLERANCE:.0e}) on {result.rows_from}")
    print(f"try it: cd {args.output} && python predict.py \"my card was charged twice\"")
    return 0


def _write_rows(predictor, frame, output: str, adapter: str) -> None:
    """An evaluation's rows as a spreadsheet-safe CSV, with the predictions predict would give (the adapter is
    already loaded in `predictor`)."""
    from engine.inference import spreadsheet_safe
    from engine.review import scored

    temperature, threshold = predictor.decision(adapter)
    scored(frame, predictor.labels(adapter), temperature, threshold).map(spreadsheet_safe).to_csv(output,
                                                                                                   index=False)


def cmd_label_issues(args: argparse.Namespace) -> int:
    from engine.inference import Predictor, spreadsheet_safe

    issues = Predictor().label_issues(args.adapter, args.data, args.text_column, args.text_pair_column,
                                      args.label_column)
    if args.output:
        issues.map(spreadsheet_safe).to_csv(args.output, index=False)
    if args.json:
        _print_json({"issues": issues.to_dict(orient="records")})
        return 0
    print(f"{len(issues)} rows whose label the adapter confidently disagrees with (most suspicious first):")
    for r in issues.head(args.top).itertuples():
        print(f"  row {r.row:<6} given {r.given_label!r:<14} suggested {r.suggested_label!r:<14} score "
              f"{r.score:.3f}  {r.text[:60]}")
    if len(issues) > args.top:
        print(f"  ... and {len(issues) - args.top} more" + (f" in {args.output}" if args.output else
                                                            " (--output CSV writes them all)"))
    return 0


def cmd_threshold(args: argparse.Namespace) -> int:
    """Choose (or remove) a binary adapter's decision threshold from a labelled file, or switch its temperature."""
    from engine.thresholds import set_temperature_use, set_threshold

    if args.temperature:
        meta = set_temperature_use(args.adapter, args.temperature == "on")
        print(f"temperature {meta.get('temperature', 1.0):.3f} {'used' if meta['apply_temperature'] else 'not used'}"
              " by predict")
        return 0
    if not args.off and not args.data:
        raise AdapterLabError("threshold needs --data, a labelled file to choose it on (or --off, or --temperature).")
    rule, target = ("precision", args.precision) if args.precision is not None else \
        ("recall", args.recall) if args.recall is not None else ("max_f1", None)
    chosen = set_threshold(args.adapter, None if args.off else args.data, rule, target, args.label,
                           args.text_column, args.text_pair_column, args.label_column)
    if args.json:
        _print_json({"threshold": chosen})
    elif chosen:
        print(f"predict says {chosen['label']!r} when its probability is at least {chosen['value']:.4f} "
              f"(precision {chosen['precision']:.3f}, recall {chosen['recall']:.3f}, F1 {chosen['f1']:.3f})")
    else:
        print("threshold removed: predict takes the most probable label")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Train on the built-in demo data and predict with the result: everything offline, in about a minute."""
    from engine.data import DEMO_DATA

    output = args.output
    args = argparse.Namespace(**{**vars(args), "data": str(DEMO_DATA), "validation": None, "text_column": None,
                                 "text_pair_column": None, "label_column": None,
                                 "base_model": None, "json": False, "output": output})
    cmd_train(args)
    text = "I was charged twice for my subscription this month"
    print(f'\npredicting: "{text}"')
    return cmd_predict(argparse.Namespace(adapter=output, text=text, text_pair=None, json=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adapterlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train an adapter and save it to --output")
    add_train_args(p)
    p.add_argument("--output", required=True, help="folder to save the adapter in")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict with a trained adapter")
    p.add_argument("--adapter", required=True)
    p.add_argument("--text")
    p.add_argument("--text-pair")
    p.add_argument("--input", help="table to predict (CSV/TSV/JSONL/Parquet)")
    p.add_argument("--output", help="CSV to write, with prediction and prob_<label> columns")
    p.add_argument("--text-column", help="column of --input with the text (default: the adapter's training column)")
    p.add_argument("--text-pair-column", help="column of --input with the second text, for adapters trained on pairs")
    p.add_argument("--explain", action="store_true", help="with --text: how much each word pushed the prediction "
                   "toward the predicted label (Integrated Gradients); --json adds them as attributions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="evaluate an adapter on labelled data: metrics and calibration")
    p.add_argument("--adapter", required=True)
    _add_data_args(p)
    p.add_argument("--output", help="CSV to write every row's prediction, confidence and probabilities to")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("label-issues", help="rows of a labelled file whose label looks wrong to the adapter")
    p.add_argument("--adapter", required=True)
    _add_data_args(p)
    p.add_argument("--output", help="CSV to write every suspicious row to")
    p.add_argument("--top", type=int, default=20, help="rows to print (default 20)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_label_issues)

    p = sub.add_parser("threshold", help="choose a binary adapter's decision threshold on labelled data, or "
                                         "switch its calibration temperature on or off")
    p.add_argument("--adapter", required=True)
    _add_data_args(p, required=False)
    p.set_defaults(data=None)
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--precision", type=float, help="the highest recall with at least this precision")
    goal.add_argument("--recall", type=float, help="the highest precision with at least this recall")
    goal.add_argument("--off", action="store_true", help="remove the threshold (predict takes the top label)")
    goal.add_argument("--temperature", choices=["on", "off"], help="use the fitted temperature or raw scores")
    p.add_argument("--label", help="the label the threshold is for (default: the second label)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_threshold)

    p = sub.add_parser("export", help="export an adapter with its base model and head as one ONNX graph, checked "
                                      "against the torch model, with a predict.py that needs only onnxruntime")
    p.add_argument("--adapter", required=True, help="the adapter folder")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--output", required=True, help="a new (or empty) folder to write the export to")
    p.add_argument("--data", help="a table with the adapter's text columns to run the parity check on (default: "
                   "the validation rows of the data it was trained on)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="train on the built-in demo data and predict (offline, about a minute)")
    later(p, lambda: _add_method_args(p, required=False, default="pfeiffer"))
    p.add_argument("--output", default="demo-adapter")
    p.set_defaults(func=cmd_demo)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Job, worker and web-app commands live beside this module; each registers its own sub-commands."""
    registers = []
    for module in ("app.cli_jobs", "app.cli_serve", "app.cli_users"):
        try:
            registers.append(__import__(module, fromlist=["register"]).register)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return registers


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AdapterLabError as exc:
        hint = f" {exc.cli_hint}" if exc.cli_hint else ""
        print(f"adapterlab: {exc.kind}: {exc}{hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("adapterlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: say what happened, keep the traceback for debugging
        if os.environ.get("ADAPTERLAB_DEBUG"):
            raise
        print(f"adapterlab: unexpected error: {type(exc).__name__}: {exc} "
              "(set ADAPTERLAB_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def run() -> None:
    """The `adapterlab` console script: `main`, then an exit that skips the interpreter's last garbage
    collection over the millions of objects torch and transformers leave (1.1 s of every command's end)."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
