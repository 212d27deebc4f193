"""Operator tools: the CLI, status views, report, backtest and the demo."""
