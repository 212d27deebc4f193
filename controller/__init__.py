"""ptc — progressive traffic controller for Kubernetes."""

__version__ = "0.1.0"
