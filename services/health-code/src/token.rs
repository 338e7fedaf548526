//! Signed code tokens: COSE_Sign1 over a CBOR payload (as the EU Digital
//! COVID Certificate), signed with a region's Ed25519 key.
//!
//! A code token holds the code id, colour, issuing region, issued-at, a short
//! expiry and optionally the time of the latest negative test — no name and
//! no ID number. The protected header names the algorithm (EdDSA) and the key
//! id; a verifier needs only the [`KeyDirectory`] of public keys, so
//! checkpoints verify offline. Keys rotate: a region signs with its newest
//! key while older public keys stay in the directory until retired.
//! Checkpoints also hold a signed *place code* ([`PlaceClaims`]) that people
//! scan. For QR codes, tokens are written as `HC1:` + Base45.

use coset::cbor::value::Value;
use coset::{
    iana, CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use time::OffsetDateTime;
use tongban_kernel::{CheckpointId, DivisionCode};
use uuid::Uuid;

use crate::error::HealthCodeError;
use crate::types::Colour;

/// Prefix of the text form of a code token.
pub const CODE_PREFIX: &str = "HC1:";
/// Prefix of the text form of a place code.
pub const PLACE_PREFIX: &str = "HP1:";

/// A region's signing key. `Debug` never shows the secret.
pub struct RegionKey {
    kid: String,
    region: DivisionCode,
    signing: SigningKey,
}

impl fmt::Debug for RegionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionKey")
            .field("kid", &self.kid)
            .field("region", &self.region)
            .finish()
    }
}

impl RegionKey {
    /// A fresh random key for `region`.
    pub fn generate(region: DivisionCode) -> Self {
        Self::from_signing(region, SigningKey::generate(&mut OsRng))
    }

    /// A key from a 32-byte seed (tests, demos, keys loaded from a secret store).
    pub fn from_seed(region: DivisionCode, seed: [u8; 32]) -> Self {
        Self::from_signing(region, SigningKey::from_bytes(&seed))
    }

    fn from_signing(region: DivisionCode, signing: SigningKey) -> Self {
        let digest = Sha256::digest(signing.verifying_key().as_bytes());
        let kid = format!("{region}-{}", hex::encode(&digest[..8]));
        Self {
            kid,
            region,
            signing,
        }
    }

    /// The key id (`<region>-<first 8 bytes of SHA-256 of the public key, hex>`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The region the key signs for.
    pub fn region(&self) -> DivisionCode {
        self.region
    }

    /// The public half, for the directory.
    pub fn published(&self) -> PublishedKey {
        PublishedKey {
            kid: self.kid.clone(),
            region: self.region,
            public_key: hex::encode(self.signing.verifying_key().as_bytes()),
            retired_at: None,
        }
    }

    fn sign_payload(&self, payload: Vec<u8>) -> Result<Vec<u8>, HealthCodeError> {
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::EdDSA)
            .key_id(self.kid.clone().into_bytes())
            .build();
        CoseSign1Builder::new()
            .protected(protected)
            .payload(payload)
            .create_signature(b"", |bytes| self.signing.sign(bytes).to_bytes().to_vec())
            .build()
            .to_tagged_vec()
            .map_err(|e| {
                HealthCodeError::TokenMalformed(format!("failed to encode COSE_Sign1: {e}"))
            })
    }
}

/// A public key in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    /// Key id.
    pub kid: String,
    /// The region it signs for.
    pub region: DivisionCode,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Tokens issued after this instant are not accepted.
    pub retired_at: Option<OffsetDateTime>,
}

/// The directory of regions' public keys (what the national platform publishes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyDirectory {
    keys: BTreeMap<String, PublishedKey>,
}

impl KeyDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a key.
    pub fn publish(&mut self, key: PublishedKey) {
        self.keys.insert(key.kid.clone(), key);
    }

    /// Retires a key: tokens it issued after `at` are rejected.
    pub fn retire(&mut self, kid: &str, at: OffsetDateTime) {
        if let Some(k) = self.keys.get_mut(kid) {
            k.retired_at = Some(at);
        }
    }

    /// A key by id.
    pub fn get(&self, kid: &str) -> Option<&PublishedKey> {
        self.keys.get(kid)
    }

    /// Verifies a COSE_Sign1 and returns its payload and the key that signed it.
    fn verify(&self, bytes: &[u8]) -> Result<(Vec<u8>, &PublishedKey), HealthCodeError> {
        let sign1 = CoseSign1::from_tagged_slice(bytes)
            .or_else(|_| CoseSign1::from_slice(bytes))
            .map_err(|e| HealthCodeError::TokenMalformed(format!("not a COSE_Sign1: {e}")))?;
        if sign1.protected.header.alg != Some(coset::Algorithm::Assigned(iana::Algorithm::EdDSA)) {
            return Err(HealthCodeError::TokenMalformed(
                "algorithm must be EdDSA".into(),
            ));
        }
        let kid = String::from_utf8_lossy(&sign1.protected.header.key_id).into_owned();
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| HealthCodeError::TokenUnknownKey(kid.clone()))?;
        let public = hex::decode(&key.public_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| HealthCodeError::TokenUnknownKey(kid.clone()))?;
        sign1.verify_signature(b"", |sig, data| {
            let sig = Signature::from_slice(sig).map_err(|_| HealthCodeError::TokenForged)?;
            public
                .verify_strict(data, &sig)
                .map_err(|_| HealthCodeError::TokenForged)
        })?;
        let payload = sign1
            .payload
            .ok_or_else(|| HealthCodeError::TokenMalformed("no payload".into()))?;
        Ok((payload, key))
    }
}

/// A region's keys: the active one signs; rotated ones remain for verification.
#[derive(Debug)]
pub struct RegionSigner {
    active: RegionKey,
    previous: Vec<String>,
}

impl RegionSigner {
    /// A signer with `key` active.
    pub fn new(key: RegionKey) -> Self {
        Self {
            active: key,
            previous: Vec::new(),
        }
    }

    /// The active key.
    pub fn active(&self) -> &RegionKey {
        &self.active
    }

    /// Rotates to `next`; returns the new public key to publish. The old key
    /// stays valid in directories for tokens it already issued.
    pub fn rotate(&mut self, next: RegionKey) -> PublishedKey {
        let old = std::mem::replace(&mut self.active, next);
        self.previous.push(old.kid);
        self.active.published()
    }

    /// Key ids used before the active one.
    pub fn previous_kids(&self) -> &[String] {
        &self.previous
    }
}

/// What a code token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeClaims {
    /// The code id (links to the person only inside the issuing region).
    pub code_id: Uuid,
    /// The colour.
    pub colour: Colour,
    /// The issuing region.
    pub region: DivisionCode,
    /// Issued at (whole seconds).
    pub issued_at: OffsetDateTime,
    /// Expires at (whole seconds).
    pub expires_at: OffsetDateTime,
    /// Sample time of the latest negative nucleic-acid test, if any.
    pub negative_test_at: Option<OffsetDateTime>,
}

/// What a venue's place code says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceClaims {
    /// The checkpoint.
    pub checkpoint_id: CheckpointId,
    /// Where it is.
    pub place: DivisionCode,
    /// Issued at.
    pub issued_at: OffsetDateTime,
}

fn int(v: i64) -> Value {
    Value::Integer(v.into())
}

fn get(map: &[(Value, Value)], key: i64) -> Option<&Value> {
    map.iter().find(|(k, _)| *k == int(key)).map(|(_, v)| v)
}

fn as_i64(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Integer(i)) => i64::try_from(*i).ok(),
        _ => None,
    }
}

fn as_text(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::Text(t)) => Some(t.as_str()),
        _ => None,
    }
}

fn encode(map: Vec<(Value, Value)>) -> Result<Vec<u8>, HealthCodeError> {
    let mut out = Vec::new();
    coset::cbor::ser::into_writer(&Value::Map(map), &mut out)
        .map_err(|e| HealthCodeError::TokenMalformed(format!("failed to encode CBOR: {e}")))?;
    Ok(out)
}

fn decode(payload: &[u8]) -> Result<Vec<(Value, Value)>, HealthCodeError> {
    match coset::cbor::de::from_reader::<Value, _>(payload) {
        Ok(Value::Map(m)) => Ok(m),
        _ => Err(HealthCodeError::TokenMalformed(
            "payload is not a CBOR map".into(),
        )),
    }
}

fn time_of(field: &str, v: Option<&Value>) -> Result<OffsetDateTime, HealthCodeError> {
    as_i64(v)
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| HealthCodeError::TokenMalformed(format!("missing or bad `{field}`")))
}

const KIND: i64 = 0;

/// Signs a code token.
pub fn sign_code(key: &RegionKey, claims: &CodeClaims) -> Result<Vec<u8>, HealthCodeError> {
    let mut map = vec![
        (int(KIND), Value::Text("hc".into())),
        (int(1), Value::Bytes(claims.code_id.as_bytes().to_vec())),
        (int(2), Value::Text(claims.colour.as_str().into())),
        (int(3), Value::Text(claims.region.to_string())),
        (int(4), int(claims.issued_at.unix_timestamp())),
        (int(5), int(claims.expires_at.unix_timestamp())),
    ];
    if let Some(t) = claims.negative_test_at {
        map.push((int(6), int(t.unix_timestamp())));
    }
    key.sign_payload(encode(map)?)
}

/// Verifies a code token offline: well-formed, signed by a published key of
/// the claimed region that was not retired when the token was issued, and
/// not expired at `now`.
pub fn verify_code(
    directory: &KeyDirectory,
    token: &[u8],
    now: OffsetDateTime,
) -> Result<CodeClaims, HealthCodeError> {
    let (payload, key) = directory.verify(token)?;
    let claims = code_claims(&payload)?;
    if claims.region != key.region {
        // A valid signature by another region's key: that region cannot speak for this one.
        return Err(HealthCodeError::TokenForged);
    }
    if key.retired_at.is_some_and(|r| claims.issued_at > r) {
        return Err(HealthCodeError::TokenUnknownKey(key.kid.clone()));
    }
    if now >= claims.expires_at {
        return Err(HealthCodeError::TokenExpired {
            expired_at: claims.expires_at,
        });
    }
    Ok(claims)
}

/// The claims of a code token's payload, unverified.
fn code_claims(payload: &[u8]) -> Result<CodeClaims, HealthCodeError> {
    let map = decode(payload)?;
    if as_text(get(&map, KIND)) != Some("hc") {
        return Err(HealthCodeError::TokenMalformed(
            "not a health-code token".into(),
        ));
    }
    let code_id = match get(&map, 1) {
        Some(Value::Bytes(b)) => Uuid::from_slice(b).ok(),
        _ => None,
    }
    .ok_or_else(|| HealthCodeError::TokenMalformed("missing or bad `code_id`".into()))?;
    let colour = Colour::parse("colour", as_text(get(&map, 2)).unwrap_or(""))
        .map_err(|_| HealthCodeError::TokenMalformed("missing or bad `colour`".into()))?;
    let region = as_text(get(&map, 3))
        .and_then(|r| DivisionCode::parse(r).ok())
        .ok_or_else(|| HealthCodeError::TokenMalformed("missing or bad `region`".into()))?;
    let issued_at = time_of("issued_at", get(&map, 4))?;
    let expires_at = time_of("expires_at", get(&map, 5))?;
    let negative_test_at = match get(&map, 6) {
        Some(v) => Some(time_of("negative_test_at", Some(v))?),
        None => None,
    };
    Ok(CodeClaims {
        code_id,
        colour,
        region,
        issued_at,
        expires_at,
        negative_test_at,
    })
}

/// What a code token claims, read *without* verifying anything: to know
/// whose state to load before the token is verified ([`verify_code`]), and
/// to show the claims of a token a decision has verified. `None` when the
/// bytes are not a code token.
pub fn peek_code_claims(token: &[u8]) -> Option<CodeClaims> {
    let sign1 = CoseSign1::from_tagged_slice(token)
        .or_else(|_| CoseSign1::from_slice(token))
        .ok()?;
    code_claims(sign1.payload.as_deref()?).ok()
}

/// The key id in a token's protected header, read *without* verifying
/// anything (to notice a key this node has not loaded yet).
pub fn peek_kid(token: &[u8]) -> Option<String> {
    let sign1 = CoseSign1::from_tagged_slice(token)
        .or_else(|_| CoseSign1::from_slice(token))
        .ok()?;
    String::from_utf8(sign1.protected.header.key_id).ok()
}

/// Signs a venue's place code.
pub fn sign_place(key: &RegionKey, claims: &PlaceClaims) -> Result<Vec<u8>, HealthCodeError> {
    let map = vec![
        (int(KIND), Value::Text("place".into())),
        (
            int(1),
            Value::Bytes(claims.checkpoint_id.uuid().as_bytes().to_vec()),
        ),
        (int(3), Value::Text(claims.place.to_string())),
        (int(4), int(claims.issued_at.unix_timestamp())),
    ];
    key.sign_payload(encode(map)?)
}

/// Verifies a place code: signed by a published key of a region that contains the place.
pub fn verify_place(
    directory: &KeyDirectory,
    token: &[u8],
) -> Result<PlaceClaims, HealthCodeError> {
    let (payload, key) = directory.verify(token)?;
    let map = decode(&payload)?;
    if as_text(get(&map, KIND)) != Some("place") {
        return Err(HealthCodeError::TokenMalformed("not a place code".into()));
    }
    let checkpoint_id = match get(&map, 1) {
        Some(Value::Bytes(b)) => Uuid::from_slice(b).ok().map(CheckpointId::from_uuid),
        _ => None,
    }
    .ok_or_else(|| HealthCodeError::TokenMalformed("missing or bad `checkpoint_id`".into()))?;
    let place = as_text(get(&map, 3))
        .and_then(|r| DivisionCode::parse(r).ok())
        .ok_or_else(|| HealthCodeError::TokenMalformed("missing or bad `place`".into()))?;
    if !key.region.contains(&place) {
        return Err(HealthCodeError::TokenForged);
    }
    let issued_at = time_of("issued_at", get(&map, 4))?;
    Ok(PlaceClaims {
        checkpoint_id,
        place,
        issued_at,
    })
}

const B45: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// Base45 (RFC 9285), the QR-friendly alphabet the EU DCC uses.
pub fn base45_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 / 2 + 2);
    for chunk in bytes.chunks(2) {
        let (mut n, digits) = match chunk {
            [a, b] => (u32::from(*a) * 256 + u32::from(*b), 3),
            [a] => (u32::from(*a), 2),
            _ => continue,
        };
        for _ in 0..digits {
            out.push(B45[(n % 45) as usize] as char);
            n /= 45;
        }
    }
    out
}

/// Decodes Base45; `None` for text that is not Base45.
pub fn base45_decode(text: &str) -> Option<Vec<u8>> {
    let values: Option<Vec<u32>> = text
        .bytes()
        .map(|c| B45.iter().position(|b| *b == c).map(|p| p as u32))
        .collect();
    let values = values?;
    let mut out = Vec::with_capacity(values.len() * 2 / 3 + 1);
    for chunk in values.chunks(3) {
        match chunk {
            [a, b, c] => {
                let n = a + b * 45 + c * 45 * 45;
                if n > 0xFFFF {
                    return None;
                }
                out.push((n >> 8) as u8);
                out.push((n & 0xFF) as u8);
            }
            [a, b] => {
                let n = a + b * 45;
                out.push(u8::try_from(n).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The QR text of a code token.
pub fn code_text(token: &[u8]) -> String {
    format!("{CODE_PREFIX}{}", base45_encode(token))
}

/// The QR text of a place code.
pub fn place_text(token: &[u8]) -> String {
    format!("{PLACE_PREFIX}{}", base45_encode(token))
}

/// Reads a scanned text back into token bytes.
pub fn parse_text(text: &str) -> Result<Vec<u8>, HealthCodeError> {
    let body = text
        .strip_prefix(CODE_PREFIX)
        .or_else(|| text.strip_prefix(PLACE_PREFIX))
        .ok_or_else(|| {
            HealthCodeError::TokenMalformed(format!(
                "text must start with {CODE_PREFIX} or {PLACE_PREFIX}"
            ))
        })?;
    base45_decode(body).ok_or_else(|| HealthCodeError::TokenMalformed("not Base45".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    fn beijing() -> DivisionCode {
        DivisionCode::parse("11").unwrap()
    }

    fn claims() -> CodeClaims {
        CodeClaims {
            code_id: Uuid::from_u128(42),
            colour: Colour::Green,
            region: beijing(),
            issued_at: datetime!(2020-06-13 12:00 UTC),
            expires_at: datetime!(2020-06-13 12:10 UTC),
            negative_test_at: Some(datetime!(2020-06-12 09:00 UTC)),
        }
    }

    #[test]
    fn base45_round_trips_and_matches_the_rfc_examples() {
        assert_eq!(base45_encode(b"AB"), "BB8");
        assert_eq!(base45_encode(b"Hello!!"), "%69 VD92EX0");
        assert_eq!(base45_encode(b"base-45"), "UJCLQE7W581");
        assert_eq!(base45_decode("QED8WEX0").unwrap(), b"ietf!");
        assert!(base45_decode("GGW").is_none());
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base45_decode(&base45_encode(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn a_signed_token_verifies_offline_with_the_public_key_only() {
        let key = RegionKey::from_seed(beijing(), [7; 32]);
        let mut dir = KeyDirectory::new();
        dir.publish(key.published());
        let token = sign_code(&key, &claims()).unwrap();
        let text = code_text(&token);
        assert!(text.starts_with("HC1:"));
        let back = verify_code(
            &dir,
            &parse_text(&text).unwrap(),
            datetime!(2020-06-13 12:05 UTC),
        )
        .unwrap();
        assert_eq!(back, claims());
    }

    #[test]
    fn expired_forged_and_unknown_key_tokens_are_rejected() {
        let key = RegionKey::from_seed(beijing(), [7; 32]);
        let mut dir = KeyDirectory::new();
        dir.publish(key.published());
        let token = sign_code(&key, &claims()).unwrap();
        assert!(matches!(
            verify_code(&dir, &token, datetime!(2020-06-13 12:10 UTC)),
            Err(HealthCodeError::TokenExpired { .. })
        ));
        let mut forged = token.clone();
        let n = forged.len();
        forged[n - 70] ^= 1; // inside the payload
        assert!(matches!(
            verify_code(&dir, &forged, datetime!(2020-06-13 12:05 UTC)),
            Err(HealthCodeError::TokenForged | HealthCodeError::TokenMalformed(_))
        ));
        let stranger = RegionKey::from_seed(beijing(), [9; 32]);
        let other = sign_code(&stranger, &claims()).unwrap();
        assert!(matches!(
            verify_code(&dir, &other, datetime!(2020-06-13 12:05 UTC)),
            Err(HealthCodeError::TokenUnknownKey(_))
        ));
        assert!(matches!(
            verify_code(&dir, b"garbage", datetime!(2020-06-13 12:05 UTC)),
            Err(HealthCodeError::TokenMalformed(_))
        ));
    }

    #[test]
    fn a_region_cannot_sign_for_another_region() {
        let shanghai = RegionKey::from_seed(DivisionCode::parse("31").unwrap(), [3; 32]);
        let mut dir = KeyDirectory::new();
        dir.publish(shanghai.published());
        let token = sign_code(&shanghai, &claims()).unwrap();
        assert_eq!(
            verify_code(&dir, &token, datetime!(2020-06-13 12:05 UTC)),
            Err(HealthCodeError::TokenForged)
        );
    }

    #[test]
    fn after_rotation_old_tokens_still_verify_and_new_ones_use_the_new_key() {
        let mut signer = RegionSigner::new(RegionKey::from_seed(beijing(), [1; 32]));
        let mut dir = KeyDirectory::new();
        dir.publish(signer.active().published());
        let old = sign_code(signer.active(), &claims()).unwrap();
        let old_kid = signer.active().kid().to_owned();
        dir.publish(signer.rotate(RegionKey::from_seed(beijing(), [2; 32])));
        dir.retire(&old_kid, datetime!(2020-06-13 12:00 UTC));
        let new = sign_code(signer.active(), &claims()).unwrap();
        let at = datetime!(2020-06-13 12:05 UTC);
        assert!(verify_code(&dir, &old, at).is_ok());
        assert!(verify_code(&dir, &new, at).is_ok());
        assert_ne!(signer.active().kid(), old_kid);
        assert_eq!(signer.previous_kids(), std::slice::from_ref(&old_kid));
        // A token the retired key issued after retirement is refused.
        let late = CodeClaims {
            issued_at: datetime!(2020-06-13 12:01 UTC),
            ..claims()
        };
        let retired = RegionKey::from_seed(beijing(), [1; 32]);
        let token = sign_code(&retired, &late).unwrap();
        assert!(matches!(
            verify_code(&dir, &token, at),
            Err(HealthCodeError::TokenUnknownKey(_))
        ));
        let _ = Duration::ZERO;
    }

    #[test]
    fn place_codes_round_trip_and_must_lie_in_the_signing_region() {
        let fengtai = RegionKey::from_seed(DivisionCode::parse("110106").unwrap(), [5; 32]);
        let mut dir = KeyDirectory::new();
        dir.publish(fengtai.published());
        let claims = PlaceClaims {
            checkpoint_id: CheckpointId::from_u128(0xAA),
            place: DivisionCode::parse("110106018002").unwrap(),
            issued_at: datetime!(2020-06-01 00:00 UTC),
        };
        let token = sign_place(&fengtai, &claims).unwrap();
        assert_eq!(
            verify_place(&dir, &parse_text(&place_text(&token)).unwrap()).unwrap(),
            claims
        );
        let outside = PlaceClaims {
            place: DivisionCode::parse("110101001001").unwrap(),
            ..claims
        };
        let token = sign_place(&fengtai, &outside).unwrap();
        assert_eq!(
            verify_place(&dir, &token),
            Err(HealthCodeError::TokenForged)
        );
    }
}
