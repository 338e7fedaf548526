//! The portal: hand-written HTML, CSS and JavaScript from `graphql/portal/`,
//! embedded in the binary (nothing is fetched from the internet at run
//! time) and served at `/` and `/portal/...`. Its pages use only the public
//! GraphQL API, exactly as a province's own front end would.
//!
//! Every embedded file (also GraphiQL's, see [`crate::server`]) is served
//! by [`embedded`]: a weak ETag from the content's hash, so a revisit
//! costs a `304 Not Modified`; `HEAD` answered; compression is the
//! application's middleware.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{guard, web, HttpRequest, HttpResponse, HttpResponseBuilder};
use sha2::{Digest as _, Sha256};

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

/// The weak ETag of `bytes` (weak: the same file is sent compressed or
/// not).
pub fn etag_of(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    format!("W/\"{}\"", hex::encode(&hash[..12]))
}

/// Whether an `If-None-Match` header names `etag` (weak comparison).
fn matches(req: &HttpRequest, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// Answers a GET or HEAD of an embedded file: 304 when the caller holds
/// it, otherwise the bytes with their ETag. Caches revalidate every use
/// (`no-cache`), so a new binary's files are never stale.
pub fn embedded(
    req: &HttpRequest,
    kind: &str,
    bytes: &'static [u8],
    etag: &str,
    extra: impl FnOnce(&mut HttpResponseBuilder),
) -> HttpResponse {
    let held = matches(req, etag);
    let mut res = if held {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    extra(&mut res);
    if held {
        return res.finish();
    }
    // For a HEAD, the server sends these headers without the body.
    res.content_type(kind).body(bytes)
}

/// The ETags of [`FILES`], in order, then the index page's.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, bytes)| etag_of(bytes))
            .chain([etag_of(INDEX.as_bytes())])
            .collect()
    })
}

async fn index(req: HttpRequest) -> HttpResponse {
    let tag = etags().last().map(String::as_str).unwrap_or_default();
    embedded(
        &req,
        "text/html; charset=utf-8",
        INDEX.as_bytes(),
        tag,
        |res| {
            res.insert_header((header::CONTENT_SECURITY_POLICY, CSP));
        },
    )
}

async fn asset(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let name = path.into_inner();
    match FILES.iter().position(|(n, _, _)| *n == name) {
        Some(i) => {
            let (_, kind, bytes) = FILES[i];
            let tag = etags().get(i).map(String::as_str).unwrap_or_default();
            embedded(&req, kind, bytes, tag, |_| {})
        }
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("no portal file {name:?}\n")),
    }
}

/// GET or HEAD.
pub fn get_or_head() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Registers `/` and `/portal/{file}` (GET and HEAD).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", get_or_head().to(index))
        .route("/portal/{file:.*}", get_or_head().to(asset));
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
