-- what the overview filters and sorts by, kept on the website's row so that
-- a page of 50 out of 100,000 websites is an index scan and not a
-- computation over every website. the projections maintain it: the checks'
-- projection when a result changes a website's status, the monitor's when
-- a website's regions or down policy change (see projections/src/overview.rs).

-- the website's status under its down policy, from the latest check of each
-- of its regions ('pending' while a region has none), and since when.
alter table websites add column status text not null default 'pending'
    check (status in ('up', 'down', 'pending'));
alter table websites add column status_since timestamptz;

-- the order of the default sort: down first, then pending, then up.
alter table websites add column status_rank smallint generated always as (
    case status when 'down' then 0 when 'pending' then 1 else 2 end
) stored;

-- websites projected before this migration: their status from their latest
-- checks, the rule of events::outage::status (once; the projections keep it
-- from now on).
with regional as (
    select w.id, w.down_policy,
           count(wr.region) as regions,
           count(*) filter (where ls.up is false) as down,
           count(*) filter (where wr.region is not null and ls.website_id is null) as pending,
           max(ls.checked_at) as checked_at
    from websites w
    left join website_regions wr on wr.website_id = w.id
    left join latest_status ls on ls.website_id = wr.website_id and ls.region = wr.region
    group by w.id
)
update websites w set
    status = case
        when r.down > 0 and r.down >= case r.down_policy
                when 'majority' then r.regions / 2 + 1
                when 'all' then greatest(r.regions, 1)
                else 1 end then 'down'
        when r.pending > 0 then 'pending'
        else 'up' end,
    status_since = coalesce(r.checked_at, w.created_at)
from regional r
where r.id = w.id;

alter table websites alter column status_since set not null;

-- one index per sort of the overview, each ending in the id so that the
-- cursor of a page (the last row's sort key and id) is unique.
create index websites_by_name on websites (name, id);
create index websites_by_status on websites (status_rank, name, id);
create index websites_by_change on websites (status_since, id);

-- incidents that count towards the last 24 hours (open, or ended since),
-- for the overview's sort by uptime.
create index incidents_by_end on incidents (ended_at);

-- `q` searches name and url, case-insensitive, anywhere in them: a trigram
-- index where pg_trgm is available (debian's postgresql ships it), else a
-- scan (about 30 ms at 100,000 websites). the newline cannot occur in a
-- name or url, so a search never matches across the two.
do $$
begin
    if exists (select 1 from pg_available_extensions where name = 'pg_trgm') then
        create extension if not exists pg_trgm;
        create index websites_search on websites using gin ((name || E'\n' || url) gin_trgm_ops);
    end if;
end
$$;
