//! The gateway's errors. Each says what it becomes at the edge.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// Errors answered before a GraphQL request runs.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 401 `UNAUTHENTICATED`: the bearer token is expired, forged or malformed.
    #[error("{0}")]
    Unauthenticated(String),
    /// 413 `PAYLOAD_TOO_LARGE`: the body exceeds the configured size.
    #[error("request body of {size} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// Size sent (or announced).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// 429 `RATE_LIMITED`: too many requests for this token.
    #[error("rate limit of {per_second} requests per second exceeded for this token; retry in {retry_after_ms} ms")]
    RateLimited {
        /// The configured rate.
        per_second: u32,
        /// When to retry.
        retry_after_ms: u64,
    },
    /// 400 `BAD_REQUEST`: the body is not a GraphQL request.
    #[error("malformed GraphQL request: {0}")]
    BadRequest(String),
    /// 503 `TIMEOUT`: the request took longer than the configured timeout
    /// (time spent waiting for a slot included).
    #[error("request did not finish within {0} ms and was cancelled")]
    Timeout(u64),
    /// 503 `OVERLOADED` with `Retry-After`: more requests are in flight than
    /// the configured cap.
    #[error("the server is busy ({in_flight} requests in flight); retry shortly")]
    Overloaded {
        /// The cap.
        in_flight: usize,
    },
    /// 400 `RESPONSE_TOO_LARGE`: the answer would exceed the configured size.
    #[error("the response of {size} bytes exceeds the limit of {limit} bytes; ask for fewer fields, aliases or a shorter range")]
    ResponseTooLarge {
        /// Size of the answer.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// 415 `UNSUPPORTED_MEDIA_TYPE`: a POST body that is not `application/json`.
    #[error("a POST to /graphql must have `Content-Type: application/json`{}", .0.as_deref().map(|t| format!(", not `{t}`")).unwrap_or_default())]
    UnsupportedMediaType(Option<String>),
    /// 500 `INTERNAL`: a resolver failed unexpectedly (a bug); logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::BodyTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Timeout(_) => "TIMEOUT",
            Self::Overloaded { .. } => "OVERLOADED",
            Self::ResponseTooLarge { .. } => "RESPONSE_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Timeout(_) | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::ResponseTooLarge { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthenticated(_) => {
                res.insert_header(("WWW-Authenticate", "Bearer"));
            }
            Self::RateLimited { retry_after_ms, .. } => {
                res.insert_header((
                    "Retry-After",
                    retry_after_ms.div_ceil(1000).max(1).to_string(),
                ));
            }
            Self::Overloaded { .. } | Self::Timeout(_) => {
                res.insert_header(("Retry-After", "1"));
            }
            _ => {}
        }
        res.json(json!({
            "errors": [{ "message": self.to_string(), "extensions": { "code": self.code() } }]
        }))
    }
}
