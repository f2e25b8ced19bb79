"""The asyncio side of the engine: agents' queues run against real workers, the store and timers."""
