"""The imperative shell: Kubernetes adapter, leader election, reconcilers, daemon, HTTP."""
