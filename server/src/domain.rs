//! Validated inputs: a handler holding an `Email` knows it is well-formed and normalised.
use crate::error::ApiError;

/// A trimmed, lower-cased address of plausible shape. Deliverability is proved by the mailed code,
/// not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let email = raw.trim().to_lowercase();
        let bad = |why: &str| ApiError::invalid("invalid_email", format!("not a valid email address: {why}"));
        if email.is_empty() {
            return Err(bad("it is empty"));
        }
        if email.len() > 254 {
            return Err(bad("it is longer than 254 characters"));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(bad("it has no @"));
        };
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(bad("the part before @ is empty, too long or has another @"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"".contains(c)) {
            return Err(bad("it contains spaces or characters not allowed in an address"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(bad("the domain after @ is not a valid host name"));
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the length rules. Never logged: `Debug` hides it.
#[derive(Clone)]
pub struct Password(String);

pub const PASSWORD_MIN_CHARS: usize = 8;
/// Bounds the work a single request can ask of the password hasher.
pub const PASSWORD_MAX_BYTES: usize = 1024;

impl Password {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        if raw.chars().count() < PASSWORD_MIN_CHARS {
            return Err(ApiError::invalid(
                "weak_password",
                format!("the password must have at least {PASSWORD_MIN_CHARS} characters"),
            ));
        }
        if raw.len() > PASSWORD_MAX_BYTES {
            return Err(ApiError::invalid(
                "invalid_password",
                format!("the password must be at most {PASSWORD_MAX_BYTES} bytes"),
            ));
        }
        Ok(Password(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A name shown to others: trimmed, 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

pub const DISPLAY_NAME_MAX_CHARS: usize = 64;

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > DISPLAY_NAME_MAX_CHARS {
            return Err(ApiError::invalid(
                "invalid_display_name",
                format!("the display name must have 1 to {DISPLAY_NAME_MAX_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::invalid("invalid_display_name", "the display name has control characters"));
        }
        Ok(DisplayName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Ada@Example.ORG ").unwrap().as_str(), "ada@example.org");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a da@example.org",
            "ada@exa_mple.org",
            "ada@-example.org",
            "ada@example..org",
            "<ada>@example.org",
        ] {
            let err = Email::parse(bad).expect_err(bad);
            assert_eq!(err.code(), "invalid_email", "{bad}");
        }
    }

    #[test]
    fn passwords_need_eight_characters_counted_as_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse("ééééééé").is_err());
        assert!(Password::parse(&"x".repeat(PASSWORD_MAX_BYTES + 1)).is_err());
        assert_eq!(format!("{:?}", Password::parse("secret-words").unwrap()), "Password(***)");
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(65)).is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
    }
}
