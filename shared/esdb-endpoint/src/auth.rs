//! Basic authentication and the one authorization rule: system streams
//! (`$…`, including `$all`) are readable only by an administrator.
//!
//! Credentials are compared as SHA-256 digests with `subtle`'s
//! constant-time equality, against every configured user, so neither the
//! length of a password nor which names exist shows in the time taken.

use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::config::User;

/// A configured user with the digests its credentials are checked against.
#[derive(Clone, Debug)]
struct Known {
    name: String,
    admin: bool,
    name_digest: [u8; 32],
    password_digest: [u8; 32],
}

/// Who is calling.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub name: String,
    pub admin: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Auth {
    users: Arc<Vec<Known>>,
}

impl Auth {
    pub fn new(users: &[User]) -> Self {
        let users = users
            .iter()
            .map(|u| Known {
                name: u.name.clone(),
                admin: u.admin,
                name_digest: digest(&u.name),
                password_digest: digest(u.password.expose()),
            })
            .collect();
        Self {
            users: Arc::new(users),
        }
    }

    /// The caller named by the `authorization` header. Without configured
    /// users everyone is an anonymous administrator.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        if self.users.is_empty() {
            return Ok(Caller {
                name: "anonymous".into(),
                admin: true,
            });
        }
        let header = metadata
            .get("authorization")
            .ok_or_else(|| unauthenticated("credentials are required"))?
            .to_str()
            .map_err(|_| unauthenticated("the authorization header is not text"))?;
        let encoded = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
            .ok_or_else(|| unauthenticated("only basic authentication is supported"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| unauthenticated("the basic credentials are not base64"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| unauthenticated("the basic credentials are not UTF-8"))?;
        let (name, password) = decoded
            .split_once(':')
            .ok_or_else(|| unauthenticated("the basic credentials lack a ':'"))?;
        let (name, password) = (digest(name), digest(password));
        let mut found = None;
        for user in self.users.iter() {
            let matches = user.name_digest.ct_eq(&name) & user.password_digest.ct_eq(&password);
            if bool::from(matches) && found.is_none() {
                found = Some(user);
            }
        }
        let user = found.ok_or_else(|| unauthenticated("invalid user name or password"))?;
        Ok(Caller {
            name: user.name.clone(),
            admin: user.admin,
        })
    }

    /// Refuses a non-administrator reading a system stream.
    pub fn ensure_can_read(&self, caller: &Caller, stream: &str) -> Result<(), Status> {
        if stream.starts_with('$') && !caller.admin {
            let mut status = Status::permission_denied(format!(
                "access denied: system stream '{stream}' is readable only by an administrator"
            ));
            status.metadata_mut().insert(
                "exception",
                tonic::metadata::MetadataValue::from_static("access-denied"),
            );
            return Err(status);
        }
        Ok(())
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn unauthenticated(why: &str) -> Status {
    Status::unauthenticated(why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_basic(user: &str, password: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        metadata.insert(
            "authorization",
            format!("Basic {token}").parse().expect("ascii"),
        );
        metadata
    }

    #[test]
    fn a_configured_user_with_the_right_password_is_let_in() {
        let auth = Auth::new(&[
            User::new("reader", "pw", false),
            User::new("ops", "changeit", true),
        ]);
        let caller = auth.caller(&with_basic("ops", "changeit")).expect("valid");
        assert!(caller.admin && caller.name == "ops");
        let caller = auth.caller(&with_basic("reader", "pw")).expect("valid");
        assert!(!caller.admin && caller.name == "reader");
        for (user, password) in [
            ("ops", "wrong"),
            ("ops", "changeit "),
            ("ops", "changei"),
            ("ops", "pw"),
            ("reader", "changeit"),
            ("nobody", "changeit"),
            ("", ""),
        ] {
            let refused = auth.caller(&with_basic(user, password)).expect_err(user);
            assert_eq!(
                refused.code(),
                tonic::Code::Unauthenticated,
                "{user}:{password}"
            );
        }
        assert!(auth.caller(&MetadataMap::new()).is_err());
    }

    #[test]
    fn only_administrators_read_system_streams() {
        let auth = Auth::new(&[User::new("reader", "pw", false)]);
        let caller = auth.caller(&with_basic("reader", "pw")).expect("valid");
        assert!(auth.ensure_can_read(&caller, "person-1").is_ok());
        let denied = auth.ensure_can_read(&caller, "$all").expect_err("denied");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    }
}
