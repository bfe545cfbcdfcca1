//! `#[derive(Record)]`: a hand-off record's encoding and field table, generated from its
//! definition, so the layout a swap relies on is the compiler's view of the struct and
//! never a table kept by hand beside it.
//!
//! Input: a `#[repr(C)]` struct with named fields whose types implement
//! `updater::record::Field` (integers, `bool`, byte arrays, nested records, fixed arrays
//! of those). Attributes:
//!
//! - on the struct, `#[record(kind = EXPR, version = N)]` makes it a hand-off record
//!   kind (`updater::record::Record`); without it the struct is a nested record
//!   (`updater::record::Field` only), usable as a field of another record;
//! - on the struct, `#[record(shared)]`: a struct of atomics shared between CPUs (the
//!   hand-off descriptor), and `#[record(padded)]`: a struct with padding — described,
//!   encoded field by field, but not plain data (never adopted in place);
//! - on a field, `#[record(default = EXPR)]`: the value a record written by an older
//!   image, which lacked the field, gets when converted by field (default 0);
//! - on a field, `#[record(alias = "old_name")]`: the name the field had in an older
//!   version (a rename is never guessed).
//!
//! Output: `impl Field` (encoding at the `repr(C)` offsets, little-endian, and the
//! field table as `Field::TYPE`), `impl Element` (so arrays of it are fields), and, with
//! `kind`/`version`, `impl Record`. Unless `shared` or `padded`, the struct must have no
//! padding (a compile-time assertion says so, naming the struct) and gets `impl Plain`: its memory
//! is its encoding, so a kernel can hand over a slice of records in one copy and adopt
//! one in place (`updater::record::entries_mut`). The generated code names the runtime
//! crate as `::updater`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::quote;
use syn::{parse_macro_input, Attribute, Data, DeriveInput, Expr, Fields, LitInt, LitStr};

/// Derives `updater::record::Field` (and `Record` with `#[record(kind, version)]`).
#[proc_macro_derive(Record, attributes(record))]
pub fn derive_record(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// What the struct-level attribute says.
#[derive(Default)]
struct RecordAttr {
    kind: Option<Expr>,
    version: Option<LitInt>,
    /// Shared between CPUs (atomics): described, but not plain data.
    shared: bool,
    /// Has padding: described, but not plain data (never adopted in place).
    padded: bool,
}

/// What a field-level attribute says.
#[derive(Default)]
struct FieldAttr {
    default: Option<Expr>,
    alias: Option<LitStr>,
}

fn record_attr(attrs: &[Attribute]) -> syn::Result<RecordAttr> {
    let mut out = RecordAttr::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("record")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("kind") {
                out.kind = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("version") {
                out.version = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("shared") {
                out.shared = true;
                Ok(())
            } else if meta.path.is_ident("padded") {
                out.padded = true;
                Ok(())
            } else {
                Err(meta.error("expected `kind = …`, `version = N`, `shared` or `padded`"))
            }
        })?;
    }
    Ok(out)
}

fn field_attr(attrs: &[Attribute]) -> syn::Result<FieldAttr> {
    let mut out = FieldAttr::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("record")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("default") {
                out.default = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("alias") {
                out.alias = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("expected `default = …` or `alias = \"name\"`"))
            }
        })?;
    }
    Ok(out)
}

fn is_packed(attrs: &[Attribute]) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("repr")).any(|a| {
        let mut packed = false;
        let _ = a.parse_nested_meta(|meta| {
            packed |= meta.path.is_ident("packed");
            Ok(())
        });
        packed
    })
}

fn is_repr_c(attrs: &[Attribute]) -> bool {
    attrs.iter().filter(|a| a.path().is_ident("repr")).any(|a| {
        let mut c = false;
        let _ = a.parse_nested_meta(|meta| {
            c |= meta.path.is_ident("C");
            Ok(())
        });
        c
    })
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "a record has no generic parameters",
        ));
    }
    if !is_repr_c(&input.attrs) {
        return Err(syn::Error::new(
            Span::call_site(),
            "a record must be `#[repr(C)]`: its field table is the C layout",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            Span::call_site(),
            "only structs with named fields can be records",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            Span::call_site(),
            "only structs with named fields can be records",
        ));
    };
    let rt = quote!(::updater::record);
    // Fields of a packed struct cannot be borrowed: they are copied out to be encoded.
    let packed = is_packed(&input.attrs);

    let mut descs = Vec::new();
    let mut puts = Vec::new();
    let mut gets = Vec::new();
    let mut checks = Vec::new();
    let mut sizes = Vec::new();
    let mut types = Vec::new();
    for f in &fields.named {
        let ident = f.ident.as_ref().expect("named field");
        let ty = &f.ty;
        let attr = field_attr(&f.attrs)?;
        let field_name = ident.to_string();
        let default = match &attr.default {
            Some(e) => quote!((#e) as u64),
            None => quote!(0),
        };
        let alias = match &attr.alias {
            Some(a) => quote!(::core::option::Option::Some(#a)),
            None => quote!(::core::option::Option::None),
        };
        let at = quote!(::core::mem::offset_of!(#name, #ident));
        let size = quote!(<#ty as #rt::Field>::SIZE);
        descs.push(quote! {
            #rt::FieldDesc {
                name: #field_name,
                offset: #at as u32,
                size: #size as u32,
                ty: <#ty as #rt::Field>::TYPE,
                default: #default,
                alias: #alias,
            }
        });
        puts.push(if packed {
            quote! {
                let value = self.#ident;
                #rt::Field::put(&value, &mut out[#at..#at + #size]);
            }
        } else {
            quote! {
                #rt::Field::put(&self.#ident, &mut out[#at..#at + #size]);
            }
        });
        gets.push(quote! {
            #ident: <#ty as #rt::Field>::get(&bytes[#at..#at + #size])?,
        });
        checks.push(quote! {
            && <#ty as #rt::Field>::check(&bytes[#at..#at + #size])
        });
        sizes.push(size);
        types.push(ty);
    }
    let type_name = name.to_string();

    let field_impl = quote! {
        impl #rt::Field for #name {
            const TYPE: #rt::FieldType = #rt::FieldType::Record(&#rt::Layout {
                name: #type_name,
                size: ::core::mem::size_of::<#name>() as u32,
                fields: &[#(#descs),*],
            });
            const SIZE: usize = ::core::mem::size_of::<#name>();
            fn put(&self, out: &mut [u8]) {
                let out = &mut out[..<Self as #rt::Field>::SIZE];
                out.fill(0);
                #(#puts)*
            }
            fn get(bytes: &[u8]) -> ::core::result::Result<Self, #rt::WireError> {
                let size = <Self as #rt::Field>::SIZE;
                if bytes.len() < size {
                    return ::core::result::Result::Err(#rt::WireError::Short {
                        needed: size,
                        available: bytes.len(),
                    });
                }
                ::core::result::Result::Ok(Self { #(#gets)* })
            }
            fn check(bytes: &[u8]) -> bool {
                bytes.len() >= <Self as #rt::Field>::SIZE #(#checks)*
            }
        }

        impl #rt::Element for #name {}
    };

    let attr = record_attr(&input.attrs)?;
    let message = format!(
        "`{name}` has padding between or after its fields: make every byte a field (e.g. `reserved: [u8; N]`), \
         so that a record's memory is its encoding and it can be adopted in place \
         (or mark it `#[record(padded)]` if it never is)"
    );
    let plain_impl = if attr.shared || attr.padded {
        quote!()
    } else {
        quote! {
            const _: () = ::core::assert!(
                ::core::mem::size_of::<#name>() == 0 #(+ #sizes)*,
                #message
            );
            const _: fn() = || {
                fn plain<T: #rt::Plain>() {}
                #(plain::<#types>();)*
            };
            // SAFETY: `repr(C)` (checked above), no padding (the assertion), and every
            // field `Plain`: the memory of a value is its encoding, every byte initialised.
            #[allow(unsafe_code)]
            unsafe impl #rt::Plain for #name {}
        }
    };

    let record_impl = match (attr.kind, attr.version) {
        (Some(kind), Some(version)) => quote! {
            impl #rt::Record for #name {
                const KIND: #rt::RecordKind = #kind;
                const SCHEMA: #rt::SchemaVersion =
                    #rt::SchemaVersion::new(#version);
                const LAYOUT: &'static #rt::Layout = #rt::layout_of(&<Self as #rt::Field>::TYPE);
            }
        },
        (None, None) => quote!(),
        _ => {
            return Err(syn::Error::new(
                Span::call_site(),
                "a record kind needs both `kind = …` and `version = N` in #[record(…)]",
            ))
        }
    };
    Ok(quote! {
        #field_impl
        #plain_impl
        #record_impl
    })
}
