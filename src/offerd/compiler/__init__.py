"""The compiler stage: checked catalog → compiled offer spaces."""
from __future__ import annotations

from dataclasses import dataclass

from ..lang import check_expression
from ..lang.catalog import Catalog
from ..lang.nodes import Expr
from .cache import SpaceCache, default_cache
from .codegen import expression_source
from .space import CompiledSpace, Moment, Outcome, _compile

__all__ = ["CompiledExpression", "CompiledSpace", "Moment", "Outcome", "SpaceCache",
           "compile_expression", "compile_space"]


def compile_space(catalog: Catalog, space: str, cache: SpaceCache | None = None) -> CompiledSpace:
    if space not in catalog.spaces:
        raise KeyError(f"unknown space {space}")
    return (cache or default_cache).get(catalog, space)


@dataclass(frozen=True)
class CompiledExpression:
    """One expression compiled three ways; each takes (contact, context, moment, history)."""

    expr: Expr
    source: str
    _fns: tuple

    def value(self, contact, context, moment: Moment, history):
        return self._fns[0](contact, context, moment, history)

    def truth(self, contact, context, moment: Moment, history) -> bool:
        return self._fns[1](contact, context, moment, history)

    def falsity(self, contact, context, moment: Moment, history) -> bool:
        return self._fns[2](contact, context, moment, history)


def compile_expression(catalog: Catalog, text: str, offer: str | None = None) -> CompiledExpression:
    """Check and compile a lone expression against a catalog (tests, tools, benchmarks)."""
    expr = check_expression(catalog, text, offer)
    consts: dict = {}
    source = expression_source(catalog, expr, consts)
    fns = tuple(_compile(source, consts, "expression", name) for name in ("_value", "_truth", "_falsity"))
    return CompiledExpression(expr, source, fns)
