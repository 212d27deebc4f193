"""Pure analysis: query templates, the evaluator and its statistics."""
