//! Procedural macros for [`audit-layer`](https://docs.rs/audit-layer).
//!
//! Use them through `audit_layer` (its default `derive` feature re-exports them), not
//! directly. The derive for auditable state types and the attribute for sensitive handlers
//! are not released yet.
