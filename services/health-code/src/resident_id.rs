//! Identity documents: PRC resident identity numbers (GB 11643) and others.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::HealthCodeError;

/// An 18-character PRC resident identity number whose check character (GB
/// 11643, ISO 7064 MOD 11-2) and birth date are valid.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResidentId(String);

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

impl ResidentId {
    /// Parses and checks a resident identity number (a lower-case `x` is accepted).
    pub fn parse(text: &str) -> Result<Self, HealthCodeError> {
        let invalid = |rule: &'static str| HealthCodeError::InvalidInput {
            field: "id_document.number",
            rule: rule.to_owned(),
        };
        let upper = text.trim().to_ascii_uppercase();
        let bytes = upper.as_bytes();
        if bytes.len() != 18 {
            return Err(invalid("a resident ID number has 18 characters"));
        }
        if !bytes[..17].iter().all(u8::is_ascii_digit) {
            return Err(invalid(
                "the first 17 characters of a resident ID number are digits",
            ));
        }
        let sum: u32 = bytes[..17]
            .iter()
            .zip(WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        let expected = CHECK[(sum % 11) as usize];
        if bytes[17] != expected {
            return Err(HealthCodeError::InvalidInput {
                field: "id_document.number",
                rule: format!(
                    "GB 11643 check character must be `{}`, got `{}`",
                    expected as char, bytes[17] as char
                ),
            });
        }
        let digits = |r: std::ops::Range<usize>| upper[r].parse::<u32>().unwrap_or(0);
        let (year, month, day) = (digits(6..10), digits(10..12), digits(12..14));
        let month = u8::try_from(month)
            .ok()
            .and_then(|m| time::Month::try_from(m).ok());
        let valid_date = month.is_some_and(|m| {
            i32::try_from(year)
                .ok()
                .and_then(|y| time::Date::from_calendar_date(y, m, u8::try_from(day).ok()?).ok())
                .is_some()
        });
        if !valid_date || !(1900..=2100).contains(&year) {
            return Err(invalid(
                "characters 7 to 14 of a resident ID number are a valid birth date",
            ));
        }
        Ok(Self(upper))
    }

    /// The birth date in characters 7 to 14 (checked valid by `parse`).
    pub fn birth_date(&self) -> Option<time::Date> {
        let digits = |r: std::ops::Range<usize>| self.0.get(r)?.parse::<i32>().ok();
        let month = time::Month::try_from(u8::try_from(digits(10..12)?).ok()?).ok()?;
        time::Date::from_calendar_date(digits(6..10)?, month, u8::try_from(digits(12..14)?).ok()?)
            .ok()
    }

    /// The province of household registration (the first two digits).
    pub fn province(&self) -> &str {
        self.0.get(..2).unwrap_or_default()
    }

    /// Computes the check character for 17 digits (used by tests and fixtures).
    pub fn check_character(first17: &str) -> Option<char> {
        let bytes = first17.as_bytes();
        if bytes.len() != 17 || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let sum: u32 = bytes
            .iter()
            .zip(WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        Some(CHECK[(sum % 11) as usize] as char)
    }

    /// The number, upper-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a full ID number.
        write!(f, "ResidentId({}…{})", &self.0[..2], &self.0[16..])
    }
}

impl TryFrom<String> for ResidentId {
    type Error = HealthCodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ResidentId> for String {
    fn from(value: ResidentId) -> Self {
        value.0
    }
}

/// An identity document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "number", rename_all = "snake_case")]
pub enum IdentityDocument {
    /// PRC resident identity card (居民身份证).
    ResidentId(ResidentId),
    /// A passport (number as printed).
    Passport(String),
    /// Mainland travel permit for Hong Kong, Macao or Taiwan residents.
    TravelPermit(String),
}

impl IdentityDocument {
    /// Parses a document of the named kind (`resident_id`, `passport`, `travel_permit`).
    pub fn parse(kind: &str, number: &str) -> Result<Self, HealthCodeError> {
        let other = |number: &str| {
            let n = number.trim();
            if n.len() < 5 || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
                Err(HealthCodeError::InvalidInput {
                    field: "id_document.number",
                    rule: "a document number has 5 to 20 letters or digits".into(),
                })
            } else {
                Ok(n.to_ascii_uppercase())
            }
        };
        match kind {
            "resident_id" => Ok(Self::ResidentId(ResidentId::parse(number)?)),
            "passport" => Ok(Self::Passport(other(number)?)),
            "travel_permit" => Ok(Self::TravelPermit(other(number)?)),
            _ => Err(HealthCodeError::InvalidInput {
                field: "id_document.kind",
                rule: "must be resident_id, passport or travel_permit".into(),
            }),
        }
    }

    /// The number as a guard may see it: a resident ID number keeps its
    /// first 3 and last 4 characters (`110***********1234`); shorter
    /// numbers (passports, permits) keep at most a quarter at each end
    /// (`E1*****78`), so most of any number stays hidden.
    pub fn masked(&self) -> String {
        let number = match self {
            Self::ResidentId(r) => r.as_str(),
            Self::Passport(n) | Self::TravelPermit(n) => n.as_str(),
        };
        let chars: Vec<char> = number.chars().collect();
        let n = chars.len();
        let head = (n / 4).min(3);
        let tail = (n / 4).min(4);
        chars
            .iter()
            .enumerate()
            .map(|(i, c)| if i < head || i + tail >= n { *c } else { '*' })
            .collect()
    }

    /// Refuses what a valid-looking number cannot be on `today`: a resident
    /// ID of someone born in the future, or registered in a province that
    /// does not exist (counties are not checked: abolished counties live on
    /// in older numbers).
    pub fn check_plausible(
        &self,
        today: time::Date,
        divisions: &tongban_kernel::Divisions,
    ) -> Result<(), HealthCodeError> {
        let Self::ResidentId(id) = self else {
            return Ok(());
        };
        if id.birth_date().is_none_or(|born| born > today) {
            return Err(HealthCodeError::InvalidInput {
                field: "id_document.number",
                rule: format!("the birth date of a resident ID number is not after {today}"),
            });
        }
        if divisions.parse_known(id.province()).is_err() {
            return Err(HealthCodeError::InvalidInput {
                field: "id_document.number",
                rule: format!(
                    "the first two digits of a resident ID number are a province; {} is none",
                    id.province()
                ),
            });
        }
        Ok(())
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ResidentId(_) => "resident_id",
            Self::Passport(_) => "passport",
            Self::TravelPermit(_) => "travel_permit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_number_with_its_check_character_parses() {
        // The standard's worked example.
        let id = ResidentId::parse("11010519491231002x").unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(ResidentId::check_character("11010519491231002"), Some('X'));
    }

    #[test]
    fn a_wrong_check_character_is_rejected_naming_the_expected_one() {
        let err = ResidentId::parse("110105194912310021").unwrap_err();
        assert!(err.to_string().contains("must be `X`"), "{err}");
    }

    #[test]
    fn wrong_length_letters_and_impossible_birth_dates_are_rejected() {
        assert!(ResidentId::parse("1101051949123100").is_err());
        assert!(ResidentId::parse("11010519A91231002X").is_err());
        let first17 = "11010519490231002";
        let check = ResidentId::check_character(first17).unwrap();
        assert!(
            ResidentId::parse(&format!("{first17}{check}")).is_err(),
            "31 February"
        );
    }

    #[test]
    fn a_masked_resident_id_shows_its_first_three_and_last_four_characters() {
        let id = IdentityDocument::parse("resident_id", "11010519491231002x").unwrap();
        assert_eq!(id.masked(), "110***********002X");
    }

    #[test]
    fn a_masked_passport_number_hides_at_least_half_of_it() {
        let passport = IdentityDocument::parse("passport", "E12345678").unwrap();
        assert_eq!(passport.masked(), "E1*****78");
        let short = IdentityDocument::parse("travel_permit", "H1234").unwrap();
        assert_eq!(short.masked(), "H***4");
    }

    #[test]
    fn debug_output_never_shows_the_full_number() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(format!("{id:?}"), "ResidentId(11…2X)");
    }
}
