//! The one place where requests are authenticated and authorised: a poem
//! middleware around the whole API. It passes the [`Principal`] on in the
//! request's extensions, so handlers record it as the actor of the events
//! they publish.

use super::limiter::FailureLimiter;
use super::{is_public, required_scope, AuthError, Authenticator, Principal, SESSION_COOKIE};
use crate::api::error::ApiError;
use events::Actor;
use poem::error::ResponseError;
use poem::http::{header, HeaderValue, Method};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Failed authentications allowed per client address and minute: two a
/// second is nothing against 256-bit secrets (or a 20-character admin
/// token), and room for clients that retry with a stale token.
pub const FAILURES_PER_MINUTE: usize = 120;

#[derive(Clone)]
pub struct Access {
    auth: Arc<Authenticator>,
    limiter: Arc<FailureLimiter>,
    secure_cookies: bool,
}

impl Access {
    /// `secure_cookies`: the dashboard is served over HTTPS (`PUBLIC_URL`),
    /// so its session cookie is marked Secure.
    pub fn new(auth: Authenticator, secure_cookies: bool) -> Self {
        Self {
            auth: Arc::new(auth),
            limiter: Arc::new(FailureLimiter::new(FAILURES_PER_MINUTE, Duration::from_secs(60))),
            secure_cookies,
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    pub fn limiter(&self) -> &FailureLimiter {
        &self.limiter
    }

    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }
}

impl<E: Endpoint> Middleware<E> for Access {
    type Output = AccessEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        AccessEndpoint { inner, access: self.clone() }
    }
}

pub struct AccessEndpoint<E> {
    inner: E,
    access: Access,
}

/// Where the caller's secret came from.
enum Credential {
    Bearer(String),
    Cookie(String),
}

impl<E: Endpoint> Endpoint for AccessEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let request_id = request_id(&req);
        req.extensions_mut().insert(Caller { actor: Actor::Unknown, request_id });
        let mut response = self.check(req).await?;
        if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
            response.headers_mut().insert("x-request-id", value);
        }
        Ok(response)
    }
}

impl<E: Endpoint> AccessEndpoint<E> {
    async fn check(&self, mut req: Request) -> poem::Result<Response> {
        if is_public(req.uri().path()) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        // No credential, or one that is not a bearer token, guesses
        // nothing: always 401, never counted or blocked.
        let credential = match credential(&req) {
            Ok(Some(credential)) => credential,
            Ok(None) => return Ok(unauthorized(&AuthError::Missing)),
            Err(e) => return Ok(unauthorized(&e)),
        };
        let address = client_address(&req);
        if let Some(retry_after) = self.access.limiter.blocked(address, Instant::now()) {
            return Ok(too_many(retry_after));
        }
        let secret = match &credential {
            Credential::Bearer(secret) | Credential::Cookie(secret) => secret.as_str(),
        };
        let principal = match self.access.auth.authenticate(secret).await {
            Ok(principal) => principal,
            Err(AuthError::Unavailable) => {
                return Ok(ApiError::Unavailable("the token store did not answer".into()).as_response())
            }
            Err(e) => {
                let failures = self.access.limiter.record(address, Instant::now());
                tracing::warn!(client = %address, failures_in_last_minute = failures, path = req.uri().path(), "authentication failed");
                return Ok(unauthorized(&e));
            }
        };
        let needed = required_scope(req.method(), req.uri().path());
        if !principal.scope.allows(needed) {
            let message = format!("this needs a token with scope {needed}; this token has {}", principal.scope);
            return Ok(ApiError::Forbidden(message).as_response());
        }
        if let Credential::Cookie(secret) = &credential {
            if changes_state(req.method()) && !same_origin(&req) {
                let message = "cross-site request refused (Origin does not match)";
                return Ok(ApiError::Forbidden(message.into()).as_response());
            }
            // Handlers see one kind of credential, whichever the caller used.
            if let Ok(value) = HeaderValue::from_str(&format!("Bearer {secret}")) {
                req.headers_mut().insert(header::AUTHORIZATION, value);
            }
        }
        if let Some(caller) = req.extensions_mut().get_mut::<Caller>() {
            caller.actor = principal.actor.clone();
        }
        req.extensions_mut().insert(principal);
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// Who is calling and which request this is: what handlers record on the
/// events they publish (the actor, and the request id as correlation id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: Actor,
    pub request_id: Uuid,
}

/// The client's `X-Request-Id` if it is a UUID, else a new one.
fn request_id(req: &Request) -> Uuid {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
        .unwrap_or_else(Uuid::now_v7)
}

/// The client's address: the peer's, or, when the peer is a reverse proxy
/// on this machine (loopback), the address that proxy reports (the last
/// `X-Forwarded-For` entry, else `X-Real-IP`), so clients behind the proxy
/// are counted apart. Requests without a peer (in-process) share one bucket.
pub fn client_address(req: &Request) -> IpAddr {
    let peer = req.remote_addr().as_socket_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if !peer.is_loopback() {
        return peer;
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let forwarded = header("x-forwarded-for").and_then(|list| list.rsplit(',').next()).or_else(|| header("x-real-ip"));
    forwarded.and_then(|ip| ip.trim().parse().ok()).unwrap_or(peer)
}

fn credential(req: &Request) -> Result<Option<Credential>, AuthError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, secret) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        let secret = secret.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || secret.is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(Some(Credential::Bearer(secret.to_owned())));
    }
    Ok(session_cookie(req).map(Credential::Cookie))
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(req: &Request) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The browser's `Origin` names this server's host. Browsers send it on
/// every state-changing fetch; a request without one did not come from a
/// page and is refused too (SameSite=Strict already keeps cookies off
/// cross-site requests; this is the second lock).
pub fn same_origin(req: &Request) -> bool {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
        }
        _ => false,
    }
}

fn unauthorized(why: &AuthError) -> Response {
    let mut response = ApiError::Unauthorized { message: why.to_string(), field: None }.as_response();
    let challenge = match why {
        AuthError::Malformed | AuthError::Invalid => r#"Bearer realm="website-monitor", error="invalid_token""#,
        _ => r#"Bearer realm="website-monitor""#,
    };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

pub fn too_many(retry_after: Duration) -> Response {
    let message = "too many failed authentications from this address; try again later";
    let mut response = ApiError::TooManyRequests(message.into()).as_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The principal the middleware let through (tests and handlers).
pub fn principal(req: &Request) -> Option<&Principal> {
    req.extensions().get::<Principal>()
}
