//! This image's identity. (Placeholder until image-format's identity record lands.)

/// One line: version and label.
pub fn describe() -> &'static str {
    "v1"
}
