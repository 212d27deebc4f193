"""Analysis: query templates, structured metrics and the pure evaluator; the Prometheus runner."""
