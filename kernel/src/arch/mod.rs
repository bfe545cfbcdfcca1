//! Architecture code. Only x86_64 exists; everything above `arch` uses the interface
//! re-exported here and never touches a control register, MSR or port itself.
pub mod x86_64;

pub use self::x86_64::*;
