"""A job's input snapshot: settings checked the way training will use them, and the data copied in by content hash.

Everything a worker needs is decided here, at submit time, so a bad spec is refused before it is queued and a
queued job does not change when files, defaults or hub datasets change later.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

from engine.base_models import display_name, load_config, load_tokenizer, resolve_base_model
from engine.data import prepare, read_table
from engine.errors import ConfigError
from engine.methods import all_options
from engine.methods import get as get_method
from engine.options import check_value, option_fields
from engine.training import RUN_ONLY, TrainConfig, run_settings
from worker import settings

SPEC_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in RUN_ONLY and f.name != "method_options")
CHECKED = {f.name: (f, spec) for f, spec in option_fields(TrainConfig)}  # the hyperparameters, with their limits
TEXT_FIELDS = set(SPEC_FIELDS) - set(CHECKED) - {"label_names"}  # a file, a method, a model, column names


def _label_names(value: object) -> dict[str, str] | None:
    """{label in the data: new name}, without the labels that keep their name."""
    if not isinstance(value, dict):
        raise ConfigError("Label names must map each label in the data to its new name.")
    renamed = {str(k): str(v).strip() for k, v in value.items() if str(v).strip() and str(v).strip() != str(k)}
    return renamed or None


def normalise(spec: dict) -> dict:
    """TrainConfig fields from what a form or the command line sent: unknown keys refused, blanks unset; method
    options may come by name at the top level (as the command line's flags) or in `method_options`."""
    spec = dict(spec)
    options = {k: spec.pop(k) for k in set(all_options()) & set(spec)}
    given = spec.pop("method_options", None) or {}
    if not isinstance(given, dict):
        raise ConfigError(f"method_options must map each method option to its value, not {given!r}.")
    options.update(given)
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise ConfigError(f"Unknown job setting {', '.join(map(repr, unknown))}; the settings are "
                          f"{', '.join(SPEC_FIELDS)} and the methods' own ({', '.join(all_options())}).")
    out: dict = {}
    options = {k: v.strip() if isinstance(v, str) else v for k, v in options.items()}
    if any(v is not None and v != "" for v in options.values()):
        out["method_options"] = {k: v for k, v in options.items() if v is not None and v != ""}
    for key, value in spec.items():
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue
        if key == "label_names":
            value = _label_names(value)
        elif key in TEXT_FIELDS and not isinstance(value, str):
            raise ConfigError(f"Setting '{key}' must be text, not {value!r}.")
        out[key] = check_value(*CHECKED[key], value) if key in CHECKED else value
    for key in ("data", "method"):
        if key not in out:
            raise ConfigError(f"A job needs '{key}'.")
    return out


def check_method(config: TrainConfig) -> str:
    """Refuse a base model or method setting that cannot train; return the base model's display name."""
    base = resolve_base_model(config.base_model)
    model_config = load_config(base)
    load_tokenizer(base)
    method = get_method(config.method)
    method.supports(model_config, config.labels_as_text)
    method.check(method.options(config.method_options), model_config, config.max_length)
    return display_name(base)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _store(write, name: str) -> None:
    """Write an upload atomically: `write(tmp_path)` then rename, so a reader never sees half a file."""
    uploads = settings.uploads_dir()
    uploads.mkdir(parents=True, exist_ok=True)
    target = uploads / name
    if target.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=uploads, prefix=".upload-")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _hub_revision(name: str, config: str | None) -> str | None:
    """The dataset's commit on the hub (None where it cannot be told, e.g. offline)."""
    try:
        import datasets

        return datasets.load_dataset_builder(name, config).hash
    except Exception:  # any failure only means the revision is not recorded
        return None


def snapshot(source: str, split: str, known: dict | None = None) -> dict:
    """Copy `source` into the uploads folder under its content hash; say where it came from.

    A file is copied byte for byte; a hub dataset or `save_to_disk` folder is saved as Parquet. `known`: the
    record of an earlier job's snapshot this source may be (a clone trains on it again), kept when the content
    matches, so the clone names the data as the user does, not by its hash.
    """
    path = Path(source).expanduser()
    if path.is_file():
        digest = _sha256_file(path)
        if known and known.get("sha256") == digest and (settings.data_dir() / known["path"]).resolve() == \
                path.resolve():
            return dict(known)
        name = digest + path.suffix.lower()
        _store(lambda tmp: shutil.copyfile(path, tmp), name)
        return {"kind": "file", "filename": path.name, "sha256": digest, "path": f"uploads/{name}"}
    buffer = io.BytesIO()
    read_table(source, split).to_parquet(buffer, index=False)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    _store(lambda tmp: tmp.write_bytes(buffer.getvalue()), f"{digest}.parquet")
    record = {"sha256": digest, "path": f"uploads/{digest}.parquet", "split": split}
    if path.is_dir():
        return {"kind": "folder", "filename": path.name, **record}
    hub_name, _, config = source.partition(":")
    return {"kind": "hub", "name": hub_name, "config": config or None,
            "revision": _hub_revision(hub_name, config or None), **record}


def prepare_job(spec: dict, like: dict | None = None) -> dict:
    """Validate a spec and snapshot its data; return the job's stored fields. Raises DataError or ConfigError.

    `like`: the job a clone copies (`data` and `validation_data` source records), see `snapshot`."""
    config = TrainConfig(output="", **normalise(spec)).resolved()
    base_model = check_method(config)
    prepare(config.data, config.validation, config.text_column, config.text_pair_column, config.label_column,
            config.validation_fraction, config.seed, config.max_train_samples, label_names=config.label_names,
            max_eval_samples=config.max_eval_samples)
    like = like or {}
    data_source = snapshot(config.data, "train", like.get("data"))
    validation_source = snapshot(config.validation, "validation", like.get("validation_data")) \
        if config.validation else None
    stored = run_settings(config)
    stored["data"] = data_source["path"]
    stored["validation"] = validation_source["path"] if validation_source else None
    return {"spec": stored, "data_source": data_source, "validation_source": validation_source,
            "method": config.method, "base_model": base_model, "batch_size": config.batch_size}
