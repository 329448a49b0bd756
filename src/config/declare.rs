//! The `options!` macro: turns the one-entry-per-option list in `options.rs`
//! into everything that has to agree about an option.
//!
//! One entry reads
//!
//! ```text
//! /// one-line description (becomes the field's doc and the table's `desc`)
//! "ceph_name" => field: FieldType = default_literal, Kind
//!     , range(LO..=HI, "why the range")          // uint, int and size only
//!     , one_of([A, B, ...], "optional note")     // optional, after the range
//!     ;
//! ```
//!
//! where `Kind` is an [`OptType`](super::OptType) variant (`Str`, `Bool`,
//! `Size`, `Uint`, `Int`). From the entries the macro generates, in entry
//! order:
//!
//! * `pub struct Config` with one documented `pub` field per option;
//! * `impl Default for Config` from the default literals;
//! * `OPTIONS`, the [`OptionSpec`](super::OptionSpec) table: name, type,
//!   the default as text (the literal itself for `str`, its source text
//!   otherwise, so it must be written in canonical form: `131072`, not
//!   `128 << 10`; a test checks that the text is what `get` returns) and the
//!   description;
//! * `apply`, the setter: parses with the type's Ceph parser and range check
//!   (`value.rs`), then the optional `one_of` check, then stores the value;
//! * `text_of`, the getter: the field's `Display` text (`true`/`false`,
//!   decimal numbers, strings as they are);
//! * for every range, a compile-time check that it fits the field's type,
//!   which makes the narrowing `as` in the setter lossless.

/// The description of an entry: rustc hands the macro a `/// text` comment
/// as `#[doc = " text"]`; this drops that one leading space.
pub(super) const fn doc_text(doc: &'static str) -> &'static str {
    match doc.as_bytes() {
        [b' ', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(text) => text,
            Err(_) => doc,
        },
        _ => doc,
    }
}

macro_rules! options {
    // ----- helpers, one rule per option type -------------------------------

    // The `Default` value of a field.
    (@value Str $default:literal) => { String::from($default) };
    (@value $kind:ident $default:literal) => { $default };

    // The default as the table shows it (what `get` returns for it).
    (@text Str $default:literal) => { $default };
    (@text $kind:ident $default:literal) => { stringify!($default) };

    // The 64-bit type Ceph parses an integer type into.
    (@wide Size) => { u64 };
    (@wide Uint) => { u64 };
    (@wide Int) => { i64 };

    // Parse the text `$v` of option `$name`.
    (@parse Str, $name:ident, $v:ident) => {
        $crate::error::Result::<String>::Ok($v.to_owned())
    };
    (@parse Bool, $name:ident, $v:ident) => {
        $crate::config::value::parse_bool($name, $v)
    };
    (@parse Size, $name:ident, $v:ident, $range:expr, $why:expr) => {
        $crate::config::value::parse_size($name, $v, *$range.start(), *$range.end(), $why)
    };
    (@parse Uint, $name:ident, $v:ident, $range:expr, $why:expr) => {
        $crate::config::value::parse_uint($name, $v, *$range.start(), *$range.end(), $why)
    };
    (@parse Int, $name:ident, $v:ident, $range:expr, $why:expr) => {
        $crate::config::value::parse_int($name, $v, *$range.start(), *$range.end(), $why)
    };

    // Store a parsed value into its field. Integers are parsed as 64 bits;
    // `@fits` has checked at compile time that their range fits the field.
    (@store Str, $value:ident, $ty:ty) => { $value };
    (@store Bool, $value:ident, $ty:ty) => { $value };
    (@store $kind:ident, $value:ident, $ty:ty) => { $value as $ty };

    // Compile-time check: every value the range admits fits the field type.
    (@fits $name:literal, $ty:ty, $kind:ident, $range:expr) => {
        const _: () = {
            let range: ::std::ops::RangeInclusive<options!(@wide $kind)> = $range;
            assert!(
                *range.start() as i128 >= <$ty>::MIN as i128
                    && *range.end() as i128 <= <$ty>::MAX as i128,
                concat!("the range of ", $name, " does not fit the type of its field"),
            );
        };
    };

    // The note of a `one_of` check, "" when there is none.
    (@note) => { "" };
    (@note $note:literal) => { $note };

    // ----- the option list ------------------------------------------------

    (
        $(
            #[doc = $desc:literal]
            $name:literal => $field:ident: $ty:ty = $default:literal, $kind:ident
            $(, range($range:expr, $why:expr))?
            $(, one_of([$($allowed:expr),+ $(,)?] $(, $note:literal)?))?
            ;
        )*
    ) => {
        /// The typed values of every option (fields in table order).
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $(
                #[doc = $desc]
                pub $field: $ty,
            )*
        }

        impl Default for Config {
            /// Ceph 16.2.15's defaults, plus ibstack's for its own options.
            fn default() -> Self {
                Config {
                    $( $field: options!(@value $kind $default), )*
                }
            }
        }

        /// The option table, in declaration order; see `options()`.
        pub(super) static OPTIONS: &[$crate::config::OptionSpec] = &[
            $(
                $crate::config::OptionSpec {
                    name: $name,
                    ty: $crate::config::OptType::$kind,
                    default: options!(@text $kind $default),
                    desc: $crate::config::declare::doc_text($desc),
                },
            )*
        ];

        $( $( options!(@fits $name, $ty, $kind, $range); )? )*

        /// Parse `v` as the value of the option `name` (already normalized)
        /// and store it in `c`. An unknown name is an error with a suggestion.
        pub(super) fn apply(c: &mut Config, name: &str, v: &str) -> $crate::error::Result<()> {
            match name {
                $(
                    $name => {
                        let value = options!(@parse $kind, name, v $(, $range, $why)?)?;
                        $(
                            $crate::config::value::check_one_of(
                                name,
                                v,
                                $crate::config::OptType::$kind,
                                &value,
                                &[$($allowed),+],
                                options!(@note $($note)?),
                            )?;
                        )?
                        c.$field = options!(@store $kind, value, $ty);
                    }
                )*
                _ => return Err($crate::config::suggest::unknown_option(name)),
            }
            Ok(())
        }

        /// The canonical text of the option `name`'s value in `c`, `None` if
        /// there is no such option.
        pub(super) fn text_of(c: &Config, name: &str) -> Option<String> {
            Some(match name {
                $( $name => c.$field.to_string(), )*
                _ => return None,
            })
        }
    };
}
