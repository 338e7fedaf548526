//! Authentication: a bearer JWT becomes a kernel [`Actor`].
//!
//! Claims: `sub` (person id for citizens, checkpoint id for checkpoints,
//! the enterprise's id in the hub for enterprises, any stable id
//! otherwise), `role` (`citizen`, `checkpoint`, `lab`, `health_official`,
//! `department`, `enterprise`, `auditor`, `admin`), `region` and
//! `sub_regions` for health officials, `name` for labs and departments,
//! `region` for department officials handling applications (the
//! [`Identity`]'s official region), `exp`. Keys: Ed25519 or RSA public keys and JWKS files from the
//! configuration; HS256 with the local development key (`<data>/dev-jwt.key`,
//! created by `serve` on first start) only in development mode.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tongban_kernel::{Actor, ActorId, CheckpointId, DivisionCode, PersonId, Role};

use crate::config::{AuthConfig, Mode, Secret};
use crate::error::GatewayError;

/// The shortest development key accepted (an empty or short key would let
/// anyone sign tokens).
const MIN_DEV_KEY_BYTES: usize = 32;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
const LEEWAY_SECONDS: u64 = 5;

/// The longest lifetime a token may claim (`exp` from now), seconds.
const MAX_LIFETIME_SECONDS: i64 = 31 * 24 * 3600;

/// Where the development key lives in a data directory.
pub fn dev_key_path(data: &Path) -> PathBuf {
    data.join("dev-jwt.key")
}

/// The claims of a Tongban token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// Subject.
    pub sub: String,
    /// Role name.
    pub role: String,
    /// Health official's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Health official's sub-regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_regions: Vec<String>,
    /// Lab or department name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    #[serde(default)]
    pub iat: i64,
}

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::Unauthenticated(msg.into())
}

impl Claims {
    /// The actor these claims describe.
    pub fn actor(&self) -> Result<Actor, GatewayError> {
        let uuid_sub = || {
            uuid::Uuid::parse_str(&self.sub).map_err(|_| {
                bad(format!(
                    "token subject {:?} must be a UUID for role {}",
                    self.sub, self.role
                ))
            })
        };
        let role = match self.role.as_str() {
            "citizen" => Role::Citizen {
                person: PersonId::from_uuid(uuid_sub()?),
            },
            "checkpoint" => Role::Checkpoint {
                checkpoint: CheckpointId::from_uuid(uuid_sub()?),
            },
            "lab" => Role::Lab {
                name: self.name.clone().unwrap_or_else(|| self.sub.clone()),
            },
            "health_official" => {
                let parse = |s: &str| {
                    DivisionCode::parse(s)
                        .map_err(|e| bad(format!("token region {s:?} is not a division code: {e}")))
                };
                let region = self
                    .region
                    .as_deref()
                    .ok_or_else(|| bad("a health_official token needs a `region` claim"))?;
                Role::HealthOfficial {
                    region: parse(region)?,
                    sub_regions: self
                        .sub_regions
                        .iter()
                        .map(|s| parse(s))
                        .collect::<Result<_, _>>()?,
                }
            }
            "department" => Role::Department {
                name: self.name.clone().unwrap_or_else(|| self.sub.clone()),
            },
            "enterprise" => Role::Enterprise {
                enterprise: uuid_sub()?,
            },
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            other => {
                return Err(bad(format!(
                    "token role {other:?} is unknown; roles are citizen, checkpoint, lab, health_official, department, enterprise, auditor, admin"
                )))
            }
        };
        let id = match uuid::Uuid::parse_str(&self.sub) {
            Ok(u) => ActorId::from_uuid(u),
            Err(_) => {
                let digest = Sha256::digest(self.sub.as_bytes());
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                ActorId::from_u128(u128::from_be_bytes(bytes))
            }
        };
        Ok(Actor { id, role })
    }
}

/// A verified caller: the kernel [`Actor`] and, for a department
/// official whose token names a `region`, the region of their authority
/// (the applications domain needs it; the kernel's department role has
/// only a name).
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The actor.
    pub actor: Actor,
    /// A department official's region.
    pub official_region: Option<tongban_cases::graphql::OfficialRegion>,
}

impl Identity {
    /// Puts the actor (and the official's region) into a request's data.
    pub fn insert_into(self, data: &mut async_graphql::Data) {
        data.insert(self.actor);
        if let Some(region) = self.official_region {
            data.insert(region);
        }
    }
}

impl Claims {
    /// The verified caller these claims describe.
    pub fn identity(&self) -> Result<Identity, GatewayError> {
        let actor = self.actor()?;
        let official_region = match (&actor.role, self.region.as_deref()) {
            (Role::Department { .. }, Some(r)) => Some(tongban_cases::graphql::OfficialRegion(
                DivisionCode::parse(r)
                    .map_err(|e| bad(format!("token region {r:?} is not a division code: {e}")))?,
            )),
            _ => None,
        };
        Ok(Identity {
            actor,
            official_region,
        })
    }
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    alg: Algorithm,
}

/// Verifies bearer tokens.
pub struct Verifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    divisions: Option<std::sync::Arc<tongban_kernel::Divisions>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Reads (or, when `create`, creates) the development HS256 key.
pub fn dev_key(data: &Path, create: bool) -> anyhow::Result<Option<Secret>> {
    let path = dev_key_path(data);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(Secret::new(text.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            tongban_store::private_fs::create_dir_all(data).with_context(|| {
                format!("failed to create the data directory {}", data.display())
            })?;
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            let secret = hex::encode(bytes);
            tongban_health_code::graphql::keys::write_secret(&path, &secret).with_context(
                || format!("failed to write the development key {}", path.display()),
            )?;
            Ok(Some(Secret::new(secret)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("failed to read the development key {}", path.display()))
        }
    }
}

impl Verifier {
    /// Builds the verifier from the configuration (and, in development
    /// mode, the development key).
    pub fn new(config: &AuthConfig, mode: Mode, dev: Option<&Secret>) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for path in &config.ed25519_public_keys {
            let pem = std::fs::read(path).with_context(|| {
                format!("failed to read the Ed25519 public key {}", path.display())
            })?;
            keys.push(Key {
                kid: None,
                key: DecodingKey::from_ed_pem(&pem).with_context(|| {
                    format!("{} is not an Ed25519 public key (PEM)", path.display())
                })?,
                alg: Algorithm::EdDSA,
            });
        }
        for path in &config.rsa_public_keys {
            let pem = std::fs::read(path)
                .with_context(|| format!("failed to read the RSA public key {}", path.display()))?;
            keys.push(Key {
                kid: None,
                key: DecodingKey::from_rsa_pem(&pem).with_context(|| {
                    format!("{} is not an RSA public key (PEM)", path.display())
                })?,
                alg: Algorithm::RS256,
            });
        }
        if let Some(path) = &config.jwks_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the JWKS file {}", path.display()))?;
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JWKS document", path.display()))?;
            for jwk in &set.keys {
                let alg = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    _ => anyhow::bail!(
                        "{}: only OKP (Ed25519) and RSA keys are supported",
                        path.display()
                    ),
                };
                keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    key: DecodingKey::from_jwk(jwk)
                        .with_context(|| format!("{}: a key cannot be used", path.display()))?,
                    alg,
                });
            }
        }
        if mode == Mode::Development {
            if let Some(secret) = dev {
                if secret.expose().len() < MIN_DEV_KEY_BYTES {
                    anyhow::bail!(
                        "the development key is {} bytes, at least {MIN_DEV_KEY_BYTES} are needed: \
                         delete {} and start `tongban serve` to create a new one",
                        secret.expose().len(),
                        dev_key_path(Path::new("<data>")).display()
                    );
                }
                keys.push(Key {
                    kid: None,
                    key: DecodingKey::from_secret(secret.expose().as_bytes()),
                    alg: Algorithm::HS256,
                });
            }
        }
        Ok(Self {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            divisions: None,
        })
    }

    /// Also refuses tokens whose regions are not divisions that exist.
    pub fn with_divisions(mut self, divisions: std::sync::Arc<tongban_kernel::Divisions>) -> Self {
        self.divisions = Some(divisions);
        self
    }

    fn check_regions(&self, identity: &Identity) -> Result<(), GatewayError> {
        let Some(divisions) = &self.divisions else {
            return Ok(());
        };
        let regions: Vec<&DivisionCode> = match &identity.actor.role {
            Role::HealthOfficial {
                region,
                sub_regions,
            } => std::iter::once(region).chain(sub_regions).collect(),
            _ => identity.official_region.iter().map(|r| &r.0).collect(),
        };
        for region in regions {
            divisions
                .check(region)
                .map_err(|e| bad(format!("token region {region} does not exist: {e}")))?;
        }
        Ok(())
    }

    /// Verifies an `Authorization` header value.
    pub fn verify_header(&self, header: &str) -> Result<Actor, GatewayError> {
        Ok(self.verify_header_identity(header)?.actor)
    }

    /// Verifies an `Authorization` header value into the full [`Identity`].
    pub fn verify_header_identity(&self, header: &str) -> Result<Identity, GatewayError> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| bad("the Authorization header must be `Bearer <jwt>`"))?;
        self.verify_identity(token.trim())
    }

    /// Verifies a token.
    pub fn verify(&self, token: &str) -> Result<Actor, GatewayError> {
        Ok(self.verify_identity(token)?.actor)
    }

    /// Verifies a token into the full [`Identity`].
    pub fn verify_identity(&self, token: &str) -> Result<Identity, GatewayError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| bad(format!("malformed token: {e}")))?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(bad(format!(
                "tokens signed with {:?} are not accepted here{}",
                header.alg,
                if header.alg == Algorithm::HS256 {
                    " (HS256 only in development mode)"
                } else {
                    ""
                }
            )));
        }
        let mut last = bad("token signature is not valid (forged or signed with another key)");
        for key in candidates {
            let mut validation = Validation::new(key.alg);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "sub"]);
            if let Some(iss) = &self.issuer {
                validation.set_issuer(&[iss]);
            }
            match &self.audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    check_times(&data.claims)?;
                    let identity = data.claims.identity()?;
                    self.check_regions(&identity)?;
                    return Ok(identity);
                }
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(bad("token has expired")),
                        ErrorKind::ImmatureSignature => {
                            return Err(bad("token is not valid yet (`nbf`)"))
                        }
                        ErrorKind::InvalidSignature => {
                            bad("token signature is not valid (forged or signed with another key)")
                        }
                        ErrorKind::InvalidIssuer => {
                            return Err(bad("token issuer is not accepted"))
                        }
                        ErrorKind::InvalidAudience => {
                            return Err(bad("token audience is not accepted"))
                        }
                        ErrorKind::MissingRequiredClaim(c) => {
                            return Err(bad(format!("token lacks the `{c}` claim")))
                        }
                        ErrorKind::Json(e) => {
                            return Err(bad(format!("token claims are malformed: {e}")))
                        }
                        _ => bad(format!("malformed token: {e}")),
                    };
                }
            }
        }
        Err(last)
    }
}

/// Refuses a token issued in the future or claiming a lifetime longer than
/// [`MAX_LIFETIME_SECONDS`] (`exp` and `nbf` are checked by the library).
fn check_times(claims: &Claims) -> Result<(), GatewayError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let leeway = LEEWAY_SECONDS as i64;
    if claims.iat > now + leeway {
        return Err(bad("token is issued in the future (`iat`)"));
    }
    if claims.exp.saturating_sub(now) > MAX_LIFETIME_SECONDS {
        return Err(bad(format!(
            "token lifetime exceeds {} days (`exp`)",
            MAX_LIFETIME_SECONDS / 86_400
        )));
    }
    Ok(())
}

/// Mints a development token (HS256 with the local development key).
pub fn mint_dev(secret: &Secret, claims: &Claims) -> anyhow::Result<String> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .context("failed to sign the token")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: &str, exp: i64) -> Claims {
        Claims {
            sub: uuid::Uuid::now_v7().to_string(),
            role: role.into(),
            region: Some("110106".into()),
            sub_regions: vec![],
            name: None,
            exp,
            iat: 0,
        }
    }

    fn verifier(secret: &Secret, mode: Mode) -> Verifier {
        Verifier::new(&AuthConfig::default(), mode, Some(secret)).unwrap()
    }

    #[test]
    fn a_development_token_verifies_to_its_role() {
        let secret = Secret::new("k".repeat(64));
        let token = mint_dev(&secret, &claims("health_official", soon())).unwrap();
        let actor = verifier(&secret, Mode::Development).verify(&token).unwrap();
        assert_eq!(actor.role_name(), "health_official");
    }

    #[test]
    fn an_enterprise_token_names_its_enterprise_by_subject() {
        let secret = Secret::new("k".repeat(64));
        let mut enterprise = claims("enterprise", soon());
        enterprise.region = None;
        let token = mint_dev(&secret, &enterprise).unwrap();
        let actor = verifier(&secret, Mode::Development).verify(&token).unwrap();
        assert_eq!(
            actor.role,
            Role::Enterprise {
                enterprise: uuid::Uuid::parse_str(&enterprise.sub).unwrap()
            }
        );
        let mut unnamed = claims("enterprise", soon());
        unnamed.sub = "acme".into();
        let err = mint_dev(&secret, &unnamed)
            .map(|t| verifier(&secret, Mode::Development).verify(&t))
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("must be a UUID"), "{err}");
    }

    #[test]
    fn expired_forged_and_malformed_tokens_say_why() {
        let secret = Secret::new("k".repeat(64));
        let v = verifier(&secret, Mode::Development);
        let expired = mint_dev(&secret, &claims("admin", 1000)).unwrap();
        assert!(v
            .verify(&expired)
            .unwrap_err()
            .to_string()
            .contains("expired"));
        let forged = mint_dev(&Secret::new("other"), &claims("admin", soon())).unwrap();
        assert!(v
            .verify(&forged)
            .unwrap_err()
            .to_string()
            .contains("forged"));
        assert!(v
            .verify("not-a-token")
            .unwrap_err()
            .to_string()
            .contains("malformed"));
    }

    fn soon() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp() + 600
    }

    #[test]
    fn tokens_from_the_future_or_for_years_or_not_yet_valid_are_refused() {
        let secret = Secret::new("k".repeat(64));
        let v = verifier(&secret, Mode::Development);
        let mut forever = claims("admin", 1 << 40);
        forever.iat = 0;
        let err = v.verify(&mint_dev(&secret, &forever).unwrap()).unwrap_err();
        assert!(err.to_string().contains("lifetime"), "{err}");
        let mut future = claims("admin", soon());
        future.iat = soon();
        let err = v.verify(&mint_dev(&secret, &future).unwrap()).unwrap_err();
        assert!(err.to_string().contains("future"), "{err}");
        let not_yet = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "role": "admin", "exp": soon(), "nbf": soon() - 60}),
            &EncodingKey::from_secret(secret.expose().as_bytes()),
        )
        .unwrap();
        let err = v.verify(&not_yet).unwrap_err();
        assert!(err.to_string().contains("not valid yet"), "{err}");
    }

    #[test]
    fn a_health_official_of_a_region_that_does_not_exist_is_refused() {
        let secret = Secret::new("k".repeat(64));
        let divisions = std::sync::Arc::new(tongban_kernel::Divisions::load_default().unwrap());
        let v = verifier(&secret, Mode::Development).with_divisions(divisions);
        let mut official = claims("health_official", soon());
        official.region = Some("119999".into());
        let err = v
            .verify(&mint_dev(&secret, &official).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        official.region = Some("110106".into());
        v.verify(&mint_dev(&secret, &official).unwrap()).unwrap();
    }

    #[test]
    fn an_empty_or_short_development_key_is_refused() {
        for short in ["", "abc", &"k".repeat(31)] {
            let err = Verifier::new(
                &AuthConfig::default(),
                Mode::Development,
                Some(&Secret::new(short)),
            )
            .unwrap_err();
            assert!(err.to_string().contains("at least 32"), "{err}");
        }
    }

    #[test]
    fn production_mode_refuses_development_tokens() {
        let secret = Secret::new("k".repeat(64));
        let token = mint_dev(&secret, &claims("admin", soon())).unwrap();
        let err = verifier(&secret, Mode::Production)
            .verify(&token)
            .unwrap_err();
        assert!(err.to_string().contains("development"), "{err}");
    }
}

#[cfg(test)]
mod public_key_tests {
    use super::*;

    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJuB6fO2An/HW++760f8pPvWUOM48LeEB2vcxesdqMr/\n-----END PRIVATE KEY-----\n";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAIB/pzdDkxk6Qg8pCnzTBbVirM5BgPTX3Hiof6ZL0FQs=\n-----END PUBLIC KEY-----\n";

    fn eddsa_token(claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_ed_pem(PRIVATE.as_bytes()).expect("test key");
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key).expect("signs")
    }

    #[test]
    fn ed25519_tokens_from_a_configured_public_key_verify_in_production() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("idp.pem");
        std::fs::write(&path, PUBLIC).expect("write");
        let config = AuthConfig {
            ed25519_public_keys: vec![path],
            ..AuthConfig::default()
        };
        let verifier = Verifier::new(&config, Mode::Production, None).expect("verifier");
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 600;
        let token = eddsa_token(&serde_json::json!({
            "sub": "official-7", "role": "health_official", "region": "110106", "exp": exp
        }));
        let actor = verifier.verify(&token).expect("verifies");
        assert_eq!(actor.role_name(), "health_official");
        let expired = eddsa_token(&serde_json::json!({"sub": "a", "role": "admin", "exp": 1000}));
        assert!(verifier
            .verify(&expired)
            .unwrap_err()
            .to_string()
            .contains("expired"));
    }

    #[test]
    fn a_jwks_file_supplies_keys_by_kid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwks.json");
        // The same public key as a JWK (x = the raw 32 bytes, base64url).
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": "idp-1", "alg": "EdDSA",
            "x": "IB_pzdDkxk6Qg8pCnzTBbVirM5BgPTX3Hiof6ZL0FQs"
        }]});
        std::fs::write(&path, jwks.to_string()).expect("write");
        let config = AuthConfig {
            jwks_file: Some(path),
            ..AuthConfig::default()
        };
        let verifier = Verifier::new(&config, Mode::Production, None).expect("verifier");
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 600;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("idp-1".into());
        let key = EncodingKey::from_ed_pem(PRIVATE.as_bytes()).expect("test key");
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "auditor-1", "role": "auditor", "exp": exp}),
            &key,
        )
        .expect("signs");
        assert_eq!(
            verifier.verify(&token).expect("verifies").role_name(),
            "auditor"
        );
    }
}
