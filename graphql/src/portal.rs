//! The portal: hand-written HTML, CSS and JavaScript from `graphql/portal/`,
//! embedded in the binary (nothing is fetched from the internet at run
//! time) and served at `/` and `/portal/...`. Its pages use only the public
//! GraphQL API, exactly as a province's own front end would.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// Every embedded file: path under `/portal/`, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../portal/app.js"),
    ),
    (
        "services.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../portal/services.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../portal/i18n.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../portal/app.css"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../portal/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../portal/vendor/uPlot.min.css"),
    ),
    (
        "vendor/jsQR.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../portal/vendor/jsQR.js"),
    ),
    (
        "vendor/qrcode.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../portal/vendor/qrcode.js"),
    ),
];

const INDEX: &str = include_str!("../portal/index.html");

/// Only this origin: scripts, styles, connections (HTTP and WebSocket).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self' ws: wss:; media-src 'self' blob:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(INDEX)
}

async fn asset(path: web::Path<String>) -> HttpResponse {
    let name = path.into_inner();
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => HttpResponse::Ok()
            .content_type(*kind)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(*bytes),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("no portal file {name:?}\n")),
    }
}

/// Registers `/` and `/portal/{file}`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/portal/{file:.*}", web::get().to(asset));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_page_loads_only_embedded_files() {
        for src in INDEX
            .split(['"', '\''])
            .filter(|s| s.starts_with("/portal/"))
        {
            let name = &src["/portal/".len()..];
            assert!(
                FILES.iter().any(|(n, _, _)| *n == name),
                "{src} is not embedded"
            );
        }
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
    }
}
