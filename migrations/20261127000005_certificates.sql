-- the latest certificate expiry seen per website (by the detector, from
-- CheckCompleted.cert_not_after)
create table certificates (
    website_id uuid primary key,
    not_after timestamptz not null,
    seen_at timestamptz not null
);

-- which expiry warnings were announced, per certificate and threshold, so
-- each is announced once
create table certificate_warnings (
    website_id uuid not null,
    not_after timestamptz not null,
    threshold integer not null,
    primary key (website_id, not_after, threshold)
);

alter table deliveries drop constraint deliveries_kind_check;
alter table deliveries add constraint deliveries_kind_check check (kind in ('down', 'up', 'test', 'certificate'));
