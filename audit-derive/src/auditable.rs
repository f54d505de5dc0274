//! `#[derive(Auditable)]`: parse, validate, expand.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Field, Fields, GenericParam, Ident, LitStr, Token};

use crate::args::set_once;

mod kw {
    syn::custom_keyword!(resource);
    syn::custom_keyword!(id);
    syn::custom_keyword!(redact);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(rename);
}

/// What a field's `#[audit(...)]` says.
#[derive(Default)]
struct FieldAttrs {
    id: Option<Span>,
    redact: Option<Span>,
    skip: Option<Span>,
    rename: Option<LitStr>,
}

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let name = &input.ident;
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => &named.named,
            Fields::Unnamed(_) | Fields::Unit => {
                return Err(syn::Error::new_spanned(
                    name,
                    "`Auditable` needs a struct with named fields: the trail records each field \
                     by its name",
                ));
            }
        },
        Data::Enum(data) => {
            return Err(syn::Error::new_spanned(
                data.enum_token,
                "`Auditable` cannot be derived for an enum: derive `Serialize` for it and use it \
                 as a field of an `Auditable` struct, where it is recorded by its serialized form",
            ));
        }
        Data::Union(data) => {
            return Err(syn::Error::new_spanned(
                data.union_token,
                "`Auditable` cannot be derived for a union: only one of its fields is valid at a \
                 time, so there is no state to record",
            ));
        }
    };

    let resource = resource_of(&input)?;
    let mut id_field: Option<&Ident> = None;
    let mut steps = Vec::new();
    for field in fields {
        let attrs = field_attrs(field)?;
        if attrs.skip.is_some() {
            continue;
        }
        let ident = field
            .ident
            .as_ref()
            .ok_or_else(|| syn::Error::new_spanned(field, "expected a named field"))?;
        let recorded_name = attrs
            .rename
            .as_ref()
            .map_or_else(|| ident.to_string(), LitStr::value);
        let span = field.ty.span();
        let value = quote_spanned! {span=>
            (&&&::audit_layer::__private::FieldRef(&self.#ident)).__audit_value()
        };
        steps.push(if attrs.redact.is_some() {
            quote_spanned! {span=> __snapshot.__redacted(#recorded_name, &self.#ident); }
        } else if let Some(id_span) = attrs.id {
            if let Some(first) = id_field {
                let mut error = syn::Error::new(id_span, "only one field can be `#[audit(id)]`");
                error.combine(syn::Error::new_spanned(
                    first,
                    "the first `#[audit(id)]` field",
                ));
                return Err(error);
            }
            id_field = Some(ident);
            quote! { __snapshot.__id(#recorded_name, #value); }
        } else {
            quote! { __snapshot.__field(#recorded_name, #value); }
        });
    }

    let mut generics = input.generics.clone();
    let bounded: Vec<_> = generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(ty) => Some(ty.ident.clone()),
            _ => None,
        })
        .collect();
    {
        let where_clause = generics.make_where_clause();
        for ty in bounded {
            where_clause
                .predicates
                .push(syn::parse_quote!(#ty: ::audit_layer::__private::Serialize));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::audit_layer::Auditable for #name #ty_generics #where_clause {
            const RESOURCE: &'static str = #resource;

            fn audit_snapshot(&self) -> ::audit_layer::sensitive::AuditSnapshot {
                #[allow(unused_imports)]
                use ::audit_layer::__private::{
                    ViaAuditable as _, ViaAuditableCollection as _, ViaSerialize as _,
                };
                let mut __snapshot = ::audit_layer::__private::AuditSnapshot::__new();
                #(#steps)*
                __snapshot.__finish()
            }
        }
    })
}

/// `#[audit(resource = "user")]` on the type, else the type's name in snake case.
fn resource_of(input: &DeriveInput) -> syn::Result<String> {
    let mut resource = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("audit")) {
        attr.parse_args_with(|stream: ParseStream<'_>| {
            each_key(stream, |stream| {
                let lookahead = stream.lookahead1();
                if lookahead.peek(kw::resource) {
                    let span = stream.parse::<kw::resource>()?.span;
                    stream.parse::<Token![=]>()?;
                    let value: LitStr = stream.parse()?;
                    if value.value().is_empty() || value.value().contains(':') {
                        return Err(syn::Error::new_spanned(
                            &value,
                            "a resource name is a non-empty word without `:` (targets are `resource:id`)",
                        ));
                    }
                    set_once(&mut resource, value.value(), span, "resource")?;
                } else {
                    return Err(unknown_key(lookahead.error(), "type", &["resource"]));
                }
                Ok(())
            })
        })?;
    }
    Ok(resource.unwrap_or_else(|| snake_case(&input.ident.to_string())))
}

/// Parses `key, key = value, ...` (a trailing comma allowed), one key per call of `key`.
fn each_key(
    stream: ParseStream<'_>,
    mut key: impl FnMut(ParseStream<'_>) -> syn::Result<()>,
) -> syn::Result<()> {
    loop {
        key(stream)?;
        if stream.is_empty() {
            return Ok(());
        }
        stream.parse::<Token![,]>()?;
        if stream.is_empty() {
            return Ok(());
        }
    }
}

fn field_attrs(field: &Field) -> syn::Result<FieldAttrs> {
    let mut attrs = FieldAttrs::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("audit")) {
        attr.parse_args_with(|stream: ParseStream<'_>| {
            each_key(stream, |stream| {
                let lookahead = stream.lookahead1();
                if lookahead.peek(kw::id) {
                    let span = stream.parse::<kw::id>()?.span;
                    set_once(&mut attrs.id, span, span, "id")?;
                } else if lookahead.peek(kw::redact) {
                    let span = stream.parse::<kw::redact>()?.span;
                    set_once(&mut attrs.redact, span, span, "redact")?;
                } else if lookahead.peek(kw::skip) {
                    let span = stream.parse::<kw::skip>()?.span;
                    set_once(&mut attrs.skip, span, span, "skip")?;
                } else if lookahead.peek(kw::rename) {
                    let span = stream.parse::<kw::rename>()?.span;
                    stream.parse::<Token![=]>()?;
                    set_once(&mut attrs.rename, stream.parse()?, span, "rename")?;
                } else {
                    return Err(unknown_key(
                        lookahead.error(),
                        "field",
                        &["id", "redact", "skip", "rename"],
                    ));
                }
                Ok(())
            })
        })?;
    }
    let conflicts = [
        (
            attrs.redact,
            attrs.skip,
            "`redact` and `skip` cannot both apply: a skipped field is never recorded, so there is nothing to redact",
        ),
        (
            attrs.id,
            attrs.skip,
            "`id` and `skip` cannot both apply: the id is recorded in the target",
        ),
        (
            attrs.id,
            attrs.redact,
            "`id` and `redact` cannot both apply: the id is recorded in the target",
        ),
    ];
    for (first, second, message) in conflicts {
        if let (Some(_), Some(span)) = (first, second) {
            return Err(syn::Error::new(span, message));
        }
    }
    Ok(attrs)
}

/// Rewords syn's "expected one of" so it names the attribute it is about.
fn unknown_key(error: syn::Error, place: &str, keys: &[&str]) -> syn::Error {
    let list = keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    syn::Error::new(
        error.span(),
        format!("unknown `audit` {place} attribute; expected one of: {list}"),
    )
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("User"), "user");
        assert_eq!(snake_case("ConfigEntry"), "config_entry");
    }

    #[test]
    fn expansion_records_fields_in_order() {
        let input: DeriveInput = syn::parse_quote! {
            #[audit(resource = "user")]
            struct User {
                #[audit(id)] id: u64,
                name: String,
                #[audit(redact)] password_hash: String,
                #[audit(skip)] last_seen: u64,
                #[audit(rename = "team")] group: String,
            }
        };
        let out = expand(input).unwrap().to_string();
        assert!(
            out.contains("const RESOURCE : & 'static str = \"user\""),
            "{out}"
        );
        let id = out.find("__id (\"id\"").unwrap();
        let name = out.find("__field (\"name\"").unwrap();
        let hash = out.find("__redacted (\"password_hash\"").unwrap();
        let team = out.find("__field (\"team\"").unwrap();
        assert!(id < name && name < hash && hash < team, "{out}");
        assert!(!out.contains("last_seen"), "{out}");
    }

    #[test]
    fn generic_parameters_get_a_serialize_bound() {
        let input: DeriveInput = syn::parse_quote! {
            struct Wrapper<T> { value: T }
        };
        let out = expand(input).unwrap().to_string();
        assert!(
            out.contains("T : :: audit_layer :: __private :: Serialize"),
            "{out}"
        );
        assert!(out.contains("\"wrapper\""), "{out}");
    }
}
