-- how each website is checked (events::check::CheckSpec; '{}' is a GET, up
-- on 2xx/3xx, redirects followed, certificates verified)
alter table websites add column check_spec jsonb not null default '{}';
