"""More than one machine (DESIGN.md §7): golemd nodes on one PostgreSQL.

- db.py: the nodes and leases tables, and every statement on them.
- node.py: this node's life in the cluster: registration, lease renewal,
  taking over the agents of dead nodes, dropping those it lost.
- peer.py: nodes talking to each other over TCP (the client protocol, after
  a handshake proving both sides hold the cluster secret).
- router.py: which node serves a request: this one, or the owner it is
  forwarded to.

Ownership is fenced per node: a node's leases are valid while its row in
cluster_nodes holds the epoch it registered with and has not expired, and
every commit of the store checks that in the same transaction
(`SELECT ... FOR SHARE`). Taking a dead node's agents first bumps its epoch
(an UPDATE of that row), which waits for any commit of it in flight and
makes every later one fail: a node paused past its lease can never write
again under the old epoch. docs/cluster.md has the whole argument.
"""
