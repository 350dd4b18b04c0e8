//! The API's one error type. Each variant maps to a status code and a JSON
//! body `{"error": code, "message": ..., "field"?: ..., "errors"?: [...]}`;
//! internal causes are logged, never sent. [`from_poem`] is the one place
//! where errors raised outside the handlers (by poem's router, or by
//! poem-openapi while parsing a parameter) get the same shape, and every
//! 405 an `Allow` header.

use events::DomainError;
use poem::error::ResponseError;
use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{IntoResponse, Response};
use poem_openapi::error::{ParseParamError, ParsePathError};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use serde::Serialize;

/// One refused field of a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Object)]
pub struct FieldError {
    /// The body field or query parameter.
    pub field: String,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Object)]
#[oai(rename = "Error")]
pub struct ErrorBody {
    /// `malformed_json`, `invalid_body`, `unreadable_body`, `bad_request`
    /// (400), `not_found` (404), `method_not_allowed` (405), `conflict`
    /// (409), `payload_too_large` (413), `validation_failed` (422),
    /// `unavailable` (503), `internal` (500).
    pub error: String,
    pub message: String,
    /// The first refused field (422, and 400 for a query parameter).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every refused field (422).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the JSON this endpoint takes.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// A query parameter is not of its type.
    #[error("{message}")]
    BadParameter { field: String, message: String },
    /// The body is well-formed but some values are not acceptable.
    #[error("{}", .0.first().map(|e| e.message.as_str()).unwrap_or("invalid request"))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// No usable credentials; `field` names the body field that carried
    /// them, when one did (the dashboard's sign-in form).
    #[error("{message}")]
    Unauthorized { message: String, field: Option<&'static str> },
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// A server the API depends on failed; the cause is logged.
    #[error("service unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError { field: field.to_owned(), message: message.into() }])
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::BadParameter { .. } => "bad_request",
            ApiError::Invalid(_) => "validation_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let mut body =
            ErrorBody { error: self.code().to_owned(), message: self.to_string(), field: None, errors: None };
        match self {
            ApiError::Invalid(errors) => {
                body.field = errors.first().map(|e| e.field.clone());
                body.errors = Some(errors.clone());
            }
            ApiError::BadParameter { field, .. } => body.field = Some(field.clone()),
            ApiError::Unauthorized { message, field: Some(field) } => {
                body.field = Some((*field).to_owned());
                body.errors = Some(vec![FieldError { field: (*field).to_owned(), message: message.clone() }]);
            }
            _ => {}
        }
        body
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        match self {
            ApiError::Unavailable(cause) => tracing::error!(cause, "dependency failed"),
            ApiError::Internal(cause) => tracing::error!(cause, "internal error"),
            _ => {}
        }
        let mut response = poem::web::Json(self.body()).into_response();
        response.set_status(self.status());
        response
    }
}

/// The error responses an operation can give, by bit: its description
/// lists exactly those (500 is left out: it is a bug, never an answer).
const DOCUMENTED: &[(u8, u16, &str)] = &[
    (BAD_REQUEST, 400, "The body is not JSON or not of the documented shape, or a parameter is not of its type"),
    (NOT_FOUND, 404, "No such resource (website, region, ...)"),
    (CONFLICT, 409, "Conflicts with the current state (exists already, still in use, or changed concurrently; retry)"),
    (TOO_LARGE, 413, "The body is larger than 1 MiB"),
    (INVALID, 422, "Some values are not acceptable; `errors` names every refused field"),
    (UNAVAILABLE, 503, "A server the API depends on is unavailable"),
];
pub const BAD_REQUEST: u8 = 1;
pub const NOT_FOUND: u8 = 2;
pub const CONFLICT: u8 = 4;
pub const TOO_LARGE: u8 = 8;
pub const INVALID: u8 = 16;
pub const UNAVAILABLE: u8 = 32;
/// An operation that reads a JSON body.
pub const BODY: u8 = BAD_REQUEST | TOO_LARGE | INVALID;

/// An [`ApiError`] answered by an operation that documents the error
/// responses in `STATUSES` (a set of the bits above). Handlers use `?` on
/// any error that converts into an `ApiError`.
#[derive(Debug)]
pub struct Refusal<const STATUSES: u8>(pub ApiError);

impl<E: Into<ApiError>, const STATUSES: u8> From<E> for Refusal<STATUSES> {
    fn from(error: E) -> Self {
        Refusal(error.into())
    }
}

impl<const STATUSES: u8> From<Refusal<STATUSES>> for poem::Error {
    fn from(refusal: Refusal<STATUSES>) -> Self {
        refusal.0.into()
    }
}

impl<const STATUSES: u8> ApiResponse for Refusal<STATUSES> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .filter(|(bit, _, _)| STATUSES & bit != 0)
                .map(|(_, status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType { content_type: super::body::JSON, schema: ErrorBody::schema_ref() }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error {
            DomainError::WebsiteNotFound(_) | DomainError::RegionNotFound(_) => ApiError::NotFound(message),
            DomainError::WebsiteExists(_)
            | DomainError::RegionExists(_)
            | DomainError::LastRegion(_)
            | DomainError::RegionInUse { .. }
            | DomainError::NoRegionToResume(_) => ApiError::Conflict(message),
            DomainError::UnknownRegions(_) | DomainError::NoRegions => ApiError::invalid("regions", message),
        }
    }
}

impl From<projections::Error> for ApiError {
    fn from(error: projections::Error) -> Self {
        ApiError::Unavailable(format!("postgres projection: {error}"))
    }
}

impl From<crate::bus::BusError> for ApiError {
    fn from(error: crate::bus::BusError) -> Self {
        match error {
            crate::bus::BusError::Conflict => ApiError::Conflict("the resource was changed concurrently; retry".into()),
            other => ApiError::Unavailable(format!("event bus: {other}")),
        }
    }
}

/// Turns errors raised outside the handlers into the same JSON shape: no
/// such route, wrong method, a query parameter poem-openapi could not parse
/// (400 naming it), a path id that is not a UUID (404: it names nothing).
pub fn from_poem(error: poem::Error) -> Response {
    if let Some(api_error) = error.downcast_ref::<ApiError>() {
        return api_error.as_response();
    }
    let api_error = if let Some(param) = error.downcast_ref::<ParseParamError>() {
        ApiError::BadParameter { field: param.name.to_owned(), message: param_message(param) }
    } else if error.is::<ParsePathError>() {
        ApiError::NotFound("no such resource".into())
    } else {
        let status = error.status();
        if status == StatusCode::NOT_FOUND {
            ApiError::NotFound("no such endpoint".into())
        } else if status == StatusCode::METHOD_NOT_ALLOWED {
            ApiError::MethodNotAllowed("method not allowed on this endpoint".into())
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(error.to_string())
        } else if status.is_client_error() {
            ApiError::BadRequest { code: "bad_request", message: error.to_string() }
        } else {
            ApiError::Internal(error.to_string())
        }
    };
    api_error.as_response()
}

/// "limit must be ..." from poem-openapi's `failed to parse "integer_1_10000":
/// must be ... (occurred while parsing "optional_integer_1_10000")`: the
/// reason without the names of Rust types.
fn param_message(error: &ParseParamError) -> String {
    let reason = error.reason.as_str();
    let reason = match reason.strip_prefix("failed to parse \"").and_then(|rest| rest.split_once("\": ")) {
        Some((_, rest)) => rest,
        None => reason,
    };
    let reason = reason.split(" (occurred while parsing").next().unwrap_or(reason);
    format!("{} {}", error.name, reason)
}

/// The methods each route answers, to say so in `Allow` on a 405 (RFC 9110
/// §15.5.6). Paths are OpenAPI templates (`/websites/{id}`).
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    /// Each route's template, its segments and its methods.
    routes: Vec<(String, Vec<String>, Vec<Method>)>,
}

impl Allowed {
    /// Every operation of an OpenAPI description.
    pub fn from_spec(spec: &serde_json::Value) -> Self {
        let mut allowed = Allowed::default();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, item) in paths {
                let methods = item
                    .as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                    .collect();
                allowed.add(path, methods);
            }
        }
        allowed
    }

    pub fn add(&mut self, path: &str, mut methods: Vec<Method>) {
        // poem answers HEAD wherever it answers GET.
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        self.routes.push((path.to_owned(), segments(path).map(str::to_owned).collect(), methods));
    }

    /// The template of the route a request path is on (`/websites/{id}`),
    /// if any; a route spelled out wins over one with a parameter there.
    pub fn template(&self, path: &str) -> Option<&str> {
        self.matching(path).map(|(template, _)| template)
    }

    fn matching(&self, path: &str) -> Option<(&str, &[Method])> {
        let wanted: Vec<&str> = segments(path).collect();
        let matches = |pattern: &Vec<String>| {
            pattern.len() == wanted.len()
                && pattern.iter().zip(&wanted).all(|(p, w)| p == w || (p.starts_with('{') && p.ends_with('}')))
        };
        // Fewest parameters first: `/monitor/summary` before `/monitor/{id}`.
        self.routes
            .iter()
            .filter(|(_, pattern, _)| matches(pattern))
            .min_by_key(|(_, pattern, _)| pattern.iter().filter(|p| p.starts_with('{')).count())
            .map(|(template, _, methods)| (template.as_str(), methods.as_slice()))
    }

    /// The `Allow` value for a request path, if it is a route.
    pub fn header(&self, path: &str) -> Option<HeaderValue> {
        let (_, methods) = self.matching(path)?;
        HeaderValue::from_str(&methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")).ok()
    }

    /// Adds `Allow` to a 405.
    pub fn complete(&self, path: &str, mut response: Response) -> Response {
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            if let Some(allow) = self.header(path) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
        }
        response
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_error_names_the_parameter_and_no_rust_type() {
        let error = ParseParamError {
            name: "limit",
            reason: "failed to parse \"integer_1_10000\": must be a whole number from 1 to 10000 (occurred while parsing \"optional_integer_1_10000\")".into(),
        };
        assert_eq!(param_message(&error), "limit must be a whole number from 1 to 10000");
    }

    #[test]
    fn allow_lists_the_methods_of_the_matching_route_with_head_for_get() {
        let spec = serde_json::json!({ "paths": {
            "/websites": { "get": {}, "post": {} },
            "/websites/{id}": { "get": {}, "patch": {}, "delete": {} },
        }});
        let mut allowed = Allowed::from_spec(&spec);
        allowed.add("/", vec![Method::GET]);
        let methods = |path: &str| {
            let mut m: Vec<String> = allowed
                .header(path)
                .and_then(|h| h.to_str().ok().map(str::to_owned))
                .unwrap_or_default()
                .split(", ")
                .map(str::to_owned)
                .collect();
            m.sort();
            m.join(" ")
        };
        assert_eq!(methods("/websites"), "GET HEAD POST");
        assert_eq!(methods("/websites/abc"), "DELETE GET HEAD PATCH");
        assert_eq!(methods("/"), "GET HEAD");
        assert!(allowed.header("/nothing").is_none());
    }
}
