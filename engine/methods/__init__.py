"""Adapter methods: one folder each (config, layer, model), as in PEFT's `tuners/`."""

METHODS = ("pfeiffer", "houlsby", "ia3")
BOTTLENECK_METHODS = ("pfeiffer", "houlsby")
DESCRIPTIONS = {
    "houlsby": "Two small bottleneck layers in every block (after attention and after feed-forward): "
    "the most capacity, about 2x Pfeiffer's parameters.",
    "pfeiffer": "One bottleneck layer after each feed-forward block: nearly Houlsby's accuracy with half "
    "the parameters and faster training.",
    "ia3": "Learned vectors that rescale keys, values and feed-forward activations: the fewest parameters "
    "(a few thousand), needs a higher learning rate.",
}

# Per-method defaults, chosen by measurement on ../shared/data (see docs/defaults.md).
METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    "pfeiffer": {"learning_rate": 3e-3, "epochs": 3},
    "houlsby": {"learning_rate": 3e-3, "epochs": 3},
    "ia3": {"learning_rate": 2e-2, "epochs": 3},
}
