//! Endpoint configuration: where to listen, TLS, users.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::error::EndpointError;

/// The EventStoreDB default port.
pub const DEFAULT_PORT: u16 = 2113;

/// How the endpoint serves. `EndpointConfig::default()` listens on
/// 127.0.0.1:2113 without TLS and without authentication (like an
/// EventStoreDB node started with `--insecure`).
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub listen: SocketAddr,
    /// Serve TLS with this certificate and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Users allowed in with HTTP basic authentication. Empty: no
    /// authentication, every caller is an administrator.
    pub users: Vec<User>,
    /// Host name announced through gossip (default: the listen address).
    pub advertise_host: Option<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            tls: None,
            users: Vec::new(),
            advertise_host: None,
        }
    }
}

impl EndpointConfig {
    /// Listens on `addr` (port 0 picks a free port, see
    /// [`crate::Endpoint::local_addr`]).
    pub fn listening_on(addr: SocketAddr) -> Self {
        Self {
            listen: addr,
            ..Self::default()
        }
    }

    pub fn with_user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// A user of the endpoint.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: Secret,
    /// Administrators may read system streams (`$…`, `$all`).
    pub admin: bool,
}

impl User {
    pub fn new(name: impl Into<String>, password: impl Into<String>, admin: bool) -> Self {
        Self {
            name: name.into(),
            password: Secret(password.into()),
            admin,
        }
    }

    /// Parses `name:password` or `name:password:admin` (the form of the
    /// `TONGBAN_ESDB_USERS` variable, comma-separated).
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        let invalid = |rule: &str| EndpointError::Config {
            field: "users".into(),
            rule: rule.into(),
        };
        let mut parts = text.splitn(3, ':');
        let name = parts.next().unwrap_or_default();
        let password = parts
            .next()
            .ok_or_else(|| invalid("a user is written name:password[:admin]"))?;
        let admin = match parts.next() {
            None => false,
            Some("admin") => true,
            Some(_) => return Err(invalid("the third part of a user can only be 'admin'")),
        };
        if name.is_empty() || password.is_empty() {
            return Err(invalid("a user needs a non-empty name and password"));
        }
        Ok(Self::new(name, password, admin))
    }

    /// Parses a comma-separated list of users.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, EndpointError> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Self::parse)
            .collect()
    }
}

/// A password that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_from_name_password_and_an_optional_admin_flag() {
        let users = User::parse_list("ops:changeit:admin, reader:pw").expect("valid users");
        assert_eq!(users.len(), 2);
        assert!(users[0].admin && users[0].name == "ops");
        assert!(!users[1].admin && users[1].password.expose() == "pw");
        assert!(User::parse("nopassword").is_err());
        assert!(User::parse("a:b:root").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let user = User::new("ops", "changeit", true);
        assert!(!format!("{user:?}").contains("changeit"));
    }
}
