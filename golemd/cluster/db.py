"""The cluster's tables and every statement on them (PostgreSQL, psycopg 3).

cluster_nodes: one row per node name: its peer address, its epoch (bumped at
each registration and when another node declares it dead) and the time its
leases expire (PostgreSQL's clock, so that no two machines' clocks are
compared). cluster_leases: one row per agent that has had an owner: the
owning node and the epoch it owned it under (a lease is valid while that is
the node's current epoch and the node has not expired), and a fencing token
bumped at every change of owner.

All methods are blocking and run on the node's one database thread
(golemd.cluster.node), on a connection of their own in autocommit mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_nodes (
    name text PRIMARY KEY,
    address text NOT NULL,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS cluster_leases (
    agent_id text PRIMARY KEY,
    node text,
    node_epoch bigint NOT NULL DEFAULT 0,
    token bigint NOT NULL DEFAULT 0,
    acquired_at timestamptz
);
CREATE INDEX IF NOT EXISTS cluster_leases_node ON cluster_leases (node, node_epoch);
CREATE OR REPLACE FUNCTION golemd_fence(n text, e bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM cluster_nodes WHERE name = n AND epoch = e AND expires_at > clock_timestamp() FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'node % no longer holds its leases under epoch %', n, e USING ERRCODE = 'GD001';
    END IF;
END $$;
"""

# golemd_fence(name, epoch) is the check every commit of a node's store
# makes, in its own transaction, sent with its COMMIT: the node's row must
# still carry its epoch and not have expired, else it raises (SQLSTATE
# GD001) and the transaction is rolled back. FOR SHARE: a node declaring it
# dead (mark_dead's UPDATE) waits for that commit to end.

# A lease row is current while its node's epoch is the one it was taken
# under. Expiry alone does not free it: the node must be declared dead
# first (mark_dead), which waits for a commit of it in flight.
_CURRENT = "EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.name = l.node AND n.epoch = l.node_epoch)"


_SCHEMA_LOCK = 0x676F6C656D01


@dataclass(frozen=True, slots=True)
class Owner:
    node: str
    epoch: int
    address: str
    token: int
    alive: bool  # its node's row has its epoch and has not expired
    current: bool  # the lease was taken under the node's current epoch


class ClusterDB:
    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = self._connect()
        with self.conn.transaction():  # nodes starting together must not race on CREATE
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            self.conn.execute(SCHEMA)

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, application_name="golemd-cluster", connect_timeout=5)

    def reconnect(self) -> None:
        """After PostgreSQL restarted: a new connection (these statements are
        each their own transaction, so nothing was half done)."""
        try:
            self.conn.close()
        finally:
            self.conn = self._connect()

    def close(self) -> None:
        self.conn.close()

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        return self.conn.execute(sql, params).fetchone()

    # -- this node ---------------------------------------------------------------------

    def register(self, name: str, address: str, timeout: float) -> int:
        """This node (re)starts: a new epoch, which fences off any earlier
        process of the same name and every lease taken under it."""
        row = self._one(
            "INSERT INTO cluster_nodes (name, address, epoch, expires_at) "
            "VALUES (%s, %s, 1, clock_timestamp() + make_interval(secs => %s)) "
            "ON CONFLICT (name) DO UPDATE SET address = EXCLUDED.address, epoch = cluster_nodes.epoch + 1, "
            "expires_at = EXCLUDED.expires_at, started_at = clock_timestamp() RETURNING epoch",
            (name, address, timeout))
        assert row is not None
        return int(row[0])

    def renew(self, name: str, epoch: int, timeout: float) -> bool:
        """Extend every lease of this node at once; False if it was declared dead."""
        row = self._one("UPDATE cluster_nodes SET expires_at = clock_timestamp() + make_interval(secs => %s) "
                        "WHERE name = %s AND epoch = %s RETURNING 1", (timeout, name, epoch))
        return row is not None

    def leave(self, name: str, epoch: int) -> None:
        """A clean stop: its leases end now, its agents go to whoever asks next."""
        with self.conn.transaction():
            self.conn.execute("UPDATE cluster_leases SET node = NULL WHERE node = %s AND node_epoch = %s",
                              (name, epoch))
            self.conn.execute("UPDATE cluster_nodes SET expires_at = clock_timestamp(), epoch = epoch + 1 "
                              "WHERE name = %s AND epoch = %s", (name, epoch))

    # -- owners -----------------------------------------------------------------------

    def owner(self, agent_id: str) -> Owner | None:
        row = self._one(
            "SELECT l.node, l.node_epoch, n.address, l.token, n.expires_at > clock_timestamp(), "
            "n.epoch = l.node_epoch FROM cluster_leases l JOIN cluster_nodes n ON n.name = l.node "
            "WHERE l.agent_id = %s", (agent_id,))
        if row is None:
            return None
        return Owner(row[0], int(row[1]), row[2], int(row[3]), bool(row[4]) and bool(row[5]), bool(row[5]))

    def mark_dead(self, node: str, epoch: int) -> bool:
        """Declare `node` dead if it has expired under `epoch`: its epoch is
        bumped, so it can commit nothing more (this waits for a commit of it
        in flight: golemd_fence's row lock). True if this call did it."""
        row = self._one("UPDATE cluster_nodes SET epoch = epoch + 1 WHERE name = %s AND epoch = %s "
                        "AND expires_at <= clock_timestamp() RETURNING 1", (node, epoch))
        return row is not None

    def claim(self, agent_id: str, node: str, epoch: int) -> int | None:
        """Own `agent_id` if no node's current epoch does: its new fencing
        token, or None (another node owns it; if that one has expired,
        mark_dead it first)."""
        row = self._one(
            "INSERT INTO cluster_leases AS l (agent_id, node, node_epoch, token, acquired_at) "
            "VALUES (%s, %s, %s, 1, clock_timestamp()) ON CONFLICT (agent_id) DO UPDATE "
            "SET node = EXCLUDED.node, node_epoch = EXCLUDED.node_epoch, token = l.token + 1, "
            f"acquired_at = clock_timestamp() WHERE l.node IS NULL OR NOT {_CURRENT} "
            "RETURNING token", (agent_id, node, epoch))
        return int(row[0]) if row is not None else None

    # -- failover ---------------------------------------------------------------------

    def expired_nodes(self, me: str) -> list[tuple[str, int]]:
        """Nodes whose leases have run out, with the epoch they ran under."""
        rows = self.conn.execute("SELECT name, epoch FROM cluster_nodes WHERE name <> %s "
                                 "AND expires_at <= clock_timestamp()", (me,)).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def orphans(self, limit: int = 1000) -> list[str]:
        """Agents whose lease is not current (their node died or left): those
        with unfinished invocations first, which must run somewhere; idle
        ones too, so that every agent has a node that lists it."""
        rows = self.conn.execute(
            f"SELECT l.agent_id FROM cluster_leases l WHERE (l.node IS NULL OR NOT {_CURRENT}) "
            "ORDER BY NOT EXISTS (SELECT 1 FROM invocations i WHERE i.agent_id = l.agent_id "
            "AND i.status IN ('pending', 'scheduled', 'running')) LIMIT %s", (limit,)).fetchall()
        return [r[0] for r in rows]

    def nodes(self) -> list[dict[str, Any]]:
        """Every node with its health and agent count (daemon status)."""
        rows = self.conn.execute(
            "SELECT n.name, n.address, n.epoch, extract(epoch FROM n.expires_at - clock_timestamp()), "
            "(SELECT count(*) FROM cluster_leases l WHERE l.node = n.name AND l.node_epoch = n.epoch) "
            "FROM cluster_nodes n ORDER BY n.name").fetchall()
        return [{"node": r[0], "address": r[1], "epoch": int(r[2]), "lease_left": float(r[3]),
                 "alive": float(r[3]) > 0, "agents": int(r[4])} for r in rows]
