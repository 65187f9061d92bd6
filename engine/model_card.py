"""The model card: a `README.md` in every adapter folder, written from `adapterlab.json` whenever that changes.

It says what the adapter is, how well it did where (validation and each test file), how sure it is (calibration,
threshold), what its data was and where it is weak, and the exact lines that load it in AdapterLab and in its
reference library. The front matter is Hugging Face's model-card metadata, so the folder can be pushed as is.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.methods import get as get_method

CARD = "README.md"
_LIBRARY = {"AdapterHub": "adapter-transformers", "PEFT": "peft", "transformers": "transformers"}


def _library(method: str) -> str:
    return _LIBRARY.get(get_method(method).reference.split()[0], "transformers")


def _usage(meta: dict, library: str) -> str:
    base = meta.get("base_model") or "BASE_MODEL"
    lines = {
        "adapter-transformers": [
            "import adapters",
            "from transformers import AutoTokenizer",
            "",
            f'model = adapters.AutoAdapterModel.from_pretrained("{base}")',
            'name = model.load_adapter("path/to/this/folder", use_safetensors=True)  # the adapter and its head',
            "model.set_active_adapters(name)",
            f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
            'logits = model(**tokenizer(["some text"], return_tensors="pt")).logits'],
        "peft": [
            "from peft import PeftModel",
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            f'base = AutoModelForSequenceClassification.from_pretrained("{base}", num_labels={len(meta["labels"])})',
            'model = PeftModel.from_pretrained(base, "path/to/this/folder").eval()',
            f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
            'logits = model(**tokenizer(["some text"], return_tensors="pt")).logits'],
        "transformers": [
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            "",
            'model = AutoModelForSequenceClassification.from_pretrained("path/to/this/folder").eval()',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
            'logits = model(**tokenizer(["some text"], return_tensors="pt")).logits'],
    }[library]
    return "\n".join(lines)


def _front_matter(meta: dict, library: str) -> str:
    metrics = meta.get("metrics") or {}
    data = (meta.get("data_report") or ["data"])[0].split(":")[0]
    results = [{"type": "accuracy", "value": round(metrics["accuracy"], 4)},
               {"type": "f1", "name": "macro-F1", "value": round(metrics["macro_f1"], 4)}] if metrics else []
    tags = ["adapterlab", "text-classification", meta["method"], library]
    lines = ["---", f"library_name: {library}", f"base_model: {meta.get('base_model')}",
             "pipeline_tag: text-classification", "tags:", *[f"- {t}" for t in tags]]
    if results:
        lines += ["model-index:", f"- name: {json.dumps(meta.get('name') or 'adapter')}", "  results:",
                  "  - task:", "      type: text-classification",
                  "    dataset:", f"      name: {json.dumps(data)}", "      type: custom",
                  "      split: validation", "    metrics:"]
        for r in results:
            lines += [f"    - type: {r['type']}", f"      value: {r['value']}"]
            if "name" in r:
                lines.append(f"      name: {r['name']}")
    return "\n".join([*lines, "---"])


def _metrics_table(meta: dict) -> str:
    rows = []
    if meta.get("metrics"):
        m = meta["metrics"]
        rows.append(f"| validation (best epoch {meta.get('best_epoch')}) | {len(meta.get('labels', []))} labels "
                    f"| {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    for e in meta.get("evaluations") or []:
        rows.append(f"| test file {e['file_name']} ({e['evaluated_at']}) | {e['rows']} rows | {e['accuracy']:.4f} "
                    f"| {e['macro_f1']:.4f} |")
    if not rows:
        return "No measurements recorded."
    return "\n".join(["| set | size | accuracy | macro-F1 |", "|---|---|---|---|", *rows])


def _per_class(meta: dict) -> str:
    per = (meta.get("metrics") or {}).get("per_class") or {}
    if not per:
        return ""
    counts = _label_counts(meta)
    rows = [f"| {label} | {counts.get(label, '')} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |"
            for label, m in per.items()]
    return "\n".join(["| label | training rows | precision | recall | F1 |", "|---|---|---|---|---|", *rows])


def _label_counts(meta: dict) -> dict[str, str]:
    for line in meta.get("data_report") or []:
        if line.startswith("labels: "):
            return dict(part.rsplit(" ", 1) for part in line[len("labels: "):].split(", ") if " " in part)
    return {}


def _calibration(meta: dict) -> str:
    c = meta.get("calibration")
    if not c:
        return "Not measured."
    used = "used by predict" if meta.get("apply_temperature", True) else "switched off: predict uses raw scores"
    out = (f"Temperature **{c['temperature']:.3f}** ({used}), fitted on the {c['rows']} validation rows: expected "
           f"calibration error {c['ece_before']:.4f} before, {c['ece']:.4f} after (10 bins); negative "
           f"log-likelihood {c['nll_before']:.4f} before, {c['nll']:.4f} after.")
    t = meta.get("threshold")
    if t:
        out += (f"\n\nDecision threshold: predict **{t['label']}** when its probability is at least "
                f"**{t['value']:.3f}** (chosen by {t.get('rule', 'hand')}"
                + (f", target {t['target']:g}" if t.get("target") is not None else "") + ").")
    return out


def _limits(meta: dict) -> str:
    out = []
    issues = meta.get("label_issues")
    if issues:
        out.append(f"- Suspicious labels: {issues.get('validation', 0)} validation and {issues.get('training', 0)} "
                   "training rows have a label this adapter confidently disagrees with (confident learning); "
                   "check them before trusting the scores.")
    counts = {k: int(v) for k, v in _label_counts(meta).items() if v.isdigit()}
    if counts and min(counts.values()) and max(counts.values()) / min(counts.values()) >= 3:
        rare = min(counts, key=counts.get)
        weighted = " (trained with class-balanced loss)" if meta.get("training", {}).get("balance_classes") else ""
        out.append(f"- Imbalanced labels{weighted}: '{rare}' has {counts[rare]} training rows, "
                   f"'{max(counts, key=counts.get)}' {max(counts.values())}. Judge it by macro-F1 and per-label "
                   "recall.")
    out.append(f"- Texts longer than {meta.get('max_length', 128)} tokens are cut. It knows only the labels "
               "above, and was measured only on the data named here.")
    return "\n".join(out)


def render(meta: dict) -> str:
    """The card's Markdown for an adapter's metadata."""
    library = _library(meta["method"])
    method = get_method(meta["method"])
    settings = meta.get("training") or {}
    shown = {k: v for k, v in settings.items() if v not in (None, False) and k not in ("data", "validation")}
    report = "\n".join(f"- {line}" for line in meta.get("data_report") or []) or "- not recorded"
    labels = ", ".join(f"`{label}`" for label in meta.get("labels", []))
    return f"""{_front_matter(meta, library)}

# {meta.get('name') or 'adapter'}

A **{method.label}** text classifier ({meta.get('trainable_params', 0):,} trainable parameters over the frozen
`{meta.get('base_model')}`), trained with AdapterLab. Labels: {labels}.

## Results

{_metrics_table(meta)}

{_per_class(meta)}

## Calibration and threshold

{_calibration(meta)}

## Data

Fingerprint `{meta.get('data_fingerprint', 'not recorded')}`.

{report}

## Training settings

```json
{json.dumps(shown, indent=1, default=str)}
```

## Limits

{_limits(meta)}

## How to use it

In AdapterLab: `adapterlab predict --adapter path/to/this/folder --text "some text"`, or the Playground.

With {library} (the probabilities AdapterLab reports are `softmax(logits / {meta.get('temperature', 1.0):.3f})`):

```python
{_usage(meta, library)}
```
"""


def write_card(folder: str | Path, meta: dict) -> Path:
    path = Path(folder) / CARD
    path.write_text(render(meta), encoding="utf-8")
    return path
