"""The compiler stage: checked catalog → compiled offer spaces."""
from __future__ import annotations

from ..lang import check_expression
from ..lang.catalog import Catalog
from ..lang.nodes import Expr
from .cache import SpaceCache, default_cache
from .expressions import expression_source
from .space import CompiledSpace, Moment, Outcome, _compile

__all__ = ["CompiledExpression", "CompiledSpace", "Moment", "Outcome", "SpaceCache",
           "compile_expression", "compile_space"]


def compile_space(catalog: Catalog, space: str, cache: SpaceCache | None = None) -> CompiledSpace:
    if space not in catalog.spaces:
        raise KeyError(f"unknown space {space}")
    return (cache or default_cache).get(catalog, space)


class CompiledExpression:
    """One expression compiled three ways; value, truth and falsity each take (contact,
    context, moment, history) and are the generated functions themselves."""

    def __init__(self, expr: Expr, source: str, fns: tuple):
        self.expr, self.source = expr, source
        self.value, self.truth, self.falsity = fns


def compile_expression(catalog: Catalog, text: str, offer: str | None = None) -> CompiledExpression:
    """Check and compile a lone expression against a catalog (tests, tools, benchmarks)."""
    expr = check_expression(catalog, text, offer)
    consts: dict = {}
    source = expression_source(catalog, expr, consts)
    fns = tuple(_compile(source, consts, "expression", name) for name in ("_value", "_truth", "_falsity"))
    return CompiledExpression(expr, source, fns)
