-- alert channels, projected from ChannelAdded/Updated/Disabled/Removed on
-- MONITOR. `sealed` holds the settings (URLs, tokens, signing secrets)
-- encrypted with the system's secret key; `target` is what people may see.
create table channels (
    id uuid primary key,
    name text not null,
    kind text not null,
    target text not null,
    sealed text not null,
    is_default boolean not null default false,
    enabled boolean not null default true,
    disabled_reason text,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    stream_seq bigint not null
);

alter table websites add column channel_ids uuid[] not null default '{}';

-- the outbox of every channel: a row per (event, channel), written with the
-- notifier's stream position, so a redelivered or replayed transition never
-- makes a second delivery to a channel. channel_id is the nil uuid for a
-- website's own notify_emails (or NOTIFY_DEFAULT_EMAIL).
create table deliveries (
    event_id uuid not null,
    channel_id uuid not null,
    website_id uuid,
    kind text not null check (kind in ('down', 'up', 'test')),
    channel_kind text not null,
    -- what is sent, rendered when planned: email {recipients?, subject,
    -- body}; http channels {body} (the JSON to post); telegram {text}
    message jsonb not null,
    created_at timestamptz not null,
    next_attempt_at timestamptz not null,
    attempts integer not null default 0,
    delivered_at timestamptz,
    -- given up (retried for 24 hours, or the channel is gone or disabled)
    failed_at timestamptz,
    last_status_code integer,
    last_error text,
    primary key (event_id, channel_id)
);

create index deliveries_due on deliveries (next_attempt_at) where delivered_at is null and failed_at is null;
create index deliveries_by_channel on deliveries (channel_id, created_at desc);
create index deliveries_by_website on deliveries (website_id, created_at desc);

-- every attempt of a delivery, for the delivery log
create table delivery_attempts (
    event_id uuid not null,
    channel_id uuid not null,
    attempt integer not null,
    at timestamptz not null,
    status_code integer,
    error text,
    duration_ms integer not null,
    primary key (event_id, channel_id, attempt)
);

insert into deliveries (event_id, channel_id, website_id, kind, channel_kind, message, created_at,
                        next_attempt_at, attempts, delivered_at, last_error)
select event_id, '00000000-0000-0000-0000-000000000000', website_id, kind, 'email',
       jsonb_build_object('recipients', to_jsonb(recipients), 'subject', subject, 'body', body),
       created_at, next_attempt_at, attempts, sent_at, last_error
from notifications;

drop table notifications;

-- what the notifier decided for each SiteDown/SiteUp, to answer "why was I
-- (not) alerted": the website-level verdict under the down policy, and
-- which channels were planned or skipped, and why.
create table alert_decisions (
    event_id uuid primary key,
    website_id uuid not null,
    event_type text not null,
    region text not null,
    occurred_at timestamptz not null,
    down_policy text not null,
    regions_down text[] not null,
    regions_total integer not null,
    -- 'started' (the website went down), 'ended' (it is up again) or
    -- 'unchanged' (the policy's verdict did not change)
    outcome text not null,
    -- why nothing was sent at all, when nothing was
    suppressed text,
    -- [{channel_id, name, kind, planned, reason}]
    channels jsonb not null default '[]'
);

create index alert_decisions_by_website on alert_decisions (website_id, occurred_at desc);

-- the key channel secrets are sealed with when SECRET_KEY is not set
create table secret_keys (
    id integer primary key check (id = 1),
    key bytea not null,
    created_at timestamptz not null
);
