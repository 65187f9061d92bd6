"""Load a saved AdapterHub adapter folder (with head); write probabilities as JSON.

Run with the reference venv's python (scripts/make_reference_venv.sh); works offline.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def parse_args() -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base-model", required=True)
    p.add_argument("--adapter", required=True, type=Path)
    p.add_argument("--texts-json", required=True, type=Path)
    p.add_argument("--pairs-json", type=Path)
    p.add_argument("--out", required=True, type=Path)
    return p.parse_args()


def main() -> None:
    """Load base + adapter, activate it, predict, write JSON."""
    a = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import adapters
    import torch
    from transformers import AutoTokenizer

    model = adapters.AutoAdapterModel.from_pretrained(a.base_model)
    # load_adapter does not detect safetensors by itself; it also loads the head.
    st = (a.adapter / "adapter.safetensors").exists()
    name = model.load_adapter(str(a.adapter), use_safetensors=st)
    model.set_active_adapters(name)  # a loaded adapter is NOT active until this
    model.eval()
    tok = AutoTokenizer.from_pretrained(a.base_model)
    texts = json.loads(a.texts_json.read_text())
    pairs = json.loads(a.pairs_json.read_text()) if a.pairs_json else None
    enc = tok(texts, pairs, truncation=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    label2id = model.heads[name].config.get("label2id") if name in model.heads else None
    result = {
        "adapter_name": name,
        "probabilities": torch.softmax(logits.double(), dim=-1).tolist(),
        "label2id": label2id,
        "id2label": {str(v): k for k, v in label2id.items()} if label2id else None,
    }
    a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
