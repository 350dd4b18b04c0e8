//! How requests are read. JSON bodies are read as bytes and decoded with
//! serde, so every way a body can be wrong becomes a 400 that says how (and
//! every refused value a 422 that names its field, from the handler); the
//! body's schema in the description comes from the same type through
//! poem-openapi. Query numbers and names parse whatever is well-formed, so
//! the handler can answer an out-of-range value with 422 naming it, and the
//! description still states the bounds. [`Timestamp`] writes times the
//! way the rest of the system does.

use super::error::{ApiError, FieldError};
use chrono::{DateTime, SecondsFormat, Utc};
use events::ValueError;
use poem::error::ReadBodyError;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::{Deserialize, DeserializeOwned, Deserializer};
use std::borrow::Cow;

/// A name as sent: at most 100 characters before trimming too, as the
/// descriptions' `maxLength` says (the value types trim first).
pub fn name_as_sent(raw: &str) -> Result<&str, ValueError> {
    if raw.chars().count() > events::values::MAX_NAME_CHARS {
        return Err(ValueError {
            message: format!("name must be at most {} characters", events::values::MAX_NAME_CHARS),
        });
    }
    Ok(raw)
}

/// Request bodies above this size are refused with 413. A mebibyte is far
/// above what a valid body needs, so a body made large by an oversized
/// field is read and answered with the 422 that names the field.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The media type of every body the API reads and writes.
pub const JSON: &str = "application/json; charset=utf-8";

/// A JSON request body of type `T`: `T`'s poem-openapi schema documents it,
/// serde decodes it (see [`decode`]). The `Content-Type` is not checked: a
/// body is JSON or it is refused with 400, whatever it says it is.
pub struct JsonBody<T>(pub T);

impl<'a, T: Type + DeserializeOwned> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: JSON, schema: T::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        _request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let body = body.take()?;
        Ok(JsonBody(read_json(body).await?))
    }
}

/// Reads (at most [`MAX_BODY_BYTES`] of) a body and decodes it as JSON.
pub async fn read_json<T: DeserializeOwned>(body: poem::Body) -> Result<T, ApiError> {
    let bytes = body.into_bytes_limit(MAX_BODY_BYTES).await.map_err(|e| match e {
        ReadBodyError::PayloadTooLarge => {
            ApiError::PayloadTooLarge(format!("request body is larger than {MAX_BODY_BYTES} bytes"))
        }
        other => ApiError::BadRequest {
            code: "unreadable_body",
            message: format!("request body could not be read: {other}"),
        },
    })?;
    decode(&bytes)
}

/// Decodes a JSON body. Not JSON at all: `malformed_json`; JSON of the
/// wrong shape (missing field, wrong type, null, unknown field):
/// `invalid_body`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            code: "malformed_json",
            message: "request body is empty; expected a JSON object".into(),
        });
    }
    // Every body is an object; serde would also build a struct from an
    // array of its fields in order (`[]` for one whose fields are all
    // optional), which the schema does not allow.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b == b'[') {
        return Err(ApiError::BadRequest {
            code: "invalid_body",
            message: "request body must be a JSON object, not an array".into(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::BadRequest { code: "invalid_body", message: e.to_string() },
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::BadRequest { code: "malformed_json", message: format!("request body is not valid JSON: {e}") }
            }
        }
    })
}

/// For `#[serde(default, deserialize_with = "present")]` on an optional
/// field: absent is `None`, but an explicit `null` is refused (the schema
/// does not allow it, and "null" would be ambiguous between "leave as is"
/// and "clear").
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Collects every refused field of a request, so one 422 names them all.
#[derive(Default)]
pub struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    /// The value, or `None` with `field` refused for the value's reason.
    pub fn field<T>(&mut self, field: &str, value: Result<T, ValueError>) -> Option<T> {
        value.map_err(|e| self.refuse(field, e.message)).ok()
    }

    /// How many refusals so far.
    pub fn count(&self) -> usize {
        self.errors.len()
    }

    pub fn refuse(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError { field: field.to_owned(), message: message.into() });
    }

    /// 422 naming every refused field, if any was.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.errors))
        }
    }
}

/// Parses a path id; anything that is not a UUID names no resource.
pub fn parse_id(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("{what} {raw} does not exist")))
}

/// A whole number in a query string, documented as `MIN..=MAX`. Any
/// integer parses (one beyond 64 bits as out of range), so [`Bounded::check`]
/// answers a value out of range with 422 naming the parameter; anything
/// else (`ten`, `1.5`, empty) is 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: i64, const MAX: i64>(Option<i64>);

impl<const MIN: i64, const MAX: i64> Bounded<MIN, MAX> {
    /// The value if it is within bounds, else a 422 naming `name`.
    pub fn check(self, name: &str) -> Result<i64, ApiError> {
        self.0
            .filter(|v| (MIN..=MAX).contains(v))
            .ok_or_else(|| ApiError::invalid(name, format!("{name} must be a whole number from {MIN} to {MAX}")))
    }
}

impl<const MIN: i64, const MAX: i64> Type for Bounded<MIN, MAX> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        format!("integer_{MIN}_{MAX}").into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            format: Some("int64"),
            // The bounds are small enough to be exact as f64.
            minimum: Some(MIN as f64),
            maximum: Some(MAX as f64),
            ..MetaSchema::new("integer")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl<const MIN: i64, const MAX: i64> ParseFromParameter for Bounded<MIN, MAX> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        let digits = value.strip_prefix('-').unwrap_or(value);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::custom(format!("must be a whole number from {MIN} to {MAX}")));
        }
        Ok(Bounded(value.parse().ok()))
    }
}

/// The pattern of a region name (`events::RegionName::parse`).
pub const REGION_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,31}$";

/// What a string query parameter is documented as: a name for the schema
/// and the schema itself (pattern, lengths).
pub trait Described {
    const NAME: &'static str;
    fn schema() -> MetaSchema;
}

/// A string query parameter documented by `D`'s schema. Any string parses;
/// the handler checks it (422 naming the parameter), so a value refused is
/// refused with the API's own error, and the schema tells clients the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedQuery<D>(pub String, std::marker::PhantomData<D>);

impl<D> DescribedQuery<D> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<D: Described + Send + Sync> Type for DescribedQuery<D> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        D::NAME.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(D::schema()))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl<D: Described + Send + Sync> ParseFromParameter for DescribedQuery<D> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(DescribedQuery(value.to_owned(), std::marker::PhantomData))
    }
}

/// A region name in a query string, documented with its pattern; checked
/// (422) and looked up by the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionPattern;

impl Described for RegionPattern {
    const NAME: &'static str = "region_name";

    fn schema() -> MetaSchema {
        MetaSchema {
            pattern: Some(REGION_PATTERN.to_owned()),
            min_length: Some(1),
            max_length: Some(events::values::MAX_REGION_CHARS),
            ..MetaSchema::new("string")
        }
    }
}

pub type RegionQuery = DescribedQuery<RegionPattern>;

/// A point in time as every response writes it: RFC 3339 in UTC with a
/// `Z` and only the fractional digits it needs, the way serde writes
/// chrono's `DateTime<Utc>` (events, projections), so one instant reads the
/// same from the API as from anywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Timestamp(time)
    }
}

impl Type for Timestamp {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "timestamp".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time")))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ToJSON for Timestamp {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true).into())
    }
}

// Only responses carry timestamps; this completes what `Object` asks.
impl ParseFromJSON for Timestamp {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        let value = value.unwrap_or_default();
        match value.as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(time)) => Ok(Timestamp(time.with_timezone(&Utc))),
            _ => Err(ParseError::expected_type(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_is_written_as_serde_writes_chrono() {
        for raw in ["2026-11-27T17:13:41Z", "2026-11-27T17:13:41.329217Z", "2026-11-27T17:13:41.329217123Z"] {
            let time: DateTime<Utc> = raw.parse().unwrap_or_default();
            assert_eq!(Timestamp(time).to_json(), serde_json::to_value(time).ok(), "{raw}");
        }
    }

    #[test]
    fn an_array_is_refused_where_an_object_of_optional_fields_is_expected() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Changes {
            name: Option<String>,
        }
        assert!(matches!(decode::<Changes>(b" []"), Err(ApiError::BadRequest { code: "invalid_body", .. })));
        assert!(matches!(decode::<Changes>(b"[\"x\"]"), Err(ApiError::BadRequest { code: "invalid_body", .. })));
        assert!(decode::<Changes>(b"{}").is_ok());
    }

    #[test]
    fn a_query_number_out_of_range_parses_and_is_refused_by_check() {
        type Limit = Bounded<1, 10>;
        assert!(Limit::parse_from_parameter("ten").is_err());
        assert!(Limit::parse_from_parameter("").is_err());
        assert!(Limit::parse_from_parameter("1.5").is_err());
        assert!(Limit::parse_from_parameter("5").ok().and_then(|l| l.check("limit").ok()) == Some(5));
        for raw in ["0", "11", "-3", "13804483243886657536"] {
            let parsed = Limit::parse_from_parameter(raw).ok();
            assert!(matches!(parsed.map(|l| l.check("limit")), Some(Err(ApiError::Invalid(_)))), "{raw}");
        }
    }
}
