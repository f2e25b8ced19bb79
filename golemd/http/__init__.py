"""HTTP inside the daemon's loop (aiohttp): /metrics, the dashboard and its
API, behind a login that golemctl dashboard obtains over the Unix socket.
Imported only when `http` is configured: a daemon without it loads none of
aiohttp or prometheus_client."""
