"""lgtm: learning-to-teach knowledge distillation (LGTM, ACL 2023) for text classifiers."""

from .methods import METHOD_NAMES, PRESETS, Method, make_method

__version__ = "0.1.0"

__all__ = ["METHOD_NAMES", "PRESETS", "Method", "make_method", "__version__"]
