-- the InfluxDB rollups made, per level (its measurement) and slice of the
-- websites: the time the last run was due at. A projector taking the
-- rollups over (after a restart, or from one that stopped) makes up the
-- runs that fell due after it and were not made.
create table rollup_runs (
    measurement text not null,
    slice int not null,
    due_at timestamptz not null,
    primary key (measurement, slice)
);
