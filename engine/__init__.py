"""AdapterLab's shared adapter engine: methods, base models, data, training, evaluation, inference.

It imports neither gradio nor huey: the worker, the web app and the command line all sit on it.
"""

__version__ = "0.1.0"
