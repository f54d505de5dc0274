//! What both macros' argument parsers share.

use proc_macro2::Span;

/// Sets an argument given once; a second time is an error at the second one, since a
/// silent "last one wins" hides a copy-paste mistake.
pub(crate) fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    span: Span,
    key: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(span, format!("`{key}` is given twice")));
    }
    *slot = Some(value);
    Ok(())
}
