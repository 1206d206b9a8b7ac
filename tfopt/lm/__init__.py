"""The host side of language models, in one place: export glue (`export.py`: prefill and decode
signatures with a KV cache, checked), generation through the exported file (`generation.py`:
tokenizers, streaming) and the views of LM results (`report.py`: `bench --lm`, `generate`).

The LM export backend is `converters/lm.py`; the device loop (prefill buckets, decode steps,
TTFT and tokens/s) is `tfopt/runtime/lm.py`, which travels to devices alone.
"""
