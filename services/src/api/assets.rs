//! The dashboard at `/` and the interactive docs of `/openapi.json` (the
//! description generated in `super::app`) at `/docs`: embedded in the
//! binary (built from `web/` by `./dev`), so they work offline.

use poem::error::ResponseError;
use poem::web::Path;
use poem::{handler, Response};

const INDEX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/index.html"));
const DOCS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/docs.html"));

/// Files under `/assets/`, by name, with their content type.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!(concat!(env!("OUT_DIR"), "/app.js"))),
    ("styles.css", "text/css; charset=utf-8", include_bytes!(concat!(env!("OUT_DIR"), "/styles.css"))),
    ("uplot.css", "text/css; charset=utf-8", include_bytes!(concat!(env!("OUT_DIR"), "/uplot.css"))),
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js")),
    ),
    ("swagger-ui.css", "text/css; charset=utf-8", include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css"))),
    ("docs.js", "text/javascript; charset=utf-8", include_bytes!(concat!(env!("OUT_DIR"), "/docs.js"))),
];

fn file(content_type: &str, body: &'static [u8]) -> Response {
    Response::builder().content_type(content_type).header("cache-control", "no-cache").body(body)
}

#[handler]
pub fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

#[handler]
pub fn docs() -> Response {
    file("text/html; charset=utf-8", DOCS)
}

#[handler]
pub fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, body)) => file(content_type, body),
        None => super::error::ApiError::NotFound(format!("no asset {name}")).as_response(),
    }
}
