-- latest check result per (website, region), projected from the checks
-- stream. rows are upserted in batches and only ever move forward in
-- scheduled time, so an out-of-order or re-applied result is harmless.
create table latest_status (
    website_id uuid not null,
    region text not null,
    up boolean not null,
    -- when the check was due; orders results of one (website, region)
    scheduled_at timestamptz not null,
    -- when the check started
    checked_at timestamptz not null,
    response_ms integer,
    status_code integer,
    cause text,
    message text,
    primary key (website_id, region)
);
