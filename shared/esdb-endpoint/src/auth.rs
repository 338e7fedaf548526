//! Basic authentication and the one authorization rule: system streams
//! (`$…`, including `$all`) are readable only by an administrator.

use std::sync::Arc;

use base64::Engine;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::config::User;

/// Who is calling.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub name: String,
    pub admin: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Auth {
    users: Arc<Vec<User>>,
}

impl Auth {
    pub fn new(users: Vec<User>) -> Self {
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
        let user = self
            .users
            .iter()
            .find(|u| u.name == name && same(u.password.expose(), password))
            .ok_or_else(|| unauthenticated("invalid user name or password"))?;
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
            status
                .metadata_mut()
                .insert("exception", "access-denied".parse().expect("ascii"));
            return Err(status);
        }
        Ok(())
    }
}

/// Compares without stopping at the first differing byte.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        let auth = Auth::new(vec![User::new("ops", "changeit", true)]);
        let caller = auth.caller(&with_basic("ops", "changeit")).expect("valid");
        assert!(caller.admin);
        assert!(auth.caller(&with_basic("ops", "wrong")).is_err());
        assert!(auth.caller(&MetadataMap::new()).is_err());
    }

    #[test]
    fn only_administrators_read_system_streams() {
        let auth = Auth::new(vec![User::new("reader", "pw", false)]);
        let caller = auth.caller(&with_basic("reader", "pw")).expect("valid");
        assert!(auth.ensure_can_read(&caller, "person-1").is_ok());
        let denied = auth.ensure_can_read(&caller, "$all").expect_err("denied");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    }
}
