"""Lexical retrieval: the BM25 index, shared-passage shingles and the mining kernels. Knows no LLM."""
