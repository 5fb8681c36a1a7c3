"""The bottom layer: what every other package may use and that imports none of them.

Errors shown to users (`core.errors`), the strict config base model and bounded config reading
(`core.config`), the clock (`core.time`) and file digests (`core.digests`). It depends on the
standard library, pydantic and PyYAML only; the layer rules (`[tool.importlinter]` in
pyproject.toml, checked by tests/test_layers.py) keep it that way.
"""
