//! `Authorization` headers through the gateway's token verifier, in
//! development mode with a development key. The first byte chooses:
//! - 0: the rest is the header value as sent;
//! - 1: the rest is the claims JSON, signed here (HS256, development key)
//!   so that claim parsing and the role rules behind a valid signature are
//!   reached; `SOON` in it becomes a near-future and `PAST` a past Unix
//!   time, so seeds stay valid whenever they run;
//! - 2: the rest is `header JSON \0 claims JSON`, signed here.
//!
//! Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use tongban_graphql::auth::Verifier;
use tongban_graphql::config::{AuthConfig, Mode, Secret};

const DEV_KEY: &str = "fuzzing-development-key-0123456789abcdef";

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        Verifier::new(
            &AuthConfig::default(),
            Mode::Development,
            Some(&Secret::new(DEV_KEY)),
        )
        .expect("a development verifier")
    })
}

fn signed(header: &[u8], claims: &[u8]) -> Option<String> {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(DEV_KEY.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).ok()?;
    Some(format!("Bearer {message}.{signature}"))
}

fn with_times(claims: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    claims
        .replace("SOON", &(now + 600).to_string())
        .replace("PAST", &(now - 600).to_string())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let header = match mode % 3 {
        0 => match std::str::from_utf8(rest) {
            Ok(h) => h.to_owned(),
            Err(_) => return,
        },
        1 => {
            let claims = with_times(&String::from_utf8_lossy(rest));
            match signed(br#"{"alg":"HS256","typ":"JWT"}"#, claims.as_bytes()) {
                Some(h) => h,
                None => return,
            }
        }
        _ => {
            let mut parts = rest.splitn(2, |b| *b == 0);
            let head = parts.next().unwrap_or_default();
            let claims = with_times(&String::from_utf8_lossy(parts.next().unwrap_or_default()));
            match signed(head, claims.as_bytes()) {
                Some(h) => h,
                None => return,
            }
        }
    };
    if let Ok(identity) = verifier().verify_header_identity(&header) {
        assert!(!identity.actor.role_name().is_empty());
    }
});
