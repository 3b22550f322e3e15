"""Build a RARE training set from documents. Run with --help for the options, --demo to try it offline.

Examples:
    python scripts/build_rare_dataset.py --demo
    python scripts/build_rare_dataset.py docs.jsonl --model gpt-4o-mini --output out/
    python scripts/build_rare_dataset.py docs.parquet --model Qwen/Qwen2.5-7B-Instruct \
        --base-url http://localhost:8000/v1 --api-key-env VLLM_KEY --max-concurrency 128
"""

import sys

from rare_hf.cli import main

if __name__ == "__main__":
    sys.exit(main())
