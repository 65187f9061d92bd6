"""One benchmark run of the reference: AdapterHub `adapters` 1.3 with the Hugging Face Trainer.

Run by bench/run.py with the reference venv's python (`.venvs/adapterhub/bin/python`), one fresh process
per run. Two recipes:

- `maxlen`: AdapterHub's tutorial recipe, every example padded to `--max-length` (default collator);
- `dynamic`: the same library used well, dynamic padding (DataCollatorWithPadding) and `group_by_length`.

Both: `AutoAdapterModel` + `add_adapter(config=seq_bn | double_seq_bn | ia3)` + `add_classification_head`
+ `train_adapter`, TrainingArguments with the given learning rate, batch size, epochs, warm-up ratio, linear
schedule, weight decay 0, max grad norm 1, no checkpoints, no logging integrations. Prints nothing useful;
writes one JSON result to `--out`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Phases,
    add_shared_args,
    process_measures,
    read_csv,
    scores,
    set_threads,
    write_result,
)

CONFIGS = {"pfeiffer": "seq_bn", "houlsby": "double_seq_bn", "ia3": "ia3"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", choices=["maxlen", "dynamic"], required=True)
    p.add_argument("--base-model", required=True, help="local model folder")
    p.add_argument("--method", choices=sorted(CONFIGS), required=True)
    p.add_argument("--reduction-factor", type=int, default=16)
    p.add_argument("--eval-batch-size", type=int, default=64)
    add_shared_args(p)
    return p.parse_args()


class Rows:
    """A list of feature dicts as a torch-style dataset (what the Trainer's samplers and collators index)."""

    def __init__(self, features: dict[str, list], labels: list[int]) -> None:
        keys = list(features)
        self.rows = [{**{k: features[k][i] for k in keys}, "labels": labels[i]} for i in range(len(labels))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def main() -> None:
    a = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    phases = Phases()
    import adapters
    import numpy as np
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    threads = set_threads(torch, a.threads)
    cuda = a.device == "cuda" or (not a.device and torch.cuda.is_available())
    phases.mark("import")

    train_texts, train_labels = read_csv(a.train)
    val_texts, val_labels = read_csv(a.validation)
    phases.mark("read_data")

    torch.manual_seed(a.seed)
    tokenizer = AutoTokenizer.from_pretrained(a.base_model)
    model = adapters.AutoAdapterModel.from_pretrained(a.base_model)
    model.add_adapter("sst2", config=adapters.AdapterConfig.load(CONFIGS[a.method], **(
        {"reduction_factor": a.reduction_factor} if a.method != "ia3" else {})))
    model.add_classification_head("sst2", num_labels=2, id2label={0: "0", 1: "1"})
    model.train_adapter("sst2")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    phases.mark("load_model")

    padding = {"padding": "max_length"} if a.recipe == "maxlen" else {}
    train_set = Rows(tokenizer(train_texts, truncation=True, max_length=a.max_length, **padding), train_labels)
    val_set = Rows(tokenizer(val_texts, truncation=True, max_length=a.max_length, **padding), val_labels)
    collator = default_data_collator if a.recipe == "maxlen" else DataCollatorWithPadding(tokenizer)
    phases.mark("tokenize")

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            learning_rate=a.learning_rate,
            num_train_epochs=a.epochs,
            per_device_train_batch_size=a.batch_size,
            per_device_eval_batch_size=a.eval_batch_size,
            lr_scheduler_type="linear",
            warmup_ratio=a.warmup_ratio,
            weight_decay=0.0,
            max_grad_norm=1.0,
            group_by_length=a.recipe == "dynamic",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=a.seed,
            remove_unused_columns=False,  # as AdapterHub's tutorials: the flex-head forward takes labels as **kwargs
            label_names=["labels"],
            bf16=cuda,
            use_cpu=not cuda,
            dataloader_pin_memory=cuda,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                          data_collator=collator)
        phases.mark("setup_trainer")
        start = time.perf_counter()
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - start
        phases.mark("train")
        output = trainer.predict(val_set)
        # group_by_length also length-groups the evaluation sampler: score against the label ids it returns
        predictions = np.asarray(output.predictions).argmax(-1).tolist()
        val_labels = np.asarray(output.label_ids).tolist()
        phases.mark("evaluate")
        model.save_adapter(str(Path(tmp) / "adapter"), "sst2", with_head=True)
        phases.mark("save")

    steps = len(train_set) // a.batch_size + (len(train_set) % a.batch_size > 0)
    write_result(a.out, {
        "system": f"reference-{a.recipe}",
        "method": a.method,
        "versions": {"adapters": adapters.__version__, "transformers": __import__("transformers").__version__,
                     "torch": torch.__version__},
        "device": "cuda" if cuda else "cpu",
        "threads": threads,
        "train_rows": len(train_set),
        "validation_rows": len(val_set),
        "steps": steps * a.epochs,
        "trainable_params": trainable,
        "train_seconds": round(train_seconds, 3),
        "train_samples_per_second": round(len(train_set) * a.epochs / train_seconds, 2),
        **scores(val_labels, predictions),
        **process_measures(phases, torch.cuda.max_memory_allocated() if cuda else None),
    })


if __name__ == "__main__":
    main()
