"""Adapter methods: one folder each (config, layer, model), as in PEFT's `tuners/`."""

METHODS = ("pfeiffer", "houlsby", "ia3")
BOTTLENECK_METHODS = ("pfeiffer", "houlsby")
DEFAULT_REDUCTION_FACTOR = 16.0
# The job settings each method reads; a setting no method of the job reads is neither shown nor stored.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {"pfeiffer": ("reduction_factor",), "houlsby": ("reduction_factor",),
                                              "ia3": ()}
ALL_METHOD_OPTIONS = frozenset(o for options in METHOD_OPTIONS.values() for o in options)
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
