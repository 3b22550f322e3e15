"""Kept importable for existing code: this name is :mod:`rare_hf.text.answers` itself."""

import sys

from .text import answers as _module

sys.modules[__name__] = _module
