//! Paged lists (`/monitor`, `/websites`): the query parameters they share,
//! their opaque cursor and the `Link` header that carries it.
//!
//! The body of a page stays the JSON array clients read; the next page's
//! address comes in `Link: <...>; rel="next"` (RFC 8288), only when there is
//! one, with every parameter of the request and the cursor. The cursor is
//! the base64url of the last row's sort key ([`Key`]): a cursor that does not
//! decode, or belongs to another sort, is a 400 naming `cursor`; a `limit`
//! out of 1..500 is a 422 naming `limit`. Without `limit` a page holds up to
//! 500, so a client that knows nothing of paging gets everything of a small
//! system and a `Link` beyond.

use super::body::{Bounded, Described, DescribedQuery, RegionQuery, Validation};
use super::error::ApiError;
use super::ApiState;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use events::outage;
use poem_openapi::payload::Json;
use poem_openapi::registry::MetaSchema;
use poem_openapi::types::ToJSON;
use poem_openapi::ApiResponse;
use projections::overview::{self, Entry, Filter, Key, Sort};

/// The most a page holds, and what it holds without `limit`.
pub const MAX_LIMIT: i64 = 500;

/// `limit` as sent: 1 to 500.
pub type Limit = Bounded<1, MAX_LIMIT>;

/// The longest `q`.
const MAX_SEARCH: usize = 200;

/// A page of a list, the next page's address in `Link`.
#[derive(ApiResponse)]
pub enum Page<T: ToJSON + Send + Sync> {
    /// One page. When there is more, `Link` holds the next page's address
    /// (`<...>; rel="next"`, relative to this one).
    #[oai(status = 200)]
    Ok(Json<Vec<T>>, #[oai(header = "Link")] Option<String>),
}

macro_rules! described_string {
    ($(#[$doc:meta])* $type:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $type;

        impl Described for $type {
            const NAME: &'static str = $name;

            fn schema() -> MetaSchema {
                $schema
            }
        }
    };
}

described_string!(
    /// An opaque cursor, as given in a `Link` header.
    CursorText,
    "cursor",
    MetaSchema {
        pattern: Some("^[A-Za-z0-9_-]+$".to_owned()),
        min_length: Some(1),
        max_length: Some(1024),
        ..MetaSchema::new("string")
    }
);

described_string!(
    /// A status to filter by.
    StatusName,
    "status_filter",
    MetaSchema {
        enum_items: ["up", "down", "pending", "paused"].into_iter().map(Into::into).collect(),
        ..MetaSchema::new("string")
    }
);

described_string!(
    /// A sort order.
    SortName,
    "sort",
    MetaSchema {
        enum_items: Sort::ALL.into_iter().map(|s| s.as_str().into()).collect(),
        ..MetaSchema::new("string")
    }
);

described_string!(
    /// Text to search for.
    SearchText,
    "search",
    MetaSchema {
        pattern: Some(r"^[^\x00-\x1f\x7f-\x9f]*$".to_owned()),
        max_length: Some(MAX_SEARCH),
        ..MetaSchema::new("string")
    }
);

pub type CursorQuery = DescribedQuery<CursorText>;
pub type StatusQuery = DescribedQuery<StatusName>;
pub type SortQuery = DescribedQuery<SortName>;
pub type SearchQuery = DescribedQuery<SearchText>;

/// The parameters of a list request, as sent.
pub struct ListQuery<'a> {
    pub limit: Option<Limit>,
    pub cursor: Option<&'a str>,
    pub status: Option<&'a str>,
    pub region: Option<&'a RegionQuery>,
    pub q: Option<&'a str>,
    pub sort: Option<&'a str>,
}

/// A checked list request.
pub struct Listing {
    pub filter: Filter,
    pub sort: Sort,
    pub after: Option<Key>,
    pub limit: i64,
    /// Always false: every filter can match something.
    pub nothing: bool,
    /// The query string of the next page, without the cursor.
    carried: Vec<(&'static str, String)>,
}

impl Listing {
    /// Checks the parameters: 422 naming every value out of its rule, then
    /// 400 naming `cursor` if it is not one of this sort's.
    pub async fn parse(state: &ApiState, raw: ListQuery<'_>, default_sort: Sort) -> Result<Listing, ApiError> {
        let mut check = Validation::default();
        let mut carried = Vec::new();
        let limit = match raw.limit {
            None => MAX_LIMIT,
            Some(limit) => match limit.check("limit") {
                Ok(limit) => {
                    carried.push(("limit", limit.to_string()));
                    limit
                }
                Err(ApiError::Invalid(errors)) => {
                    errors.into_iter().for_each(|e| check.refuse(&e.field, e.message));
                    MAX_LIMIT
                }
                Err(other) => return Err(other),
            },
        };
        let (mut status, mut paused, nothing) = (None, false, false);
        if let Some(raw_status) = raw.status {
            match raw_status {
                "paused" => paused = true,
                other => match other.parse::<outage::Status>() {
                    Ok(parsed) => status = Some(parsed),
                    Err(_) => check.refuse("status", "status must be up, down, pending or paused"),
                },
            }
            carried.push(("status", raw_status.to_owned()));
        }
        let sort = match raw.sort {
            None => default_sort,
            Some(name) => {
                carried.push(("sort", name.to_owned()));
                Sort::parse(name).unwrap_or_else(|| {
                    let names: Vec<&str> = Sort::ALL.iter().map(|s| s.as_str()).collect();
                    check.refuse("sort", format!("sort must be one of {}", names.join(", ")));
                    default_sort
                })
            }
        };
        let text = match raw.q {
            Some(q) if q.chars().count() > MAX_SEARCH || q.chars().any(char::is_control) => {
                check.refuse("q", format!("q must be at most {MAX_SEARCH} characters without control characters"));
                None
            }
            Some(q) => {
                carried.push(("q", q.to_owned()));
                Some(q.to_owned())
            }
            None => None,
        };
        let region = match super::monitor::parse_region(state, raw.region.map(|r| r.as_str())).await {
            Ok(region) => region,
            Err(ApiError::Invalid(errors)) => {
                errors.into_iter().for_each(|e| check.refuse(&e.field, e.message));
                None
            }
            Err(other) => return Err(other),
        };
        if let Some(region) = &region {
            carried.push(("region", region.to_string()));
        }
        check.finish()?;
        let after = raw.cursor.map(|cursor| decode_cursor(cursor, sort)).transpose()?;
        Ok(Listing { filter: Filter { status, paused, region, text }, sort, after, limit, nothing, carried })
    }

    /// The page, and the `Link` of the next one if there is more.
    pub async fn fetch(&self, state: &ApiState, path: &str) -> Result<(Vec<Entry>, Option<String>), ApiError> {
        if self.nothing {
            return Ok((Vec::new(), None));
        }
        // One more than asked says whether there is a next page.
        let mut entries =
            overview::page(&state.pool, &self.filter, self.sort, self.after.as_ref(), self.limit + 1).await?;
        let more = entries.len() as i64 > self.limit;
        entries.truncate(usize::try_from(self.limit).unwrap_or(usize::MAX));
        let link = match entries.last() {
            Some(last) if more => Some(self.next_link(path, &last.key(self.sort))),
            _ => None,
        };
        Ok((entries, link))
    }

    fn next_link(&self, path: &str, key: &Key) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.carried {
            query.append_pair(name, value);
        }
        query.append_pair("cursor", &encode_cursor(key));
        format!("<{path}?{}>; rel=\"next\"", query.finish())
    }
}

/// The cursor of a page ending at `key`.
pub fn encode_cursor(key: &Key) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

/// The key a cursor stands for, if it is one of `sort`'s (400 otherwise).
pub fn decode_cursor(cursor: &str, sort: Sort) -> Result<Key, ApiError> {
    let refused = |why: &str| ApiError::BadParameter {
        field: "cursor".into(),
        message: format!("cursor {why}; use the one from the Link header of the previous page"),
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refused("is not a cursor of this list"))?;
    let key: Key = serde_json::from_slice(&bytes).map_err(|_| refused("is not a cursor of this list"))?;
    if key.sort() != sort {
        return Err(refused(&format!("belongs to sort={}, not sort={}", key.sort().as_str(), sort.as_str())));
    }
    if let Key::Uptime24h { uptime, .. } = key {
        if !uptime.is_finite() {
            return Err(refused("is not a cursor of this list"));
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_cursor_decodes_to_its_key_under_its_own_sort_only() {
        let key = Key::Status { rank: 0, name: "shop".into(), id: Uuid::now_v7() };
        let cursor = encode_cursor(&key);
        assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(decode_cursor(&cursor, Sort::Status).ok(), Some(key));
        assert!(matches!(decode_cursor(&cursor, Sort::Name), Err(ApiError::BadParameter { .. })));
        for bad in ["", "abc", "!!", &URL_SAFE_NO_PAD.encode(b"{\"sort\":\"name\"}")] {
            assert!(matches!(decode_cursor(bad, Sort::Name), Err(ApiError::BadParameter { .. })), "{bad}");
        }
    }
}
