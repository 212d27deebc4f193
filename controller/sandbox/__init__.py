"""In-process Kubernetes API subset, workload simulator, simulated zai-proxy pods and traffic."""
