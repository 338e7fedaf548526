//! GraphiQL, served from the binary: its page, its start script and the
//! production bundles of GraphiQL and React from `graphql/graphiql/`
//! (versions and licences in `graphql/graphiql/vendor/README.md`).
//! Nothing is fetched from another origin, so it works on a network
//! without internet. Queries POST to `/graphql`; subscriptions use the
//! same `/graphql` over a WebSocket. Off in production unless
//! `graphiql = true` (then every path here is a 404).

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::portal::{embedded, etag_of, get_or_head};
use crate::server::AppState;

/// Every file under `/graphiql/`: path, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "start.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../graphiql/start.js"),
    ),
    (
        "graphiql.css",
        "text/css; charset=utf-8",
        include_bytes!("../graphiql/graphiql.css"),
    ),
    (
        "vendor/graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../graphiql/vendor/graphiql.min.js"),
    ),
    (
        "vendor/graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../graphiql/vendor/graphiql.min.css"),
    ),
    (
        "vendor/react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../graphiql/vendor/react.production.min.js"),
    ),
    (
        "vendor/react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../graphiql/vendor/react-dom.production.min.js"),
    ),
];

const INDEX: &str = include_str!("../graphiql/index.html");

/// Same origin only; GraphiQL's styles are partly inline and its fonts are
/// `data:` URLs.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   font-src 'self' data:; img-src 'self' data: blob:; connect-src 'self' ws: wss:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

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

fn off() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("GraphiQL is off (production mode); set `graphiql = true` to serve it\n")
}

async fn page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if !state.graphiql {
        return off();
    }
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

async fn file(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if !state.graphiql {
        return off();
    }
    let name = path.into_inner();
    match FILES.iter().position(|(n, _, _)| *n == name) {
        Some(i) => {
            let (_, kind, bytes) = FILES[i];
            let tag = etags().get(i).map(String::as_str).unwrap_or_default();
            embedded(&req, kind, bytes, tag, |_| {})
        }
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("no GraphiQL file {name:?}\n")),
    }
}

/// Registers `/graphiql` and `/graphiql/{file}` (GET and HEAD).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/graphiql", get_or_head().to(page))
        .route("/graphiql/{file:.*}", get_or_head().to(file));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graphiql_page_loads_only_embedded_files() {
        let mut seen = 0;
        for src in INDEX
            .split(['"', '\''])
            .filter(|s| s.starts_with("/graphiql/"))
        {
            let name = &src["/graphiql/".len()..];
            assert!(
                FILES.iter().any(|(n, _, _)| *n == name),
                "{src} is not embedded"
            );
            seen += 1;
        }
        assert_eq!(seen, FILES.len(), "every embedded file is used");
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
    }
}
