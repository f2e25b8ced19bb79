"""A daemon becomes a node of the cluster (golemd.daemon calls this when `node` is set)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golemd.cluster.node import Node, read_secret
from golemd.cluster.router import Router

if TYPE_CHECKING:
    from golemd.server.context import ServerContext


async def join(daemon: ServerContext, store: Any) -> Node:
    """Make this daemon a node of the cluster: the supervisor's invokes and
    ops go through the router, the store's commits are fenced by this
    node's epoch, and the node registers and starts serving its peers."""
    cfg = daemon.config
    assert cfg.node and cfg.node_listen and cfg.cluster_secret_file
    node = Node(daemon, getattr(cfg, "store"), cfg.node, cfg.node_listen,  # noqa: B009
                read_secret(cfg.cluster_secret_file), cfg.lease_timeout)

    def fence(epoch: int) -> None:
        store.fence = (node.name, epoch)

    node.on_epoch = fence
    daemon.supervisor.router = Router(node)
    await node.start()
    return node
