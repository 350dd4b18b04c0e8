-- the postgres projection of the monitor stream: websites, regions and which
-- regions each website is checked from. every row here can be rebuilt from
-- jetstream; nothing writes these tables except the projector.

-- how far each projection has read its stream. a projection's writes and its
-- new position are committed in one transaction, so a crash can neither
-- apply an event twice nor skip one.
create table projection_offsets (
    name text primary key,
    stream_seq bigint not null check (stream_seq >= 0),
    updated_at timestamptz not null default now()
);

create table regions (
    name text primary key,
    -- when the RegionAdded event occurred
    created_at timestamptz not null,
    -- stream sequence of the RegionAdded event
    stream_seq bigint not null
);

create table websites (
    id uuid primary key,
    url text not null,
    name text not null,
    interval_seconds integer not null check (interval_seconds between 10 and 86400),
    timeout_ms integer not null check (timeout_ms > 0),
    notify_emails text[] not null default '{}',
    created_at timestamptz not null,
    updated_at timestamptz not null,
    -- stream sequence of the last event applied to this website: the
    -- expected last subject sequence for the next command on it
    stream_seq bigint not null
);

create index websites_created_at on websites (created_at, id);

create table website_regions (
    website_id uuid not null references websites (id) on delete cascade,
    region text not null references regions (name),
    primary key (website_id, region)
);

create index website_regions_region on website_regions (region, website_id);
