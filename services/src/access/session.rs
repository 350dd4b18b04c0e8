//! The dashboard's session: `POST /session {"token"}` checks the token and
//! puts it in an HttpOnly, SameSite=Strict cookie (Secure when the public
//! URL is HTTPS), so no script can read it; `DELETE /session` signs out;
//! `GET /session` says who is signed in. The cookie is then accepted by the
//! access middleware like a bearer token (with an Origin check on changes).

use super::middleware::{client_address, same_origin, session_cookie, Access};
use super::{AuthError, Principal, SESSION_COOKIE};
use crate::api::error::ApiError;
use poem::error::ResponseError;
use poem::http::{header, HeaderValue, StatusCode};
use poem::web::{Data, Json};
use poem::{handler, Request, Response};
use serde::Deserialize;
use std::time::Instant;

#[derive(Debug, Deserialize)]
pub struct SignIn {
    token: String,
}

/// Who is signed in: `{"actor", "scope"}`.
fn signed_in(principal: &Principal) -> Response {
    let body = serde_json::json!({ "actor": principal.actor, "scope": principal.scope });
    Response::builder().status(StatusCode::OK).content_type("application/json").body(body.to_string())
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn cookie(value: &str, secure: bool, max_age: Option<u32>) -> String {
    let mut cookie = format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    cookie
}

#[handler]
pub async fn sign_in(req: &Request, access: Data<&Access>, body: Option<Json<SignIn>>) -> Response {
    if req.headers().contains_key(header::ORIGIN) && !same_origin(req) {
        return ApiError::Forbidden("cross-site sign-in refused".into()).as_response();
    }
    let Some(Json(body)) = body else {
        let message = "the body must be {\"token\": \"...\"}".into();
        return ApiError::BadRequest { code: "invalid_body", message }.as_response();
    };
    let address = client_address(req);
    if let Some(retry_after) = access.limiter().blocked(address, Instant::now()) {
        return super::middleware::too_many(retry_after);
    }
    match access.authenticator().authenticate(body.token.trim()).await {
        Ok(principal) => with_cookie(signed_in(&principal), &cookie(body.token.trim(), access.secure_cookies(), None)),
        Err(AuthError::Unavailable) => ApiError::Unavailable("the token store did not answer".into()).as_response(),
        Err(_) => {
            let failures = access.limiter().record(address, Instant::now());
            tracing::warn!(client = %address, failures_in_last_minute = failures, "dashboard sign-in failed");
            let message = "this token is not valid (unknown, revoked or expired)".into();
            ApiError::Unauthorized { message, field: Some("token") }.as_response()
        }
    }
}

#[handler]
pub async fn sign_out(access: Data<&Access>) -> Response {
    let response = Response::builder().status(StatusCode::NO_CONTENT).finish();
    with_cookie(response, &cookie("", access.secure_cookies(), Some(0)))
}

#[handler]
pub async fn current(req: &Request, access: Data<&Access>) -> Response {
    let principal = match session_cookie(req) {
        Some(secret) => access.authenticator().authenticate(&secret).await.ok(),
        None => None,
    };
    match principal {
        Some(principal) => signed_in(&principal),
        None => ApiError::Unauthorized { message: "not signed in".into(), field: None }.as_response(),
    }
}
