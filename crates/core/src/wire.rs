//! The endpoint's enums and their one wire-name table: `wire_enum!` writes each value's name
//! once and derives from it the value list, `wire_name`, `FromStr`, `Display` and serde, so
//! the input parser and the OpenAPI document (`longcat-api`) read the same names.

/// A name that is not one of an enum's wire names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not one of {expected:?}")]
pub struct UnknownWireName {
    /// The name given.
    pub name: String,
    /// The names accepted, in the endpoint's order.
    pub expected: &'static [&'static str],
}

/// An enum of the endpoint with one wire name per value (implemented by `wire_enum!`).
pub trait WireEnum: Copy + std::str::FromStr<Err = UnknownWireName> + 'static {
    /// The wire names, in the endpoint's order.
    const WIRE_NAMES: &'static [&'static str];

    /// The value's name on the wire.
    fn wire_name(self) -> &'static str;
}

/// Defines a fieldless enum whose values are written `Variant = "wire name"`, once each
/// (mark the default value `#[default]`). Generates `ALL` (the values, in the endpoint's
/// order), `WIRE_NAMES` (their names, same order), `wire_name()`, [`WireEnum`], `FromStr`
/// ([`UnknownWireName`]), `Display` and serde as the wire name.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the endpoint's order.
            pub const ALL: [$name; [$($wire),+].len()] = [$($name::$variant),+];

            /// The wire names, in the order of [`Self::ALL`].
            pub const WIRE_NAMES: [&'static str; [$($wire),+].len()] = [$($wire),+];

            /// The value's name on the wire.
            pub const fn wire_name(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }
        }

        impl $crate::wire::WireEnum for $name {
            const WIRE_NAMES: &'static [&'static str] = &$name::WIRE_NAMES;

            fn wire_name(self) -> &'static str {
                $name::wire_name(self)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::wire::UnknownWireName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $wire => Ok($name::$variant), )+
                    _ => Err($crate::wire::UnknownWireName {
                        name: s.to_owned(),
                        expected: &Self::WIRE_NAMES,
                    }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.wire_name())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.wire_name())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;

                impl ::serde::de::Visitor<'_> for Visitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        write!(f, "one of {:?}", $name::WIRE_NAMES)
                    }

                    fn visit_str<E: ::serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        s.parse()
                            .map_err(|_| E::unknown_variant(s, &$name::WIRE_NAMES))
                    }
                }

                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

pub(crate) use wire_enum;
