//! Copies the built dashboard (`web/dist`, made by `npm run build` in
//! `web/`, which `./dev` runs) into OUT_DIR for the api to embed. Without a
//! build, placeholders say how to make one, so the crate still compiles.

use std::path::Path;

const FILES: &[&str] =
    &["index.html", "docs.html", "app.js", "styles.css", "uplot.css", "swagger-ui-bundle.js", "swagger-ui.css"];

fn main() -> std::io::Result<()> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    let out = std::env::var("OUT_DIR").map_err(std::io::Error::other)?;
    for name in FILES {
        let source = dist.join(name);
        println!("cargo:rerun-if-changed={}", source.display());
        let target = Path::new(&out).join(name);
        if source.exists() {
            std::fs::copy(&source, &target)?;
        } else {
            let placeholder = if name.ends_with(".html") {
                "<!doctype html><title>Website monitor</title><p>The dashboard is not built: run <code>./dev up</code> (it builds <code>web/</code> with npm).</p>"
            } else {
                "/* not built: run ./dev up */"
            };
            std::fs::write(&target, placeholder)?;
        }
    }
    println!("cargo:rerun-if-changed=../web/dist");
    Ok(())
}
