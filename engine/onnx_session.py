"""An adapter's ONNX export (engine/export.py) run by onnxruntime in place of PyTorch's eager forward.

A one-sentence forward of the bundled model in onnxruntime takes about a third of the time of the packed torch
model (docs/benchmarks.md, ONNX export): the graph runs without Python between its operators. The export was
checked against torch when it was written (probabilities within `engine.export.TOLERANCE`), and the logits are
taken from it, not its probabilities, so the adapter's current temperature and threshold apply.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.export import ONNX_FILE


class OnnxSession:
    """The graph of one export folder: `logits(batch)` for a batch the adapter's `Batcher` collated."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import onnxruntime  # loaded only by a process that serves from it

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: the server shares its cores with a training worker, and over HTTP it was
        # no slower (docs/benchmarks.md, REST endpoint)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.folder = Path(folder)
        self.session = onnxruntime.InferenceSession(str(self.folder / ONNX_FILE), options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: batch[name].cpu().numpy() for name in self.inputs}
        return torch.from_numpy(self.session.run(["logits"], feed)[0]).float()
