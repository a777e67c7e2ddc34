"""The benchmarks behind the README's performance table: ``uv run python -m tests.benchmarks``.

docs/performance.md says what each row measures, its baseline and its target.
"""
