"""`ptc backtest`: replay a rollout step's analysis over a past period from Prometheus."""

from controller.ops.backtest.model import (
    BacktestInputError,
    BacktestResult,
    BacktestSpec,
    make_spec,
    parse_time,
)
from controller.ops.backtest.selectors import Bindings, SelectorError, parse_side

__all__ = [
    "BacktestInputError",
    "BacktestResult",
    "BacktestSpec",
    "Bindings",
    "SelectorError",
    "make_spec",
    "parse_side",
    "parse_time",
]
