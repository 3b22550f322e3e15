"""Kept importable for existing code: this name is :mod:`rare_hf.io.hub` itself."""

import sys

from .io import hub as _module

sys.modules[__name__] = _module
