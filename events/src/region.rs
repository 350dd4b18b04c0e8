//! The region aggregate: a region exists once added, and names are unique.
//! Uniqueness is also enforced by JetStream (a region's subject must be
//! empty when it is added), so two concurrent adds cannot both win.

use crate::event::{Event, RegionAdded};
use crate::values::RegionName;
use crate::DomainError;

pub fn decide_add(region: RegionName, exists: bool) -> Result<Vec<Event>, DomainError> {
    if exists {
        Err(DomainError::RegionExists(region))
    } else {
        Ok(vec![Event::RegionAdded(RegionAdded { region })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_region_is_added_and_an_existing_one_is_refused() {
        let europe = RegionName::parse("europe").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(decide_add(europe.clone(), false).as_deref(), Ok([Event::RegionAdded(_)])));
        assert_eq!(decide_add(europe.clone(), true), Err(DomainError::RegionExists(europe)));
    }
}
