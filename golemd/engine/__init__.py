"""The agents' logic without I/O: events in, effects out, time from an injected clock."""
