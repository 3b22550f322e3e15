"""Plumbing every layer may use: no rare_hf import, no network."""
