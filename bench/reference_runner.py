"""One benchmark run of a method's reference library with the Hugging Face Trainer: AdapterHub `adapters` 1.3,
PEFT, or plain transformers (full fine-tuning).

Run by bench/run.py, one fresh process per run: with the reference venv's python (`.venvs/adapterhub/bin/python`)
for AdapterHub's methods, with the project's python (transformers 5) for PEFT's and full fine-tuning. Two recipes:

- `maxlen`: AdapterHub's tutorial recipe, every example padded to `--max-length` (default collator);
- `dynamic`: the same library used well, dynamic padding (DataCollatorWithPadding) and `group_by_length`.

AdapterHub: `AutoAdapterModel` + `add_adapter(config=seq_bn | double_seq_bn | par_bn | compacter |
prefix_tuning | ia3)` + `add_classification_head` + `train_adapter`; PEFT: `AutoModelForSequenceClassification` +
`get_peft_model(LoraConfig | PromptTuningConfig)`; full: `AutoModelForSequenceClassification` alone. All:
TrainingArguments with the given learning rate, batch size, epochs, warm-up ratio, linear schedule, weight decay
0, max grad norm 1, no checkpoints, no logging integrations. Prints nothing useful; writes one JSON result to
`--out`.
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

ADAPTERHUB = {"pfeiffer": "seq_bn", "houlsby": "double_seq_bn", "parallel": "par_bn", "compacter": "compacter",
              "prefix": "prefix_tuning", "ia3": "ia3"}
PEFT = ("lora", "prompt")
METHODS = (*ADAPTERHUB, *PEFT, "full")
LIBRARY = {**dict.fromkeys(ADAPTERHUB, "adapterhub"), **dict.fromkeys(PEFT, "peft"), "full": "transformers"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", choices=["maxlen", "dynamic"], required=True)
    p.add_argument("--base-model", required=True, help="local model folder")
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--reduction-factor", type=int, help="bottleneck methods (default: the library's)")
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


def version_arguments(arguments: type, a: argparse.Namespace) -> dict:
    """Warm-up and length grouping as this transformers names them: 4.57 (the AdapterHub venv) has
    `warmup_ratio` and `group_by_length`; 5 takes a ratio in `warmup_steps` and `train_sampling_strategy`."""
    import inspect

    names = inspect.signature(arguments.__init__).parameters
    if "warmup_ratio" in names:
        return {"warmup_ratio": a.warmup_ratio, "group_by_length": a.recipe == "dynamic"}
    return {"warmup_steps": a.warmup_ratio,
            "train_sampling_strategy": "group_by_length" if a.recipe == "dynamic" else "random"}


def build_model(a: argparse.Namespace, num_labels: int):
    """The method's model as its reference library builds it, trainable parts unfrozen; and the library's
    version."""
    from transformers import AutoModelForSequenceClassification

    library = LIBRARY[a.method]
    if library == "adapterhub":
        import adapters

        model = adapters.AutoAdapterModel.from_pretrained(a.base_model)
        options = {"reduction_factor": a.reduction_factor} if a.reduction_factor else {}
        model.add_adapter("sst2", config=adapters.AdapterConfig.load(ADAPTERHUB[a.method], **options))
        model.add_classification_head("sst2", num_labels=num_labels, id2label={i: str(i) for i in range(num_labels)})
        model.train_adapter("sst2")
        return model, {"adapters": adapters.__version__}
    model = AutoModelForSequenceClassification.from_pretrained(a.base_model, num_labels=num_labels)
    if library == "transformers":
        return model, {}
    import peft

    config = (peft.LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=8) if a.method == "lora"
              else peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=20))
    return peft.get_peft_model(model, config), {"peft": peft.__version__}


def main() -> None:
    a = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    phases = Phases()
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
    model, versions = build_model(a, max(train_labels) + 1)  # bench/run.py writes labels as 0..n-1
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
            weight_decay=0.0,
            max_grad_norm=1.0,
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
            **version_arguments(TrainingArguments, a),
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
        if LIBRARY[a.method] == "adapterhub":
            model.save_adapter(str(Path(tmp) / "adapter"), "sst2", with_head=True)
        else:
            model.save_pretrained(str(Path(tmp) / "adapter"))
        phases.mark("save")

    steps = len(train_set) // a.batch_size + (len(train_set) % a.batch_size > 0)
    write_result(a.out, {
        "system": f"reference-{a.recipe}",
        "method": a.method,
        "library": LIBRARY[a.method],
        "versions": {**versions, "transformers": __import__("transformers").__version__, "torch": torch.__version__},
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
