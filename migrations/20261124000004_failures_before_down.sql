-- consecutive failed checks that confirm an outage of this website; null
-- means the detector's default (DETECTOR_DOWN_AFTER).
alter table websites add column failures_before_down integer
    check (failures_before_down between 1 and 10);
