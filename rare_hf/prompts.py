"""Kept importable for existing code: this name is :mod:`rare_hf.text.prompts` itself."""

import sys

from .text import prompts as _module

sys.modules[__name__] = _module
