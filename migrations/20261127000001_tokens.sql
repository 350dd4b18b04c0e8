-- api tokens, projected from TokenCreated/TokenRevoked on the monitor stream.
-- only the sha-256 of a token's secret exists anywhere: the secret is shown
-- once, when the token is created, and never stored.
create table tokens (
    id uuid primary key,
    name text not null,
    scope text not null check (scope in ('read', 'write', 'admin')),
    -- lowercase hex sha-256 of the secret; the api looks tokens up by it
    secret_hash text not null unique,
    created_at timestamptz not null,
    expires_at timestamptz,
    revoked_at timestamptz,
    -- stream sequence of the token's last event
    stream_seq bigint not null
);
