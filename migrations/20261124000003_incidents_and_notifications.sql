-- downtime incidents, projected from SiteDown/SiteUp on the monitor stream:
-- one row per (website, region) outage; ended_at is null while it is open.
create table incidents (
    website_id uuid not null,
    region text not null,
    -- the first failed check of the outage
    started_at timestamptz not null,
    -- the first successful check after it
    ended_at timestamptz,
    duration_seconds bigint,
    cause text,
    status_code integer,
    message text,
    primary key (website_id, region, started_at)
);

create index incidents_by_website on incidents (website_id, started_at desc);

-- the detector's memory per (website, region), written in the same
-- transaction as its position in the checks stream (projection_offsets
-- 'detector'), so a restart neither re-emits nor misses a transition.
create table detector_state (
    website_id uuid not null,
    region text not null,
    state jsonb not null,
    updated_at timestamptz not null,
    primary key (website_id, region)
);

-- websites currently down from at least one region, as the notifier sees
-- them: one email when the first region goes down, one when the last
-- recovers.
create table notification_outages (
    website_id uuid primary key,
    -- regions down now
    regions text[] not null,
    -- every region that was down during this outage
    affected text[] not null,
    started_at timestamptz not null,
    cause text,
    status_code integer,
    message text
);

-- the email outbox: a row per email, keyed by the event that caused it, so
-- a redelivered or replayed event never makes a second one. rows are
-- written with the notifier's stream position and sent afterwards; a failed
-- send is retried with backoff, never dropped.
create table notifications (
    event_id uuid primary key,
    website_id uuid not null,
    kind text not null check (kind in ('down', 'up')),
    recipients text[] not null,
    subject text not null,
    body text not null,
    created_at timestamptz not null,
    sent_at timestamptz,
    attempts integer not null default 0,
    last_error text,
    next_attempt_at timestamptz not null
);

create index notifications_unsent on notifications (next_attempt_at) where sent_at is null;
