//! The API's one error type. Each variant maps to a status code and a JSON
//! body `{"error": code, "message": ..., "field"?: ..., "errors"?: [...]}`;
//! internal causes are logged, never sent.

use events::DomainError;
use poem::error::ResponseError;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use serde::Serialize;

/// One refused field of a request body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the JSON this endpoint takes.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
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
            ApiError::Invalid(_) => "validation_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
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
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let ApiError::Invalid(errors) = self {
            if let Some(first) = errors.first() {
                body["field"] = first.field.clone().into();
            }
            body["errors"] = serde_json::to_value(errors).unwrap_or_default();
        }
        let mut response = poem::web::Json(body).into_response();
        response.set_status(self.status());
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error {
            DomainError::WebsiteNotFound(_) => ApiError::NotFound(message),
            DomainError::WebsiteExists(_) | DomainError::RegionExists(_) => ApiError::Conflict(message),
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

/// Turns poem's own errors (no such route, wrong method, unreadable body)
/// into the same JSON shape.
pub fn from_poem(error: poem::Error) -> Response {
    if let Some(api_error) = error.downcast_ref::<ApiError>() {
        return api_error.as_response();
    }
    let status = error.status();
    let api_error = if status == StatusCode::NOT_FOUND {
        ApiError::NotFound("no such endpoint".into())
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        ApiError::MethodNotAllowed("method not allowed on this endpoint".into())
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(error.to_string())
    } else if status.is_client_error() {
        ApiError::BadRequest { code: "bad_request", message: error.to_string() }
    } else {
        ApiError::Internal(error.to_string())
    };
    api_error.as_response()
}
