//! Request bodies: read as bytes and decoded with serde, so every way a body
//! can be wrong becomes a 400 that says how.

use super::error::ApiError;
use poem::error::ReadBodyError;
use poem::Body;
use serde::de::DeserializeOwned;

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads (at most [`MAX_BODY_BYTES`] of) a body and decodes it as JSON.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
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
/// wrong shape (missing field, wrong type, unknown field): `invalid_body`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            code: "malformed_json",
            message: "request body is empty; expected a JSON object".into(),
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

/// Parses a path id; anything that is not a UUID names no resource.
pub fn parse_id(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("{what} {raw} does not exist")))
}
