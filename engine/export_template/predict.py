"""Classify texts with this exported adapter: onnxruntime, numpy and the tokenizer alone (no PyTorch).

    pip install onnxruntime tokenizers numpy
    python predict.py "my card was charged twice"        # one text (two for an adapter trained on pairs)
    python predict.py --file texts.txt                    # one text per line (pairs: tab-separated)

Prints one JSON object per text: {"label": ..., "probabilities": {label: p}}. In Python:

    from predict import Classifier
    Classifier().predict(["my card was charged twice"])   # text_pairs=[...] for a pair adapter
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent


class Classifier:
    """The graph, its tokenizer and adapter.json (labels, max length, temperature baked in, threshold)."""

    def __init__(self, folder: str | Path = HERE, batch_size: int = 32) -> None:
        folder = Path(folder)
        self.config = json.loads((folder / "adapter.json").read_text())
        self.labels = self.config["labels"]
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.config["max_length"])
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        pad = settings.get("pad_token") or "[PAD]"
        pad = pad["content"] if isinstance(pad, dict) else pad
        self.pad_id = self.tokenizer.token_to_id(pad) or 0
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])

    def probabilities(self, texts: list[str], text_pairs: list[str] | None = None) -> np.ndarray:
        """One row per text, columns in `labels` order (the adapter's temperature applied). Rows are batched by
        length, so each batch pads to little more than its own texts."""
        encoded = self.tokenizer.encode_batch(list(zip(texts, text_pairs, strict=True)) if text_pairs else texts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(encoded[i].ids) for i in rows)
            feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in self.config["inputs"]}
            for k, i in enumerate(rows):
                e, n = encoded[i], len(encoded[i].ids)
                columns = {"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids}
                for name in feed:
                    feed[name][k, :n] = columns[name]
                feed["input_ids"][k, n:] = self.pad_id
            out[rows] = self.session.run(["probabilities"], feed)[0]
        return out

    def predict(self, texts: list[str], text_pairs: list[str] | None = None) -> list[dict]:
        """The label for each text (the adapter's threshold where one was chosen) and every label's probability."""
        if self.config.get("text_pair_column") and text_pairs is None:
            raise SystemExit("This adapter was trained on text pairs: give a second text for each text.")
        probs = self.probabilities(texts, text_pairs)
        threshold = self.config.get("threshold") or {}
        out = []
        for row in probs:
            best = int(row.argmax())
            if len(self.labels) == 2 and threshold.get("label") in self.labels:
                pos = self.labels.index(threshold["label"])
                best = pos if row[pos] >= threshold["value"] else 1 - pos
            out.append({"label": self.labels[best],
                        "probabilities": {label: float(p) for label, p in zip(self.labels, row, strict=True)}})
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Classify texts with this exported adapter.")
    p.add_argument("text", nargs="*", help="a text (and its second text, for an adapter trained on pairs)")
    p.add_argument("--file", help="a file with one text per line (pairs: text, a tab, second text)")
    a = p.parse_args(argv)
    classifier = Classifier()
    paired = bool(classifier.config.get("text_pair_column"))
    if a.file:
        lines = [line.rstrip("\n") for line in Path(a.file).read_text(encoding="utf-8").splitlines() if line.strip()]
        cells = [line.split("\t", 1) if paired else [line] for line in lines]
    elif a.text:
        cells = [a.text[:2] if paired else [" ".join(a.text)]]
    else:
        p.error("give a text, or --file")
    if paired and any(len(c) < 2 for c in cells):
        p.error("this adapter was trained on text pairs: give two texts (in a file: separated by a tab)")
    results = classifier.predict([c[0] for c in cells], [c[1] for c in cells] if paired else None)
    for result in results:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
