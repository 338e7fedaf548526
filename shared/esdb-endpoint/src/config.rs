//! Endpoint configuration: where to listen, TLS, users, and the rule that
//! keeps an open endpoint off the network ([`EndpointConfig::protection`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::error::EndpointError;

/// The EventStoreDB default port.
pub const DEFAULT_PORT: u16 = 2113;

/// How the endpoint serves. `EndpointConfig::default()` listens on
/// 127.0.0.1:2113 without TLS and without authentication (like an
/// EventStoreDB node started with `--insecure`); such an endpoint may only
/// listen on a loopback address (see [`EndpointConfig::protection`]).
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
    /// Serve on a non-loopback address even without users or TLS. Off by
    /// default; meant for a private network whose transport is secured
    /// by something else (a service mesh, a VPN).
    pub allow_insecure_remote: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            tls: None,
            users: Vec::new(),
            advertise_host: None,
            allow_insecure_remote: false,
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

    /// How well this configuration protects the log, or why it must not
    /// serve: a non-loopback address needs both users and TLS, unless
    /// [`EndpointConfig::allow_insecure_remote`] is set.
    pub fn protection(&self) -> Result<Protection, EndpointError> {
        let Some(missing) = Missing::of(!self.users.is_empty(), self.tls.is_some()) else {
            return Ok(Protection::Secured);
        };
        if is_loopback(self.listen.ip()) {
            Ok(Protection::LoopbackOnly { missing })
        } else if self.allow_insecure_remote {
            Ok(Protection::InsecureRemote { missing })
        } else {
            Err(EndpointError::Insecure {
                addr: self.listen,
                missing,
            })
        }
    }
}

/// Whether only this machine can reach `ip` (127.0.0.0/8, ::1, and
/// IPv4-mapped loopback). `0.0.0.0` and `::` are every interface, so not.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// What [`EndpointConfig::protection`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// Users and TLS: callers must authenticate over an encrypted channel.
    Secured,
    /// Something is missing, but only this machine can connect.
    LoopbackOnly { missing: Missing },
    /// Something is missing on a reachable address, because the operator
    /// asked for it ([`EndpointConfig::allow_insecure_remote`]).
    InsecureRemote { missing: Missing },
}

/// What an endpoint lacks to be served on a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// No users: every caller is an anonymous administrator.
    Users,
    /// No TLS: passwords and events travel in clear.
    Tls,
    /// Neither.
    UsersAndTls,
}

impl Missing {
    fn of(users: bool, tls: bool) -> Option<Self> {
        match (users, tls) {
            (true, true) => None,
            (false, true) => Some(Self::Users),
            (true, false) => Some(Self::Tls),
            (false, false) => Some(Self::UsersAndTls),
        }
    }

    pub fn users(self) -> bool {
        matches!(self, Self::Users | Self::UsersAndTls)
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Tls | Self::UsersAndTls)
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Users => "no users (every caller would be an anonymous administrator)",
            Self::Tls => "no TLS (passwords and events would travel in clear)",
            Self::UsersAndTls => {
                "no users and no TLS (anyone who can connect would read and write the whole log \
                 as an anonymous administrator, in clear)"
            }
        })
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

    fn secured(addr: &str) -> EndpointConfig {
        EndpointConfig::listening_on(addr.parse().expect("an address"))
            .with_user(User::new("ops", "changeit", true))
            .with_tls(TlsFiles {
                certificate: "cert.pem".into(),
                private_key: "key.pem".into(),
            })
    }

    #[test]
    fn a_non_loopback_address_is_refused_without_users_and_tls() {
        for addr in ["0.0.0.0:2113", "[::]:2113", "192.168.1.20:2113"] {
            let open = EndpointConfig::listening_on(addr.parse().expect("an address"));
            match open.protection() {
                Err(EndpointError::Insecure { missing, .. }) => {
                    assert_eq!(missing, Missing::UsersAndTls, "{addr}")
                }
                other => panic!("{addr}: expected a refusal, got {other:?}"),
            }
            let mut users_only = secured(addr);
            users_only.tls = None;
            assert!(
                matches!(
                    users_only.protection(),
                    Err(EndpointError::Insecure {
                        missing: Missing::Tls,
                        ..
                    })
                ),
                "{addr}: users without TLS"
            );
            let mut tls_only = secured(addr);
            tls_only.users.clear();
            assert!(
                matches!(
                    tls_only.protection(),
                    Err(EndpointError::Insecure {
                        missing: Missing::Users,
                        ..
                    })
                ),
                "{addr}: TLS without users"
            );
            assert_eq!(secured(addr).protection().ok(), Some(Protection::Secured));
        }
    }

    #[test]
    fn the_refusal_says_what_is_missing() {
        let open = EndpointConfig::listening_on("0.0.0.0:2113".parse().expect("an address"));
        let message = open.protection().expect_err("refused").to_string();
        assert!(message.contains("0.0.0.0:2113"), "{message}");
        assert!(message.contains("no users and no TLS"), "{message}");
    }

    #[test]
    fn loopback_may_serve_without_users_or_tls() {
        for addr in [
            "127.0.0.1:2113",
            "127.8.9.10:0",
            "[::1]:2113",
            "[::ffff:127.0.0.1]:2113",
        ] {
            let open = EndpointConfig::listening_on(addr.parse().expect("an address"));
            assert_eq!(
                open.protection().ok(),
                Some(Protection::LoopbackOnly {
                    missing: Missing::UsersAndTls
                }),
                "{addr}"
            );
        }
    }

    #[test]
    fn the_escape_hatch_serves_remotely_and_says_what_is_missing() {
        let mut open = EndpointConfig::listening_on("0.0.0.0:2113".parse().expect("an address"));
        open.allow_insecure_remote = true;
        assert_eq!(
            open.protection().ok(),
            Some(Protection::InsecureRemote {
                missing: Missing::UsersAndTls
            })
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let user = User::new("ops", "changeit", true);
        assert!(!format!("{user:?}").contains("changeit"));
    }
}
