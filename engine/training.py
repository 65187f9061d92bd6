"""The training loop: one explicit loop over length-grouped batches, evaluated every epoch, best epoch kept."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from engine.adapter_io import adapter_name_for, save_adapter
from engine.adapter_model import AdapterModel
from engine.base_models import display_name, load_config, resolve_base_model
from engine.batching import length_grouped_batches
from engine.bert_model import MATH_ATTENTION_WIDTH
from engine.calibration import calibrate
from engine.data import PreparedData, prepare
from engine.disk import write_file
from engine.errors import TrainingCancelled
from engine.evaluation import evaluate, predict_logits
from engine.memory_fit import check_fits
from engine.methods import all_options
from engine.methods import get as get_method
from engine.optimizer import AdamW
from engine.options import check_value, option, option_fields
from engine.precision import choose as choose_precision


@dataclass
class TrainConfig:
    """Everything a training run needs; unset hyperparameters take the method's defaults."""

    data: str
    method: str
    output: str
    validation: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    label_names: dict[str, str] | None = None  # label in the data -> the name the adapter uses
    method_options: dict | None = None  # the method's own settings by name (its Options; unset: its defaults)
    base_model: str | None = None
    # The hyperparameters: their words, limits and help, for the page, the flags and the checks (engine/options.py)
    epochs: int | None = option(None, "Epochs", "Passes over the training rows (default: the method's).", low=1,
                                high=1000, whole=True, optional=True)
    learning_rate: float | None = option(None, "Learning rate", "Default: the method's (docs/defaults.md).", low=0,
                                         high=1, low_open=True, optional=True)
    batch_size: int = option(16, "Batch size", "Rows per training step.", low=1, high=4096, whole=True)
    max_length: int = option(128, "Max length (tokens)", "Longer texts are cut to this many tokens.", low=8,
                             high=8192, whole=True)
    max_train_samples: int | None = option(None, "Max training rows", "Train on at most this many rows (a seeded "
                                           "sample). Empty: every row.", low=2, whole=True, say_empty=True)
    max_eval_samples: int = option(2000, "Max validation rows", "Evaluate each epoch on at most this many "
                                   "validation rows (a seeded, stratified sample), so a big file's evaluation stays "
                                   "a small part of the job; a larger number evaluates more.", low=2, whole=True)
    seed: int = option(42, "Random seed", "Same seed, same result.", low=0, whole=True)
    warmup_ratio: float = option(0.06, "Warm-up", "Share of the steps over which the learning rate rises.", low=0,
                                 high=0.5)
    weight_decay: float = option(0.0, "Weight decay", "AdamW's weight decay.", low=0, high=1)
    max_grad_norm: float = option(1.0, "Gradient clipping", "Largest gradient norm.", low=0, low_open=True)
    early_stopping_patience: int | None = option(None, "Early stopping patience", "Stop after this many epochs "
                                                 "without improvement. Empty: never.", low=1, whole=True,
                                                 say_empty=True)
    base_dropout: bool = option(False, "Base model dropout while training", "Keep the frozen base model's "
                                "dropout on while training (AdapterHub's and PEFT's recipe; off by default: "
                                "faster and as accurate, see docs/defaults.md).")
    balance_classes: bool = option(False, "Balance classes", "Weigh each label's loss by the inverse of its "
                                   "share of the training rows, so a rare label counts as much as a common one "
                                   "(see docs/defaults.md).")
    labels_as_text: bool = option(False, "Labels as text (T5, mT0)", "An encoder-decoder base model writes each "
                                  "label as text, each label's probability from its likelihood, instead of a "
                                  "classification head reading its decoder.")
    validation_fraction: float = option(0.1, "Validation share", "Share of the rows held out for validation "
                                        "when no validation file is given.", low=0, high=0.9, low_open=True)
    device: str | None = None
    # How this run is named in its saved folder, and how its data files are named in the data report (a job's
    # files are snapshots under content hashes; the report names the files the user chose)
    adapter_name: str | None = None
    data_name: str | None = None
    validation_name: str | None = None

    @classmethod
    def from_settings(cls, settings: dict, **run: object) -> TrainConfig:
        """A config from stored or flat settings: method options given at the top level (as the command line and
        jobs stored before `method_options` name them) move into `method_options`."""
        settings = {**settings, **run}
        options = dict(settings.pop("method_options", None) or {})
        for key in set(all_options()) & set(settings):
            value = settings.pop(key)
            if value is not None:
                options.setdefault(key, value)
        return cls(**settings, method_options=options or None)

    def resolved(self) -> TrainConfig:
        """A copy with method defaults filled in, checked for values that cannot work."""
        method = get_method(self.method)
        out = TrainConfig(**asdict(self))
        out.epochs = int(self.epochs if self.epochs is not None else method.defaults["epochs"])
        out.learning_rate = float(self.learning_rate if self.learning_rate is not None
                                  else method.defaults["learning_rate"])
        out.method_options = asdict(method.options(self.method_options))
        for f, spec in option_fields(TrainConfig):
            setattr(out, f.name, check_value(f, spec, getattr(out, f.name)))
        return out


@dataclass
class Progress:
    """One progress report, as the worker stores it and the terminal bar shows it."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    samples_per_second: float
    eta_seconds: float


Phase = Callable[[str, int, int], None]
"""Hears what a run does before its first step: (what, rows done, rows in all), the counts 0 where there are none."""


class Pace:
    """The recent training speed, for a time left that follows the current pace: only this run's steps and time
    count (a resumed run's earlier epochs were timed by another process), and the slow first steps (kernel
    warm-up) drop out once they are older than `window` seconds."""

    def __init__(self, now: float, step: int, window: float = 30.0) -> None:
        self.window = window
        self.marks: deque[tuple[float, int]] = deque([(now, step)])

    def mark(self, now: float, step: int) -> None:
        self.marks.append((now, step))
        while len(self.marks) > 2 and now - self.marks[1][0] >= self.window:
            self.marks.popleft()

    def seconds_left(self, steps_left: int) -> float:
        (t0, s0), (t1, s1) = self.marks[0], self.marks[-1]
        return steps_left * (t1 - t0) / (s1 - s0) if s1 > s0 else 0.0


@dataclass
class TrainResult:
    adapter_dir: str
    method: str
    base_model: str
    labels: list[str]
    adapter_params: int
    trainable_params: int
    metrics: dict
    history: list[dict]
    best_epoch: int
    train_seconds: float
    train_samples_per_second: float
    cancelled: bool = False
    data_report: list[str] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    label_issues: dict = field(default_factory=dict)  # suspicious labels found per split (with a review_dir)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(labels: list[int], n: int) -> torch.Tensor:
    """n_rows / (n_classes * rows of the class), as scikit-learn's "balanced": 1 for every label when balanced."""
    counts = torch.bincount(torch.tensor(labels), minlength=n).float()
    return len(labels) / (n * counts.clamp(min=1))


def _schedule(peak: float, warmup: int, total: int) -> Callable[[int], float]:
    """The learning rate for a step (0-based): linear warm-up to `peak`, then linear decay to zero."""
    def lr(step: int) -> float:
        if step < warmup:
            return peak * ((step + 1) / warmup)
        return peak * max(0.0, (total - step) / max(1, total - warmup))
    return lr


def attention_kernel(device: torch.device, width: int) -> contextlib.AbstractContextManager:
    """SDPA's plain (math) kernel on CPU for batches up to 128 tokens wide, where the fused flash kernel's
    backward is 1.5-6x slower (per layer at 16 tokens: 8.6 ms against 1.3); wider batches keep the fused
    kernel, which wins from ~256 tokens and needs no width-squared memory. (engine/bert_model.py's own modules
    write bf16 attention out over that width instead of either kernel.)"""
    if device.type == "cpu" and width <= MATH_ATTENTION_WIDTH:
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


RUN_ONLY = ("output", "device", "adapter_name", "data_name", "validation_name")


def run_settings(cfg: TrainConfig) -> dict:
    """The settings a run was asked for, as recorded with its adapter and job."""
    return {k: v for k, v in asdict(cfg).items() if k not in RUN_ONLY}


def _checkpoint_path(checkpoint_dir: str | None) -> Path | None:
    return Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None


def _save_checkpoint(path: Path, state: dict) -> None:
    """Written whole: a kill -9 or a full disk mid-write leaves the previous checkpoint as it was."""
    write_file(path, lambda file: torch.save(state, file))


def train(
    config: TrainConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    checkpoint_dir: str | None = None,
    data: PreparedData | None = None,
    progress_every: int = 10,
    progress_seconds: float = 1.0,
    review_dir: str | None = None,
    checkpoint_seconds: float | None = None,
    on_phase: Phase | None = None,
) -> TrainResult:
    """Train one adapter and save it to `config.output`; resume from `checkpoint_dir` if it holds a checkpoint.

    `on_progress` hears every `progress_every` steps, at each epoch's end, and at least every `progress_seconds`
    (a time check; the loss is read from the device only on those steps).

    With `checkpoint_dir`, a checkpoint is written after every epoch and, with `checkpoint_seconds`, also within
    an epoch once that much training time has passed since the last one. A resumed run goes on from the step
    after the checkpoint with the same batches, dropout, optimizer and schedule, so it trains the same adapter
    as a run that was never stopped.

    `on_phase` hears the set-up before the first step (reading the data, tokenising it chunk by chunk, a first
    precision probe, loading the base model), which on a large file is where the first minute goes.

    `should_cancel` is polled every step: when it returns True the loop stops, the best epoch so far is saved
    and the result says `cancelled`.

    The temperature that calibrates the best epoch's validation probabilities is saved with the adapter;
    `review_dir` also gets the validation rows' predictions and the suspicious labels (engine/review.py).
    """
    cfg = config.resolved()
    started_at = datetime.now(UTC)
    seed_everything(cfg.seed)
    phase = on_phase or (lambda what, done, total: None)
    if data is None:
        phase("reading the data", 0, 0)
        data = prepare(cfg.data, cfg.validation, cfg.text_column, cfg.text_pair_column, cfg.label_column,
                       cfg.validation_fraction, cfg.seed, cfg.max_train_samples, label_names=cfg.label_names,
                       name=cfg.data_name, validation_name=cfg.validation_name, max_eval_samples=cfg.max_eval_samples)
    device = pick_device(cfg.device)
    base_path = resolve_base_model(cfg.base_model)
    base_config, method = load_config(base_path), get_method(cfg.method)
    method.supports(base_config, cfg.labels_as_text)
    check_fits(base_config, display_name(base_path), device, cfg.batch_size, cfg.max_length,
               sum(method.count(method.options(cfg.method_options), base_config, len(data.labels))))
    precision = choose_precision(device, base_path, base_config,
                                 on_probe=lambda: phase("measuring this CPU's fastest precision (once)", 0, 0))
    precision.apply()  # before oneDNN first runs in this process
    bf16 = precision.bf16
    phase("loading the base model", 0, 0)
    model = AdapterModel(cfg.base_model, mmap=not bf16, labels_as_text=cfg.labels_as_text)
    name = adapter_name_for(cfg.adapter_name or cfg.output)
    model.add_adapter(name, cfg.method, data.labels, cfg.method_options)
    model.to(device)
    params = model.train_adapter(name)
    model.base_dropout = cfg.base_dropout
    if bf16:
        model.frozen_linears_to(torch.bfloat16)
    batcher = model.batcher(cfg.max_length, bf16=bf16)
    rows = len(data.train)
    encoded = batcher.encode(data.train.texts, data.train.pairs, lambda done: phase("tokenising", done, rows))
    labels = torch.tensor(data.train.labels)
    weights = class_weights(data.train.labels, len(data.labels)).to(device) if cfg.balance_classes else None
    lengths = [len(e["input_ids"]) for e in encoded]
    steps_per_epoch = math.ceil(len(encoded) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    # torch's fused AdamW kernel (one kernel a step over every weight, as the HF Trainer's default) without
    # torch.optim, whose import of torch's compiler costs ~1 s a process (engine/optimizer.py)
    optimizer = AdamW(params, weight_decay=cfg.weight_decay)
    learning_rate = _schedule(cfg.learning_rate, int(total_steps * cfg.warmup_ratio), total_steps)

    history: list[dict] = []
    best: tuple[float, int, dict] | None = None  # (score, epoch, adapter state)
    start_epoch, train_seconds, samples_seen = 0, 0.0, 0
    resume_batch, resume_loss = 0, 0.0  # a checkpoint taken within an epoch: the batches done, their loss sum
    ckpt = _checkpoint_path(checkpoint_dir)
    if ckpt and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_adapter_state(name, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])  # the schedule follows from the step the run resumes at
        history, best = state["history"], state["best"]
        start_epoch, train_seconds, samples_seen = state["epoch"], state["train_seconds"], state["samples_seen"]
        resume_batch, resume_loss = state.get("batches_done", 0), state.get("running_loss", 0.0)
        torch.set_rng_state(state["rng"].cpu())  # dropout continues exactly as if never interrupted
        phase(f"resuming from the checkpoint {resume_batch:,} batches into epoch {start_epoch + 1}" if resume_batch
              else f"resuming from the checkpoint after epoch {start_epoch}", 0, 0)

    def checkpoint(epoch: int, batches_done: int = 0, running_loss: float = 0.0, seconds: float = 0.0) -> None:
        """The run so far: `epoch` epochs finished, and `batches_done` batches of the next one."""
        _save_checkpoint(ckpt, {
            "adapter": model.adapter_state(name), "optimizer": optimizer.state_dict(), "history": history,
            "best": best, "epoch": epoch, "batches_done": batches_done, "running_loss": running_loss,
            "train_seconds": seconds, "samples_seen": samples_seen, "rng": torch.get_rng_state()})

    cancelled = False
    step = start_epoch * steps_per_epoch + resume_batch
    reported_at = time.perf_counter()
    pace = Pace(reported_at, step)
    checkpointed_at = reported_at
    model.train()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            epoch_start = time.perf_counter()
            skip, resume_batch = resume_batch, 0  # only the resumed epoch starts part-way
            running = torch.full((), resume_loss if skip else 0.0, device=device)
            for i, idx in enumerate(length_grouped_batches(lengths, cfg.batch_size, cfg.seed + epoch)):
                if i < skip:  # done before the checkpoint: the order is the seed's, so the rest is as it was
                    continue
                if should_cancel and should_cancel():
                    raise TrainingCancelled
                batch = batcher.collate([encoded[j] for j in idx])
                target = batcher.to_device({"labels": labels[idx]})["labels"]  # pinned + non-blocking on CUDA
                with batcher.autocast(), attention_kernel(device, batch["input_ids"].shape[1]):
                    logits = model(**batch)
                loss = F.cross_entropy(logits.float(), target, weight=weights)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step(learning_rate(step))
                optimizer.zero_grad()
                running += loss.detach()
                step += 1
                samples_seen += len(idx)
                if on_progress and (step % progress_every == 0 or i == steps_per_epoch - 1
                                    or time.perf_counter() - reported_at >= progress_seconds):
                    loss_so_far = float(running) / (i + 1)  # waits for the device: reporting steps only
                    reported_at = time.perf_counter()
                    pace.mark(reported_at, step)
                    elapsed = train_seconds + reported_at - epoch_start
                    rate = samples_seen / elapsed if elapsed else 0.0
                    on_progress(Progress(step, total_steps, epoch + (i + 1) / steps_per_epoch, loss_so_far,
                                         learning_rate(step), rate, pace.seconds_left(total_steps - step)))
                now = time.perf_counter()
                if ckpt and checkpoint_seconds and now - checkpointed_at >= checkpoint_seconds \
                        and i < steps_per_epoch - 1:  # the epoch's end writes its own
                    checkpoint(epoch, i + 1, float(running), train_seconds + now - epoch_start)
                    checkpointed_at = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # once per epoch (never per step), so the epoch's time is complete
            train_seconds += time.perf_counter() - epoch_start
            metrics, logits = evaluate(model, batcher, data.validation, data.labels)
            metrics.update(epoch=epoch + 1, train_loss=float(running) / steps_per_epoch)
            history.append({k: metrics[k] for k in ("epoch", "train_loss", "loss", "accuracy", "macro_f1")})
            if best is None or metrics["macro_f1"] > best[0]:
                best = (metrics["macro_f1"], epoch + 1,
                        {"state": model.adapter_state(name), "metrics": metrics, "logits": logits})
            if on_epoch:
                on_epoch(epoch + 1, metrics)
            if ckpt:
                checkpoint(epoch + 1, seconds=train_seconds)
                checkpointed_at = time.perf_counter()
            patience = cfg.early_stopping_patience
            if patience and epoch + 1 - best[1] >= patience:
                break
    except TrainingCancelled:
        cancelled = True
    if best is None:  # cancelled before the first epoch ended: keep what there is, measured
        metrics, logits = evaluate(model, batcher, data.validation, data.labels)
        best = (metrics["macro_f1"], 0, {"state": model.adapter_state(name), "metrics": metrics, "logits": logits})
    model.load_adapter_state(name, best[2]["state"])
    final = best[2]["metrics"]
    validation_logits = best[2].get("logits")  # absent from checkpoints written before calibration
    if validation_logits is None:
        validation_logits = predict_logits(model, batcher, data.validation)
    calibration = calibrate(validation_logits, data.validation.labels)
    review = {}
    if review_dir:
        from engine.review import write_training_review  # brings pandas: only for a job's review

        review = write_training_review(review_dir, data, validation_logits, predict_logits(model, batcher, data.train))
    rate = samples_seen / train_seconds if train_seconds else 0.0
    metadata = {
        "text_column": cfg.text_column, "text_pair_column": cfg.text_pair_column, "label_column": cfg.label_column,
        "max_length": cfg.max_length, "label_names": cfg.label_names, "training": run_settings(cfg),
        "metrics": final, "history": history, "best_epoch": best[1], "cancelled": cancelled,
        "data_fingerprint": data.fingerprint, "data_report": data.report.lines(),
        "train_seconds": round(train_seconds, 3), "train_samples_per_second": round(rate, 2),
        "precision": precision.describe(),
        "temperature": calibration.temperature, "apply_temperature": True, "calibration": calibration.as_dict(),
        **({"label_issues": review} if review else {}),
        "started_at": started_at.isoformat(timespec="seconds"),
        **({"name": cfg.adapter_name} if cfg.adapter_name else {}),  # as the user named it, not module-safe
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = save_adapter(model, name, cfg.output, metadata)
    adapter_params, trainable_params = model.parameter_counts(name)
    return TrainResult(str(out), cfg.method, model.base_model_name, data.labels, adapter_params, trainable_params,
                       final, history, best[1], train_seconds, rate, cancelled, data.report.lines(),
                       calibration.as_dict(), review)
