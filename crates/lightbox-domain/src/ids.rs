//! Resource identifiers: 32 lower-case hexadecimal characters, as HealthImaging issues them.

use std::fmt;

/// An identifier string failed the `[0-9a-z]{32}` shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identifier must be 32 characters of [0-9a-z]")]
pub struct InvalidId;

fn is_valid(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

fn fresh() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A new random identifier.
            pub fn generate() -> Self {
                Self(fresh())
            }
            /// Parses an identifier received from a client or read from storage.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if is_valid(s) { Ok(Self(s.to_owned())) } else { Err(InvalidId) }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a data store.
    DatastoreId
);
id_type!(
    /// Identifies an image set within a data store.
    ImageSetId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = DatastoreId::generate();
        let b = DatastoreId::generate();
        assert_ne!(a, b);
        assert_eq!(DatastoreId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            "",
            "abc",
            "0123456789abcdef0123456789ABCDEF",
            "0123456789abcdef0123456789abcde!",
            "0123456789abcdef0123456789abcdef0",
        ] {
            assert!(ImageSetId::parse(bad).is_err(), "{bad}");
        }
        assert!(ImageSetId::parse("0123456789abcdefghijklmnopqrstuv").is_ok());
    }
}
