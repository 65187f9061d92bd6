"""Create an AdapterHub (`adapters` 1.3.0) bottleneck adapter + classification head.

Run with the reference venv's python (scripts/make_reference_venv.sh); works offline.
Trainable weights are moved off their init (seeded randn * 0.05, then optional AdamW
steps on tiny synthetic sentences) so interop comparisons are meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

CONFIGS = {"pfeiffer": "seq_bn", "houlsby": "double_seq_bn", "parallel": "par_bn", "prefix": "prefix_tuning",
           "compacter": "compacter"}
SYNTHETIC = ["a great film", "a bad film", "I loved it", "I hated it", "ok", "dull"]


def parse_args() -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base-model", required=True)
    p.add_argument("--method", choices=sorted(CONFIGS), required=True)
    p.add_argument("--reduction-factor", type=int, default=16)
    p.add_argument("--labels", required=True, help="comma-separated, e.g. neg,pos")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--name", default=None, help="adapter/head name (default: method)")
    p.add_argument("--train-steps", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--safetensors", action="store_true", help="save .safetensors")
    p.add_argument("--eject", action="store_true", help="prefix: save the flat prefixes (config marked flat)")
    p.add_argument("--texts-json", type=Path, help="JSON list of texts for --probs-out")
    p.add_argument("--pairs-json", type=Path, help="JSON list of second segments")
    p.add_argument("--probs-out", type=Path, help="write probabilities JSON here")
    return p.parse_args()


def main() -> None:
    """Build, perturb/train, save the adapter with its head, optionally predict."""
    a = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import adapters
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(a.seed)
    labels = a.labels.split(",")
    name = a.name or a.method
    model = adapters.AutoAdapterModel.from_pretrained(a.base_model)
    tok = AutoTokenizer.from_pretrained(a.base_model)
    rf = a.reduction_factor
    cfg = adapters.AdapterConfig.load(CONFIGS[a.method], **({} if a.method == "prefix" else {"reduction_factor": rf}))
    model.add_adapter(name, config=cfg)
    model.add_classification_head(
        name, num_labels=len(labels), id2label=dict(enumerate(labels))
    )
    model.train_adapter(name)  # freezes the base, activates `name`, train mode

    trainable = [q for q in model.parameters() if q.requires_grad]
    with torch.no_grad():
        for q in trainable:
            q.add_(torch.randn_like(q) * 0.05)
    if a.train_steps > 0:
        opt = torch.optim.AdamW(trainable, lr=1e-3)
        enc = tok(SYNTHETIC, truncation=True, padding=True, return_tensors="pt")
        y = torch.tensor([i % len(labels) for i in range(len(SYNTHETIC))])
        for _ in range(a.train_steps):
            opt.zero_grad()
            model(**enc, labels=y).loss.backward()
            opt.step()

    model.eval()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.eject:  # AdapterHub keeps "flat": false after ejecting, and would then not load its own folder
        model.eject_prefix_tuning(name)
    model.save_adapter(str(a.out), name, with_head=True, use_safetensors=a.safetensors)
    if a.eject:
        saved = json.loads((a.out / "adapter_config.json").read_text())
        saved["config"]["flat"] = True
        (a.out / "adapter_config.json").write_text(json.dumps(saved, indent=2))
    head_w = "model_head.safetensors" if a.safetensors else "pytorch_model_head.bin"
    missing = {"head_config.json", head_w} - {f.name for f in a.out.iterdir()}
    if missing:
        raise SystemExit(f"head not saved: missing {sorted(missing)} in {a.out}")

    if a.probs_out:
        if not a.texts_json:
            raise SystemExit("--probs-out needs --texts-json")
        texts = json.loads(a.texts_json.read_text())
        pairs = json.loads(a.pairs_json.read_text()) if a.pairs_json else None
        enc = tok(texts, pairs, truncation=True, padding=True, return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(model(**enc).logits.double(), dim=-1).tolist()
        result = {"adapter_name": name, "probabilities": probs}
        a.probs_out.write_text(json.dumps(result, indent=1))
    print(f"saved {a.method} adapter {name!r} to {a.out}")


if __name__ == "__main__":
    main()
