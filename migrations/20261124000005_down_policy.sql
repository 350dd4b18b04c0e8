-- when a website checked from several regions counts as down: 'any' region
-- down (the default), a 'majority' of them, or 'all'.
alter table websites add column down_policy text not null default 'any'
    check (down_policy in ('any', 'majority', 'all'));

-- whether the notifier has announced the website's outage (under its down
-- policy a region can be down without the website being down). rows from
-- before were announced when created.
alter table notification_outages add column announced boolean not null default true;
