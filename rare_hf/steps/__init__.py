"""The steps: the registry (one record per step), the LLM step base and runner, the built-in steps, the
pipeline and the dry-run estimate."""
