//! `#[sensitive(...)]` on an axum handler: parse, validate, expand.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    Expr, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, ReturnType, Token,
    Type,
};

use crate::args::set_once;

mod kw {
    syn::custom_keyword!(action);
    syn::custom_keyword!(resource);
    syn::custom_keyword!(key);
    syn::custom_keyword!(create);
    syn::custom_keyword!(capture_body);
    syn::custom_keyword!(on_load_error);
}

const KEYS: &str = "`action`, `resource`, `key`, `create`, `capture_body`, `on_load_error`";

/// The attribute's arguments.
pub(crate) struct Args {
    action: Option<LitStr>,
    resource: Option<Type>,
    key: Option<Expr>,
    create: Option<Span>,
    capture_body: Option<Span>,
    /// `Some(true)` for `"refuse"`.
    refuse_on_load_error: Option<bool>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args {
            action: None,
            resource: None,
            key: None,
            create: None,
            capture_body: None,
            refuse_on_load_error: None,
        };
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::action) {
                let span = input.parse::<kw::action>()?.span;
                input.parse::<Token![=]>()?;
                let action: LitStr = input.parse()?;
                if action.value().trim().is_empty() {
                    return Err(syn::Error::new_spanned(
                        &action,
                        "the action cannot be empty",
                    ));
                }
                set_once(&mut args.action, action, span, "action")?;
            } else if lookahead.peek(kw::resource) {
                let span = input.parse::<kw::resource>()?.span;
                input.parse::<Token![=]>()?;
                set_once(&mut args.resource, input.parse()?, span, "resource")?;
            } else if lookahead.peek(kw::key) {
                let span = input.parse::<kw::key>()?.span;
                input.parse::<Token![=]>()?;
                set_once(&mut args.key, input.parse()?, span, "key")?;
            } else if lookahead.peek(kw::create) {
                let span = input.parse::<kw::create>()?.span;
                set_once(&mut args.create, span, span, "create")?;
            } else if lookahead.peek(kw::capture_body) {
                let span = input.parse::<kw::capture_body>()?.span;
                set_once(&mut args.capture_body, span, span, "capture_body")?;
            } else if lookahead.peek(kw::on_load_error) {
                let span = input.parse::<kw::on_load_error>()?.span;
                input.parse::<Token![=]>()?;
                let choice: LitStr = input.parse()?;
                let refuse = match choice.value().as_str() {
                    "refuse" => true,
                    "proceed" => false,
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &choice,
                            "expected `on_load_error = \"refuse\"` (answer 503 without running \
                             the handler) or `\"proceed\"` (the default)",
                        ));
                    }
                };
                set_once(
                    &mut args.refuse_on_load_error,
                    refuse,
                    span,
                    "on_load_error",
                )?;
            } else {
                let error = lookahead.error();
                return Err(syn::Error::new(
                    error.span(),
                    format!("unknown `sensitive` argument; expected one of: {KEYS}"),
                ));
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// One parameter of the handler, renamed for the generated function.
struct Param {
    pattern: Pat,
    ty: Type,
    name: Ident,
}

pub(crate) fn expand(args: Args, item: ItemFn) -> syn::Result<TokenStream> {
    let signature = &item.sig;
    check_async(signature)?;
    let (action, resource) = check_required(&args)?;
    check_key_or_create(&args)?;
    let params = check_params(signature)?;
    let capture_index = check_capture_body(&args, &params, signature)?;

    let fn_name = &signature.ident;
    let meta = format_ident!("__audit_sensitive_{}", fn_name);
    let refuse = args.refuse_on_load_error.unwrap_or(false);
    let vis = &item.vis;
    let attrs = &item.attrs;
    let generics = &signature.generics;
    let where_clause = &generics.where_clause;
    let body = &item.block;

    let declared = params.iter().enumerate().map(|(i, p)| {
        let (name, ty) = (&p.name, &p.ty);
        if Some(i) == capture_index {
            quote! { #name: ::audit_layer::__private::CaptureBody<#ty> }
        } else {
            quote! { #name: #ty }
        }
    });
    let unpack = params.iter().enumerate().map(|(i, p)| {
        let (name, pattern) = (&p.name, &p.pattern);
        if Some(i) == capture_index {
            quote! { let #pattern = #name.0; }
        } else {
            quote! { let #pattern = #name; }
        }
    });
    let output_ty = match &signature.output {
        ReturnType::Default => Some(quote!(())),
        ReturnType::Type(_, ty) if matches!(**ty, Type::ImplTrait(_)) => None,
        ReturnType::Type(_, ty) => Some(quote!(#ty)),
    };
    let run_body = match output_ty {
        Some(ty) => quote! {
            ::audit_layer::__private::typed::<#ty, _>(async move {
                #(#unpack)*
                #body
            })
            .await
        },
        None => quote! {
            async move {
                #(#unpack)*
                #body
            }
            .await
        },
    };

    let body = match &args.key {
        Some(key) => {
            let (state_param, state_ty) = state_param(&params, signature)?;
            let key_index = key_param(key, &params)?;
            let key_param = &params[key_index];
            let state_name = &state_param.name;
            let mut by_ref = key_param.pattern.clone();
            StripBindingModes.visit_pat_mut(&mut by_ref);
            let key_name = &key_param.name;
            let key_access = if Some(key_index) == capture_index {
                quote! { &#key_name.0 }
            } else {
                quote! { &#key_name }
            };
            let key_span = key.span();
            let owned_key = quote_spanned! {key_span=>
                ::audit_layer::__private::owned_key::<#resource, #state_ty>(&(#key))
            };
            quote! {
                let __audit_state: #state_ty = ::core::clone::Clone::clone(&#state_name.0);
                let __audit_key = {
                    #[allow(unused_variables, clippy::needless_borrow)]
                    let #by_ref = #key_access;
                    #owned_key
                };
                let mut __audit_pending = __audit_route
                    .load_before::<#resource, #state_ty>(&__audit_state, &__audit_key)
                    .await;
                if let ::core::option::Option::Some(__audit_refusal) = __audit_pending.refusal() {
                    return __audit_refusal;
                }
                let __audit_output = #run_body;
                __audit_pending
                    .load_after::<#state_ty>(&__audit_state, &__audit_key)
                    .await;
                ::audit_layer::__private::IntoResponse::into_response(__audit_output)
            }
        }
        None => {
            // A handler that returns no created resource is reported at its return type.
            let output_span = match &signature.output {
                ReturnType::Type(_, ty) => ty.span(),
                ReturnType::Default => signature.ident.span(),
            };
            let created = quote_spanned! {output_span=> __audit_pending.created(&__audit_output); };
            quote! {
                let __audit_pending = __audit_route.creating::<#resource>();
                let __audit_output = #run_body;
                #created
                ::audit_layer::__private::IntoResponse::into_response(__audit_output)
            }
        }
    };

    Ok(quote! {
        #(#attrs)*
        #vis async fn #fn_name #generics (
            __audit_route: ::audit_layer::__private::SensitiveRoute<#meta>,
            #(#declared),*
        ) -> ::audit_layer::__private::Response #where_clause {
            #body
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #meta;

        #[automatically_derived]
        impl ::audit_layer::__private::SensitiveMeta for #meta {
            const ACTION: &'static str = #action;
            const REFUSE_ON_LOAD_ERROR: bool = #refuse;
        }
    })
}

/// A sensitive handler is an `async fn`: the before-state is read and the after-state
/// recorded around the body's future.
fn check_async(signature: &syn::Signature) -> syn::Result<()> {
    if signature.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            signature.fn_token,
            "`#[sensitive]` handlers must be `async fn`: the before-state is read and the \
             after-state recorded around the body's future",
        ));
    }
    Ok(())
}

/// The arguments every handler needs: its action and the resource it changes.
fn check_required(args: &Args) -> syn::Result<(&LitStr, &Type)> {
    let action = args.action.as_ref().ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "missing `action = \"...\"`: name the action this handler performs, like \
             `#[sensitive(action = \"user.role.change\", resource = User, key = id)]`",
        )
    })?;
    let resource = args.resource.as_ref().ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "missing `resource = Type`: the `Auditable` + `Snapshot` type this handler changes",
        )
    })?;
    Ok((action, resource))
}

/// Exactly one of `key = <parameter>` (a change to an existing resource) and `create`.
fn check_key_or_create(args: &Args) -> syn::Result<()> {
    match (&args.key, args.create) {
        (Some(key), Some(_)) => Err(syn::Error::new_spanned(
            key,
            "`key` and `create` exclude each other: a created resource has no key yet",
        )),
        (None, None) => Err(syn::Error::new(
            Span::call_site(),
            "missing `key = <parameter>` (the resource's key, like `key = id` for \
             `Path(id): Path<u64>`), or `create` for a handler that creates the resource",
        )),
        _ => Ok(()),
    }
}

/// The handler's parameters, each renamed for the generated function; a method is refused.
fn check_params(signature: &syn::Signature) -> syn::Result<Vec<Param>> {
    signature
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| match input {
            FnArg::Receiver(receiver) => Err(syn::Error::new_spanned(
                receiver,
                "`#[sensitive]` handlers are free functions, not methods",
            )),
            FnArg::Typed(typed) => Ok(Param {
                pattern: (*typed.pat).clone(),
                ty: (*typed.ty).clone(),
                name: format_ident!("__audit_arg{}", index),
            }),
        })
        .collect()
}

/// With `capture_body`, the index of the body extractor (the last parameter), wrapped so
/// its JSON is recorded before it is parsed.
fn check_capture_body(
    args: &Args,
    params: &[Param],
    signature: &syn::Signature,
) -> syn::Result<Option<usize>> {
    if args.capture_body.is_none() {
        return Ok(None);
    }
    params.len().checked_sub(1).map(Some).ok_or_else(|| {
        syn::Error::new_spanned(
            &signature.ident,
            "`capture_body` needs a body extractor as the last parameter",
        )
    })
}

/// The `State(..)` parameter and its state type.
fn state_param<'a>(
    params: &'a [Param],
    signature: &syn::Signature,
) -> syn::Result<(&'a Param, Type)> {
    params
        .iter()
        .find_map(|param| state_type(&param.ty).map(|ty| (param, ty)))
        .ok_or_else(|| {
            syn::Error::new_spanned(
                &signature.ident,
                "a `#[sensitive]` handler reads its resource through its `State(..)` parameter: \
                 add one, like `State(app): State<AppState>`",
            )
        })
}

/// `S` of a `State<S>` (or `axum::extract::State<S>`) type.
fn state_type(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "State" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    })
}

/// The index of the parameter whose pattern binds the root variable of the key expression.
fn key_param(key: &Expr, params: &[Param]) -> syn::Result<usize> {
    let root = root_ident(key).ok_or_else(|| {
        syn::Error::new_spanned(
            key,
            "`key` must name a parameter binding (`key = id`) or an expression over one \
             (`key = body.user`)",
        )
    })?;
    let mut bound = Vec::new();
    for (index, param) in params.iter().enumerate() {
        let mut names = Vec::new();
        bindings(&param.pattern, &mut names);
        if names.contains(&root) {
            return Ok(index);
        }
        bound.extend(names);
    }
    let list = if bound.is_empty() {
        "none".to_owned()
    } else {
        bound
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(syn::Error::new_spanned(
        root,
        format!("`key = {root}` names no parameter of this handler; its parameters bind: {list}"),
    ))
}

/// The variable an expression starts from: `id`, `body` of `body.user`, ...
fn root_ident(expr: &Expr) -> Option<&Ident> {
    match expr {
        Expr::Path(path) if path.qself.is_none() => path.path.get_ident(),
        Expr::Field(field) => root_ident(&field.base),
        Expr::MethodCall(call) => root_ident(&call.receiver),
        Expr::Index(index) => root_ident(&index.expr),
        Expr::Paren(paren) => root_ident(&paren.expr),
        Expr::Reference(reference) => root_ident(&reference.expr),
        Expr::Unary(unary) => root_ident(&unary.expr),
        _ => None,
    }
}

/// The variables a pattern binds.
fn bindings<'a>(pattern: &'a Pat, out: &mut Vec<&'a Ident>) {
    match pattern {
        Pat::Ident(ident) => {
            out.push(&ident.ident);
            if let Some((_, sub)) = &ident.subpat {
                bindings(sub, out);
            }
        }
        Pat::TupleStruct(tuple) => tuple.elems.iter().for_each(|p| bindings(p, out)),
        Pat::Tuple(tuple) => tuple.elems.iter().for_each(|p| bindings(p, out)),
        Pat::Struct(strukt) => strukt.fields.iter().for_each(|f| bindings(&f.pat, out)),
        Pat::Reference(reference) => bindings(&reference.pat, out),
        Pat::Type(typed) => bindings(&typed.pat, out),
        Pat::Paren(paren) => bindings(&paren.pat, out),
        Pat::Slice(slice) => slice.elems.iter().for_each(|p| bindings(p, out)),
        _ => {}
    }
}

/// Removes `mut` and `ref` so a pattern can destructure a reference.
struct StripBindingModes;

impl VisitMut for StripBindingModes {
    fn visit_pat_ident_mut(&mut self, ident: &mut syn::PatIdent) {
        ident.mutability = None;
        ident.by_ref = None;
        syn::visit_mut::visit_pat_ident_mut(self, ident);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(args: TokenStream, item: TokenStream) -> syn::Result<String> {
        let args: Args = syn::parse2(args)?;
        let item: ItemFn = syn::parse2(item)?;
        expand(args, item).map(|t| t.to_string())
    }

    #[test]
    fn keyed_handler_reads_before_and_after() {
        let out = expand_str(
            quote!(action = "user.role.change", resource = User, key = id),
            quote! {
                async fn change_role(State(app): State<AppState>, Path(id): Path<u64>, Json(body): Json<RoleChange>) -> Result<Json<User>, ApiError> {
                    app.set_role(id, body.role)?;
                    Ok(Json(app.user(id)))
                }
            },
        )
        .unwrap();
        assert!(
            out.contains("SensitiveRoute < __audit_sensitive_change_role >"),
            "{out}"
        );
        assert!(out.contains("load_before :: < User , AppState >"), "{out}");
        assert!(out.contains("load_after :: < AppState >"), "{out}");
        assert!(out.contains("let Path (id) = & __audit_arg1"), "{out}");
        assert!(out.contains("\"user.role.change\""), "{out}");
    }

    #[test]
    fn mut_bindings_are_stripped_for_the_key_only() {
        let out = expand_str(
            quote!(action = "a", resource = R, key = id),
            quote! {
                async fn h(State(s): State<S>, Path(mut id): Path<u64>) {}
            },
        )
        .unwrap();
        assert!(out.contains("let Path (id) = & __audit_arg1"), "{out}");
        assert!(out.contains("let Path (mut id) = __audit_arg1"), "{out}");
    }

    #[test]
    fn key_must_name_a_parameter() {
        let error = expand_str(
            quote!(action = "a", resource = R, key = user_id),
            quote! { async fn h(State(s): State<S>, Path(id): Path<u64>) {} },
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "`key = user_id` names no parameter of this handler; its parameters bind: `s`, `id`"
        );
    }
}
