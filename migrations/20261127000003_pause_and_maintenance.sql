-- paused websites are not checked; their paused intervals (ended_at null
-- while paused) do not count towards uptime
alter table websites add column paused boolean not null default false;

create table website_pauses (
    website_id uuid not null,
    started_at timestamptz not null,
    ended_at timestamptz,
    primary key (website_id, started_at)
);

-- maintenance windows, projected from Maintenance* events on MONITOR:
-- timing is the event's Timing (one-off or recurring), ended the times an
-- occurrence was ended early
create table maintenance_windows (
    id uuid primary key,
    name text not null,
    website_ids uuid[] not null,
    all_websites boolean not null,
    timing jsonb not null,
    ended jsonb not null default '[]',
    created_at timestamptz not null,
    updated_at timestamptz not null,
    stream_seq bigint not null
);

-- an outage that started during a maintenance window of its website
alter table incidents add column in_maintenance boolean not null default false;
