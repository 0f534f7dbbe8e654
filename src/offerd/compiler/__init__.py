"""The compiler stage: checked catalog → compiled offer spaces."""
from __future__ import annotations

from ..lang.catalog import Catalog
from .cache import SpaceCache, default_cache
from .space import CompiledSpace, Moment, Outcome

__all__ = ["CompiledSpace", "Moment", "Outcome", "SpaceCache", "compile_space"]


def compile_space(catalog: Catalog, space: str, cache: SpaceCache | None = None) -> CompiledSpace:
    if space not in catalog.spaces:
        raise KeyError(f"unknown space {space}")
    return (cache or default_cache).get(catalog, space)
