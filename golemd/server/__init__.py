"""The Unix socket: binding, access, connections, one handler per operation."""
