"""Pure Alertmanager routing: matchers, payload parsing, routes to rollouts."""
