-- indexes a replay sets aside while it fills their table row by row, and
-- builds again in one go once it is done (or when a reader starts after a
-- replay was cut short): for each, the statements that make it again (its
-- definition, then its columns' statistics targets).
create table deferred_indexes (
    name text primary key,
    statements text[] not null
);
