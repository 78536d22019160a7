-- Several nodes on one database (see the store's leases module). A lease
-- lets one node at a time run a projection or a saga: `owner` holds it
-- until `expires_at` (renewed while it works), and `epoch` grows by one
-- each time a node takes it, which fences the checkpoint commits of an
-- owner that lost it. A lease never held has owner '' and epoch 0.
-- `allframe_nodes` says which nodes are alive, so the runners spread over
-- them.
CREATE TABLE allframe_leases (
    name       TEXT        PRIMARY KEY,
    owner      TEXT        NOT NULL,
    epoch      BIGINT      NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE allframe_nodes (
    node       TEXT        PRIMARY KEY,
    seen_until TIMESTAMPTZ NOT NULL
);
