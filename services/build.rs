//! Copies the built dashboard (`web/dist`, made by `npm run build` in
//! `web/`, which `./dev` runs) into OUT_DIR for the api to embed. Without a
//! build, placeholders say how to make one, so the crate still compiles.
//!
//! Cargo reruns this script when a file's time changes; a copy is written
//! only when its content differs, so the files the api embeds keep their
//! times when a rebuild of the dashboard produced the same content.

use std::path::Path;

const FILES: &[&str] = &[
    "index.html",
    "docs.html",
    "app.js",
    "styles.css",
    "uplot.css",
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "docs.js",
];

fn main() -> std::io::Result<()> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    let out = std::env::var("OUT_DIR").map_err(std::io::Error::other)?;
    for name in FILES {
        // Only the files embedded: other files in web/dist (such as the
        // build's stamp) must not make cargo rerun this script.
        let source = dist.join(name);
        println!("cargo:rerun-if-changed={}", source.display());
        let content = match std::fs::read(&source) {
            Ok(content) => content,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => placeholder(name).into_bytes(),
            Err(e) => return Err(e),
        };
        let target = Path::new(&out).join(name);
        if std::fs::read(&target).ok().as_deref() != Some(content.as_slice()) {
            std::fs::write(&target, content)?;
        }
    }
    Ok(())
}

fn placeholder(name: &str) -> String {
    if name.ends_with(".html") {
        "<!doctype html><title>Website monitor</title><p>The dashboard is not built: run <code>./dev up</code> (it builds <code>web/</code> with npm).</p>".into()
    } else {
        "/* not built: run ./dev up */".into()
    }
}
