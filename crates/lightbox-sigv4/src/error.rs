//! Authentication errors, shaped like the errors AWS JSON services return for SigV4 failures.

/// Why a request failed SigV4 verification.
///
/// [`AuthError::code`], [`AuthError::status`] and [`AuthError::message`] give the
/// `x-amzn-ErrorType` code, the HTTP status and the `message` member that AWS JSON
/// services answer with. Messages never contain secret keys or derived keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Neither an `Authorization` header nor an `X-Amz-Algorithm` query parameter.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// The signature information is malformed or incomplete; the text says what is wrong.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The access key id is not known to the credential store.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient {
        /// The access key id the client presented.
        access_key_id: String,
    },
    /// The recomputed signature differs from the one presented.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. \
         Consult the service documentation for details."
    )]
    SignatureDoesNotMatch,
    /// The request time is too far in the past (or a presigned URL has expired).
    #[error("{0}")]
    SignatureExpired(String),
    /// The request time is too far in the future.
    #[error("{0}")]
    SignatureNotYetCurrent(String),
    /// The credential scope names another service.
    #[error("Credential should be scoped to correct service: '{expected}'.")]
    WrongService {
        /// The service this endpoint verifies for.
        expected: String,
    },
    /// The credential scope date differs from the date of the request timestamp.
    #[error("{0}")]
    ScopeDateMismatch(String),
    /// `x-amz-content-sha256` is present and does not match the body.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
}

impl AuthError {
    /// The AWS error code (`x-amzn-ErrorType` / `__type`).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::IncompleteSignature(_) => "IncompleteSignatureException",
            AuthError::UnrecognizedClient { .. } => "UnrecognizedClientException",
            AuthError::SignatureDoesNotMatch
            | AuthError::SignatureExpired(_)
            | AuthError::SignatureNotYetCurrent(_)
            | AuthError::WrongService { .. }
            | AuthError::ScopeDateMismatch(_)
            | AuthError::ContentSha256Mismatch => "InvalidSignatureException",
        }
    }

    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::IncompleteSignature(_) => 400,
            _ => 403,
        }
    }

    /// The human-readable `message` member.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// Quotes client-supplied text for an error message: at most 128 characters, control
/// characters replaced, so a hostile header cannot bloat or break the response.
pub(crate) fn shown(input: &str) -> String {
    let mut out: String = input
        .chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if input.chars().nth(128).is_some() {
        out.push_str("...");
    }
    out
}
