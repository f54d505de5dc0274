//! Procedural macros for [`audit-layer`](https://docs.rs/audit-layer): use them through
//! `audit_layer` (its default `derive` feature re-exports them), as `audit_layer::Auditable`
//! and `audit_layer::sensitive`.
//!
//! The runtime, and the full documentation of both macros, is in `audit_layer::sensitive`.

use proc_macro::TokenStream;

mod args;
mod auditable;
mod sensitive;

/// Derives `audit_layer::Auditable` for a struct with named fields.
///
/// Field attributes: `#[audit(id)]` (the resource id), `#[audit(redact)]` (recorded as
/// `"[REDACTED]"`), `#[audit(skip)]` (never recorded), `#[audit(rename = "name")]`. Type
/// attribute: `#[audit(resource = "user")]` (defaults to the type's name in snake case).
///
/// ```ignore
/// #[derive(Clone, Serialize, Auditable)]
/// #[audit(resource = "user")]
/// struct User {
///     #[audit(id)]
///     id: u64,
///     name: String,
///     #[audit(redact)]
///     password_hash: String,
///     #[audit(skip)]
///     last_seen: Option<u64>,
/// }
/// ```
///
/// Misuse is a spanned compile error (see `tests/ui/fail` in the repository): a tuple struct,
/// an enum or a union, an unknown key (the error lists the valid ones), `redact` with `skip`.
#[proc_macro_derive(Auditable, attributes(audit))]
pub fn derive_auditable(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    auditable::expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Marks an axum handler as sensitive: its event records the before and after state of the
/// resource it changes, with no audit code in its body.
///
/// ```ignore
/// #[sensitive(action = "user.role.change", resource = User, key = id)]
/// async fn change_role(
///     State(app): State<AppState>,
///     Path(id): Path<u64>,
///     Json(body): Json<RoleChange>,
/// ) -> Result<Json<User>, ApiError> {
///     app.users.set_role(id, body.role).await?;
///     /* ... */
/// }
/// ```
///
/// Arguments: `action = "..."`, `resource = Type`, `key = <parameter or expression over
/// one>`, `create`, `capture_body`, `on_load_error = "refuse" | "proceed"`.
///
/// Misuse is a spanned compile error (see `tests/ui/fail` in the repository): an unknown
/// argument (the error lists the valid ones), a missing `action`, a `key` that names no
/// parameter, a function that is not `async`.
#[proc_macro_attribute]
pub fn sensitive(args: TokenStream, item: TokenStream) -> TokenStream {
    let original: proc_macro2::TokenStream = item.clone().into();
    let parsed = syn::parse::<sensitive::Args>(args)
        .and_then(|args| Ok((args, syn::parse::<syn::ItemFn>(item)?)))
        .and_then(|(args, item)| sensitive::expand(args, item));
    match parsed {
        Ok(tokens) => tokens.into(),
        // The error next to the unchanged function: one error, not a cascade of
        // "cannot find function" at every route that uses it.
        Err(error) => {
            let error = error.into_compile_error();
            quote::quote!(#error #original).into()
        }
    }
}
