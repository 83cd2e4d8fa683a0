//! Courier: see below.
pub struct Courier;
