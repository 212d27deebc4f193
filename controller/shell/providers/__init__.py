"""Metrics providers behind one protocol: Prometheus, direct pod scraping, per-rollout routing."""
