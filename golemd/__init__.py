"""golemd: durable, isolated, sequential Python agents on one machine."""

from golemd.sdk import agent, timeout

__version__ = "0.1.0"
__all__ = ["agent", "timeout", "__version__"]
