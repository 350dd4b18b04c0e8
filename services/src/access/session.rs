//! The dashboard's session: `POST /session {"token"}` checks the token and
//! puts it in an HttpOnly, SameSite=Strict cookie (Secure when the public
//! URL is HTTPS), so no script can read it; `DELETE /session` signs out;
//! `GET /session` says who is signed in. The cookie is then accepted by the
//! access middleware like a bearer token (with an Origin check on changes).

use super::middleware::{client_address, same_origin, session_cookie, Access};
use super::{AuthError, SESSION_COOKIE};
use poem::http::{header, HeaderValue, StatusCode};
use poem::web::{Data, Json};
use poem::{handler, Request, Response};
use serde::Deserialize;
use std::time::Instant;

#[derive(Debug, Deserialize)]
pub struct SignIn {
    token: String,
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder().status(status).content_type("application/json").body(body.to_string())
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
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "forbidden", "message": "cross-site sign-in refused"}),
        );
    }
    let Some(Json(body)) = body else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_body", "message": "the body must be {\"token\": \"...\"}"}),
        );
    };
    let address = client_address(req);
    if let Some(retry_after) = access.limiter().blocked(address, Instant::now()) {
        return super::middleware::too_many(retry_after);
    }
    match access.authenticator().authenticate(body.token.trim()).await {
        Ok(principal) => with_cookie(
            json(StatusCode::OK, serde_json::json!({ "actor": principal.actor, "scope": principal.scope })),
            &cookie(body.token.trim(), access.secure_cookies(), None),
        ),
        Err(AuthError::Unavailable) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "unavailable", "message": "service unavailable"}),
        ),
        Err(_) => {
            let failures = access.limiter().record(address, Instant::now());
            tracing::warn!(client = %address, failures_in_last_minute = failures, "dashboard sign-in failed");
            let message = "this token is not valid (unknown, revoked or expired)";
            json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "unauthorized", "message": message, "field": "token",
                                   "errors": [{"field": "token", "message": message}]}),
            )
        }
    }
}

#[handler]
pub async fn sign_out(access: Data<&Access>) -> Response {
    let mut response = Response::builder().status(StatusCode::NO_CONTENT).finish();
    response = with_cookie(response, &cookie("", access.secure_cookies(), Some(0)));
    response
}

#[handler]
pub async fn current(req: &Request, access: Data<&Access>) -> Response {
    let Some(secret) = session_cookie(req) else {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "unauthorized", "message": "not signed in"}),
        );
    };
    match access.authenticator().authenticate(&secret).await {
        Ok(principal) => {
            json(StatusCode::OK, serde_json::json!({ "actor": principal.actor, "scope": principal.scope }))
        }
        Err(_) => {
            json(StatusCode::UNAUTHORIZED, serde_json::json!({"error": "unauthorized", "message": "not signed in"}))
        }
    }
}
