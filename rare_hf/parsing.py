"""Kept importable for existing code: this name is :mod:`rare_hf.text.parsing` itself."""

import sys

from .text import parsing as _module

sys.modules[__name__] = _module
