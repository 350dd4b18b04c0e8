-- website_regions is written by the monitor's projection alone, which
-- inserts rows only for regions that exist and websites it has just
-- inserted, and deletes a website's rows with the website (and a region's
-- with the region). the foreign keys checked each row again with a query of
-- their own: a second of the four a replay of 56,000 websites took. they
-- also made a region's removal fail while a website still had a row of it,
-- which the projection then deletes.
alter table website_regions drop constraint if exists website_regions_website_id_fkey;
alter table website_regions drop constraint if exists website_regions_region_fkey;
