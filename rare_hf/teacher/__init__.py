"""The teacher: the OpenAI-compatible client (:class:`rare_hf.LLM`), its concurrency limits, endpoints, Batch API
mode, response cache and usage. This layer knows nothing of ``datasets``, steps or retrieval."""
