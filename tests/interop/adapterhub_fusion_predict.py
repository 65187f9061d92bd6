"""Load an AdapterLab fusion folder in AdapterHub: its fused adapters (from fused/, without heads), the fusion
with its head, `Fuse` active; write probabilities and the fusion layers' parameter count as JSON.

Run with the reference venv's python (scripts/make_reference_venv.sh); works offline.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base-model", required=True)
    p.add_argument("--fusion", required=True, type=Path)
    p.add_argument("--texts-json", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import adapters
    import torch
    from adapters.composition import Fuse
    from transformers import AutoTokenizer

    model = adapters.AutoAdapterModel.from_pretrained(a.base_model)
    names = json.loads((a.fusion / "adapter_fusion_config.json").read_text())["adapter_names"]
    for name in names:
        model.load_adapter(str(a.fusion / "fused" / name), with_head=False)
    model.load_adapter_fusion(str(a.fusion), with_head=True)
    model.set_active_adapters(Fuse(*names))
    model.active_head = ",".join(names)
    model.eval()
    tok = AutoTokenizer.from_pretrained(a.base_model)
    enc = tok(json.loads(a.texts_json.read_text()), truncation=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    count = sum(p.numel() for n, p in model.named_parameters() if "adapter_fusion_layer" in n)
    a.out.write_text(json.dumps({"probabilities": torch.softmax(logits.double(), -1).tolist(),
                                 "fusion_params": count, "label2id": model.heads[",".join(names)].config["label2id"]}))


if __name__ == "__main__":
    main()
