"""Performance benchmarks of openai-basic: run ``uv run python -m benchmarks`` from the repo root.

See ``benchmarks/README.md`` for what each row measures and its baseline.
"""
