//! Application forms are personal data (an elderly-care subsidy form holds
//! a bank account, income, a family situation), so the log and the `cases`
//! read model hold them sealed with the applicant's data key from the
//! health-code domain's key vault: erasing the applicant's key makes every
//! copy unreadable, as for their name and ID number.
//!
//! A sealed form is the JSON object `{"$sealed": {alg, nonce, ciphertext}}`
//! in the place of the form, so events and read-model rows keep their
//! shape and forms written before sealing (plain JSON objects) still read.
//! The handler seals before appending and opens when it loads a case; the
//! projection copies the sealed form as it is; the GraphQL layer opens it
//! for a reader it has authorised.

use serde_json::Value;
use tongban_health_code::vault::{self, KeyVault, Sealed, VaultError};
use tongban_kernel::PersonId;

use crate::error::CaseError;
use crate::types::Applicant;

/// The purpose forms are sealed under.
pub const FORM: &str = "case.form";
const SEALED_KEY: &str = "$sealed";

/// Whose key seals the applicant's forms: the person's, or for an
/// enterprise a key of its own under its id (ids are UUIDs, distinct from
/// every person's).
pub fn key_owner(applicant: &Applicant) -> PersonId {
    match applicant {
        Applicant::Person(p) => *p,
        Applicant::Enterprise(e) => PersonId::from_uuid(e.uuid()),
    }
}

fn vault_error(e: VaultError) -> CaseError {
    match e {
        VaultError::KeyErased(_) => CaseError::ApplicantErased,
        other => CaseError::Vault(other.to_string()),
    }
}

/// Whether `stored` is a sealed form.
pub fn is_sealed(stored: &Value) -> bool {
    sealed_part(stored).is_some()
}

fn sealed_part(stored: &Value) -> Option<&Value> {
    match stored.as_object() {
        Some(o) if o.len() == 1 => o.get(SEALED_KEY),
        _ => None,
    }
}

/// `form` sealed with `applicant`'s key (a form already sealed is kept).
pub fn seal(vault: &dyn KeyVault, applicant: &Applicant, form: &Value) -> Result<Value, CaseError> {
    if is_sealed(form) {
        return Ok(form.clone());
    }
    let plaintext =
        serde_json::to_vec(form).map_err(|e| CaseError::Vault(format!("encoding a form: {e}")))?;
    let sealed =
        vault::seal_bytes(vault, key_owner(applicant), FORM, &plaintext).map_err(vault_error)?;
    let sealed =
        serde_json::to_value(sealed).map_err(|e| CaseError::Vault(format!("encoding: {e}")))?;
    Ok(Value::Object(
        [(SEALED_KEY.to_owned(), sealed)].into_iter().collect(),
    ))
}

/// The form in clear: opened if sealed, as it is if written before forms
/// were sealed; `None` once the applicant's key is erased.
pub fn open(
    vault: &dyn KeyVault,
    applicant: &Applicant,
    stored: &Value,
) -> Result<Option<Value>, CaseError> {
    let Some(part) = sealed_part(stored) else {
        return Ok(Some(stored.clone()));
    };
    let sealed: Sealed = serde_json::from_value(part.clone())
        .map_err(|e| CaseError::Vault(format!("a sealed form is malformed: {e}")))?;
    match vault::open_bytes(vault, key_owner(applicant), FORM, &sealed) {
        Ok(plaintext) => serde_json::from_slice(&plaintext)
            .map(Some)
            .map_err(|e| CaseError::Vault(format!("a sealed form is not JSON: {e}"))),
        Err(VaultError::KeyErased(_)) => Ok(None),
        Err(e) => Err(vault_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EnterpriseId;
    use tongban_health_code::vault::MemoryKeyVault;

    #[test]
    fn a_sealed_form_holds_nothing_in_clear_and_reads_as_erased_after_erasure() {
        let vault = MemoryKeyVault::new();
        let applicant = Applicant::Person(PersonId::from_u128(8));
        let form = serde_json::json!({"bankAccount": "6222020200112233445", "income": 1800});
        let sealed = seal(&vault, &applicant, &form).unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.to_string().contains("6222020200112233445"));
        assert_eq!(seal(&vault, &applicant, &sealed).unwrap(), sealed);
        assert_eq!(
            open(&vault, &applicant, &sealed).unwrap(),
            Some(form.clone())
        );
        // a form from before sealing reads as it is
        assert_eq!(open(&vault, &applicant, &form).unwrap(), Some(form));
        // another applicant's key does not open it
        let other = Applicant::Enterprise(EnterpriseId::from_u128(9));
        vault.key_for_new_data(key_owner(&other)).unwrap();
        assert!(matches!(
            open(&vault, &other, &sealed),
            Err(CaseError::Vault(_))
        ));
        vault.erase(key_owner(&applicant)).unwrap();
        assert_eq!(open(&vault, &applicant, &sealed).unwrap(), None);
        assert_eq!(
            seal(&vault, &applicant, &serde_json::json!({})),
            Err(CaseError::ApplicantErased)
        );
    }
}
