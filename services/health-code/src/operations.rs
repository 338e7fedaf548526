//! The seven application-interface operations of GB/T 38963, each a command
//! (or, for verification, a pure check) that carries the standard's optional
//! BizExtData and answers with a stable return code as well as its result.
//!
//! | operation | here |
//! |---|---|
//! | declare health information | [`PersonCommand::DeclareHealth`] |
//! | declare an itinerary | [`PersonCommand::DeclareItinerary`] |
//! | query health information | [`PersonCommand::QueryHealthInfo`] |
//! | request to call a code | [`PersonCommand::RequestCodeCall`] |
//! | generate a code | [`PersonCommand::GenerateCode`] |
//! | verify a code | [`verify_code`] |
//! | correct information (appeal) | [`PersonCommand::FileAppeal`] |

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::HealthCodeError;
use crate::person::PersonCommand;
use crate::token::{self, CodeClaims, KeyDirectory};

/// The seven operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// 健康信息申报.
    DeclareHealthInformation,
    /// 行程申报.
    DeclareItinerary,
    /// 健康信息查询.
    QueryHealthInformation,
    /// 调用码申请.
    RequestCodeCall,
    /// 生成码.
    GenerateCode,
    /// 验证码.
    VerifyCode,
    /// 信息纠错 (appeal).
    CorrectInformation,
}

impl Operation {
    /// All seven, in the standard's order.
    pub const ALL: [Operation; 7] = [
        Operation::DeclareHealthInformation,
        Operation::DeclareItinerary,
        Operation::QueryHealthInformation,
        Operation::RequestCodeCall,
        Operation::GenerateCode,
        Operation::VerifyCode,
        Operation::CorrectInformation,
    ];

    /// The operation a person command performs, if it is one of the seven.
    pub fn of(command: &PersonCommand) -> Option<Operation> {
        Some(match command {
            PersonCommand::DeclareHealth { .. } => Operation::DeclareHealthInformation,
            PersonCommand::DeclareItinerary { .. } => Operation::DeclareItinerary,
            PersonCommand::QueryHealthInfo { .. } => Operation::QueryHealthInformation,
            PersonCommand::RequestCodeCall { .. } => Operation::RequestCodeCall,
            PersonCommand::GenerateCode { .. } => Operation::GenerateCode,
            PersonCommand::FileAppeal { .. } => Operation::CorrectInformation,
            _ => return None,
        })
    }
}

/// Stable return codes. The numbers never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ReturnCode {
    /// `0000`: success.
    Success,
    /// `1001`: a parameter breaks a rule.
    InvalidParameter,
    /// `1002`: a division code is malformed or unknown.
    UnknownDivision,
    /// `1003`: a code token is malformed.
    MalformedToken,
    /// `2001`: no such person, checkpoint or appeal (or data erased).
    NotFound,
    /// `3001`: the caller may not do this.
    Forbidden,
    /// `4001`: the code has expired.
    TokenExpired,
    /// `4002`: the code's signature is not valid.
    TokenForged,
    /// `4003`: the code is signed by an unknown key.
    UnknownKey,
    /// `4004`: the holder's colour changed after the code was issued.
    CodeSuperseded,
    /// `5001`: conflicting state (already done, concurrent change).
    Conflict,
    /// `5002`: a recent health declaration is required first.
    DeclarationRequired,
    /// `9999`: internal error.
    Internal,
}

impl ReturnCode {
    /// The four-digit code.
    pub fn code(&self) -> &'static str {
        match self {
            ReturnCode::Success => "0000",
            ReturnCode::InvalidParameter => "1001",
            ReturnCode::UnknownDivision => "1002",
            ReturnCode::MalformedToken => "1003",
            ReturnCode::NotFound => "2001",
            ReturnCode::Forbidden => "3001",
            ReturnCode::TokenExpired => "4001",
            ReturnCode::TokenForged => "4002",
            ReturnCode::UnknownKey => "4003",
            ReturnCode::CodeSuperseded => "4004",
            ReturnCode::Conflict => "5001",
            ReturnCode::DeclarationRequired => "5002",
            ReturnCode::Internal => "9999",
        }
    }

    /// The return code of an error.
    pub fn of(error: &HealthCodeError) -> ReturnCode {
        use HealthCodeError::*;
        match error {
            InvalidInput { .. }
            | TemperatureOutOfRange { .. }
            | FutureTime { .. }
            | PolicyInvalid { .. } => ReturnCode::InvalidParameter,
            Division { .. } => ReturnCode::UnknownDivision,
            TokenMalformed(_) => ReturnCode::MalformedToken,
            PersonNotFound(_) | PersonErased(_) | CheckpointNotFound(_) | AppealNotFound(_) => {
                ReturnCode::NotFound
            }
            Forbidden(_) | SameOfficialApproval(_) => ReturnCode::Forbidden,
            TokenExpired { .. } => ReturnCode::TokenExpired,
            TokenForged => ReturnCode::TokenForged,
            TokenUnknownKey(_) => ReturnCode::UnknownKey,
            CodeSuperseded { .. } => ReturnCode::CodeSuperseded,
            PersonAlreadyRegistered(_)
            | CheckpointAlreadyRegistered(_)
            | AppealAlreadyDecided(_)
            | OverrideNotPending(_)
            | Conflict { .. } => ReturnCode::Conflict,
            DeclarationRequired { .. } => ReturnCode::DeclarationRequired,
            Store(_) | Vault(_) | Timeout { .. } => ReturnCode::Internal,
        }
    }
}

/// What every operation answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationResponse<T> {
    /// The operation.
    pub operation: Operation,
    /// Stable return code (`0000` for success).
    pub return_code: &'static str,
    /// A message a person can act on.
    pub message: String,
    /// The result, on success.
    pub result: Option<T>,
}

/// Wraps a result as the operation's response.
pub fn respond<T>(
    operation: Operation,
    result: Result<T, HealthCodeError>,
) -> OperationResponse<T> {
    match result {
        Ok(value) => OperationResponse {
            operation,
            return_code: ReturnCode::Success.code(),
            message: "success".into(),
            result: Some(value),
        },
        Err(e) => OperationResponse {
            operation,
            return_code: ReturnCode::of(&e).code(),
            message: e.to_string(),
            result: None,
        },
    }
}

/// GB/T 38963 "verify a code": checks a scanned `HC1:` text offline.
pub fn verify_code(
    directory: &KeyDirectory,
    text: &str,
    now: OffsetDateTime,
) -> OperationResponse<CodeClaims> {
    let result =
        token::parse_text(text).and_then(|bytes| token::verify_code(directory, &bytes, now));
    respond(Operation::VerifyCode, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{code_text, sign_code, RegionKey};
    use crate::types::Colour;
    use time::macros::datetime;
    use tongban_kernel::DivisionCode;
    use uuid::Uuid;

    #[test]
    fn verify_code_answers_success_or_a_stable_code_for_each_failure() {
        let region = DivisionCode::parse("11").unwrap();
        let key = RegionKey::from_seed(region, [4; 32]);
        let mut dir = KeyDirectory::new();
        dir.publish(key.published());
        let claims = CodeClaims {
            code_id: Uuid::from_u128(1),
            colour: Colour::Yellow,
            region,
            issued_at: datetime!(2020-06-13 12:00 UTC),
            expires_at: datetime!(2020-06-13 12:10 UTC),
            negative_test_at: None,
        };
        let text = code_text(&sign_code(&key, &claims).unwrap());
        let ok = verify_code(&dir, &text, datetime!(2020-06-13 12:01 UTC));
        assert_eq!((ok.return_code, ok.result), ("0000", Some(claims)));
        assert_eq!(
            verify_code(&dir, &text, datetime!(2020-06-13 13:00 UTC)).return_code,
            "4001"
        );
        assert_eq!(
            verify_code(&KeyDirectory::new(), &text, datetime!(2020-06-13 12:01 UTC)).return_code,
            "4003"
        );
        assert_eq!(
            verify_code(&dir, "HC1:***", datetime!(2020-06-13 12:01 UTC)).return_code,
            "1003"
        );
    }

    #[test]
    fn every_person_operation_maps_to_one_of_the_seven() {
        let cmd = PersonCommand::RequestCodeCall {
            requester: "metro".into(),
            purpose: "entry".into(),
            ext: None,
        };
        assert_eq!(Operation::of(&cmd), Some(Operation::RequestCodeCall));
        assert_eq!(Operation::of(&PersonCommand::Reevaluate), None);
        assert_eq!(Operation::ALL.len(), 7);
    }
}
