-- public status pages, projected from StatusPageCreated/Updated/Removed on
-- MONITOR (monitor.status_page.<id>). groups is the page's list as the
-- events carry it; status_page_websites repeats its websites for the
-- question every public route asks: is this website on a page?
create table status_pages (
    id uuid primary key,
    slug text not null unique,
    title text not null,
    description text,
    logo_url text,
    groups jsonb not null default '[]',
    created_at timestamptz not null,
    updated_at timestamptz not null,
    stream_seq bigint not null
);

create table status_page_websites (
    page_id uuid not null references status_pages (id) on delete cascade,
    website_id uuid not null,
    -- the name the public sees, and whether the checked url is shown
    name text not null,
    show_url boolean not null default false,
    primary key (page_id, website_id)
);

create index status_page_websites_by_website on status_page_websites (website_id);

-- visitors mailed about a page's incidents (StatusSubscriberAdded/Confirmed/
-- Removed). the email is personal data: never on a public route. tokens are
-- kept as sha-256 hashes only.
create table status_subscribers (
    id uuid primary key,
    page_id uuid not null,
    email text not null,
    confirm_hash text not null,
    unsubscribe_hash text not null,
    confirmed_at timestamptz,
    created_at timestamptz not null
);

create index status_subscribers_by_page on status_subscribers (page_id, email);
create index status_subscribers_by_confirm on status_subscribers (confirm_hash);
create index status_subscribers_by_unsubscribe on status_subscribers (unsubscribe_hash);

-- the public incident of each website outage: opened by the SiteDown of a
-- website with no region down, closed by the SiteUp of its last region down
-- (id derived from website and start, so a replay makes the same ids).
-- title and status are those of the team's latest update, if any.
create table status_incidents (
    id uuid primary key,
    website_id uuid not null,
    started_at timestamptz not null,
    ended_at timestamptz,
    title text,
    status text,
    updated_at timestamptz not null
);

create index status_incidents_by_website on status_incidents (website_id, started_at desc);

-- the team's updates to an incident (IncidentUpdatePosted), its timeline
create table status_incident_updates (
    id uuid primary key,
    incident_id uuid not null,
    website_id uuid not null,
    status text not null,
    message text not null,
    posted_at timestamptz not null
);

create index status_incident_updates_by_incident on status_incident_updates (incident_id, posted_at);

-- subscriber mails go through the outbox like alerts: 'confirm' (the
-- double opt-in link) and 'status' (an incident of a page's website)
alter table deliveries drop constraint deliveries_kind_check;
alter table deliveries add constraint deliveries_kind_check
    check (kind in ('down', 'up', 'test', 'certificate', 'confirm', 'status'));
