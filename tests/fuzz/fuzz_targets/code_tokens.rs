//! Health codes and place codes as a scanner or the API receives them. The
//! first byte chooses the way in:
//! - 0: QR text (`HC1:` / `HP1:` + Base45) through `parse_text`, then the
//!   bytes through the verifiers; Base45 must round-trip;
//! - 1: raw COSE_Sign1 bytes through `verify_code`, `verify_place` and
//!   `peek_code_claims`;
//! - 2: the rest is a CBOR payload, signed here with the directory's key,
//!   so the claims parsers behind a valid signature are reached too.
//!
//! None may panic; a verified code must be one the directory's key signed
//! for its own region.
#![no_main]

use std::sync::OnceLock;

use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use tongban_health_code::token::{
    base45_decode, base45_encode, parse_text, peek_code_claims, verify_code, verify_place,
    KeyDirectory, RegionKey,
};
use tongban_kernel::DivisionCode;

/// The fuzzing key's seed (the seed corpus is signed with it too).
const SEED: [u8; 32] = [7; 32];

struct Fixture {
    directory: KeyDirectory,
    kid: String,
    signing: SigningKey,
    region: DivisionCode,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let region = DivisionCode::parse("11").expect("Beijing is a division");
        let key = RegionKey::from_seed(region, SEED);
        let mut directory = KeyDirectory::new();
        directory.publish(key.published());
        Fixture {
            directory,
            kid: key.kid().to_owned(),
            signing: SigningKey::from_bytes(&SEED),
            region,
        }
    })
}

fn now() -> OffsetDateTime {
    // 2020-06-13 12:05 UTC, inside the seed tokens' validity.
    OffsetDateTime::from_unix_timestamp(1_592_049_900).expect("a valid instant")
}

fn verify_all(token: &[u8]) {
    let f = fixture();
    if let Ok(claims) = verify_code(&f.directory, token, now()) {
        assert_eq!(
            claims.region, f.region,
            "a code verifies only for its key's region"
        );
        assert!(now() < claims.expires_at, "a verified code is not expired");
    }
    if let Ok(place) = verify_place(&f.directory, token) {
        assert!(
            f.region.contains(&place.place),
            "a place code stays in its key's region"
        );
    }
    let _ = peek_code_claims(token);
}

fn sign(payload: &[u8]) -> Option<Vec<u8>> {
    let f = fixture();
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::EdDSA)
        .key_id(f.kid.clone().into_bytes())
        .build();
    CoseSign1Builder::new()
        .protected(protected)
        .payload(payload.to_vec())
        .create_signature(b"", |bytes| f.signing.sign(bytes).to_bytes().to_vec())
        .build()
        .to_tagged_vec()
        .ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Some(bytes) = base45_decode(text) {
                assert_eq!(base45_encode(&bytes), text, "Base45 round-trips");
            }
            if let Ok(token) = parse_text(text) {
                verify_all(&token);
            }
        }
        1 => verify_all(rest),
        _ => {
            if let Some(token) = sign(rest) {
                verify_all(&token);
            }
        }
    }
});
