//! Tests that build the real kernel variants.
