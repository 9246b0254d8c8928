//! The statements, grouped as the session's arms are: each one's definition in the table
//! ([`super::docs::StatementDoc`]: keyword, forms, docs, completion words, number ranges) stands
//! next to the function that parses it.

pub(super) mod data;
pub(super) mod general;
pub(super) mod training;
pub(super) mod tuning;
