//! Objects decode from JSON objects only.
//!
//! serde's derived structs accept a JSON array too, filling the fields in order, so `[]` is a
//! struct of defaults: `PUT /v1/session/create` with `[]` created a session and
//! `PUT /v1/operator/autopilot/configuration` with `[]` reset every setting. Go's decoder, and
//! so Consul, refuses an array where it expects an object. [`from_value`] decodes like
//! `serde_json::from_value` but refuses an array wherever a struct is expected, at any depth:
//! it wraps the deserializer, and every visitor, map, sequence and seed it hands out, so that
//! nested values are decoded through the same check.
//!
//! (Values under `#[serde(untagged)]` enums or `flatten` are buffered by serde and decoded
//! past the wrapper; none of the API's object-valued fields use them.)

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_json::Value;

/// Decodes `value` into `T`, refusing a JSON array wherever `T` (or anything inside it)
/// expects an object.
///
/// Errors are serde_json's own, so callers word them as they would a plain decode failure.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Strict(value))
}

/// A deserializer whose structs must come from objects.
///
/// Every method forwards to the wrapped deserializer with its visitor wrapped in turn: the check
/// travels down with each nested value rather than being done once at the top.
struct Strict<D>(D);

/// A visitor that refuses sequences when it visits a struct (`object_of` names it).
struct Wrap<V> {
    inner: V,
    /// The struct's name when this visitor decodes a struct (`None` for anything else): only then
    /// is an array refused.
    object_of: Option<&'static str>,
}

impl<V> Wrap<V> {
    fn any(inner: V) -> Wrap<V> {
        Wrap {
            inner,
            object_of: None,
        }
    }
}

// The `Deserializer` methods whose visitor only needs wrapping; the ones that take a name or fields
// are written out below.
macro_rules! forward_deserialize {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Wrap::any(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap::any(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Wrap::any(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap::any(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, Wrap::any(visitor))
    }

    // The one place a struct is announced: the visitor learns it must refuse an array here.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Wrap {
            inner: visitor,
            object_of: Some(name),
        };
        self.0.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Wrap::any(visitor))
    }

    // Forwarded so types that encode differently for humans and machines (addresses, times) keep
    // their JSON forms.
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

// Scalar visits carry no nested value: passed through as they are.
macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit!(
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict(d))
    }

    // serde's derived struct visitors accept a sequence (fields in order); this is the one place
    // the wrapper says no, with the struct's name so the message points at the offending value.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if let Some(name) = self.object_of {
            return Err(de::Error::custom(format_args!(
                "invalid type: array, expected a JSON object ({name})"
            )));
        }
        self.inner.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Enum(data))
    }
}

/// A sequence whose elements decode strictly.
///
/// Needed for lists of structs (`Checks`, `Upstreams`): each element is decoded through [`Strict`]
/// again.
struct Seq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// A map whose keys and values decode strictly.
struct Map<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// A seed that decodes through [`Strict`].
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

/// An enum whose payload decodes strictly.
///
/// Enums with struct payloads (`{"Variant": {...}}`) must not accept a sequence either.
struct Enum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Variant<A::Variant>), A::Error> {
        self.0
            .variant_seed(Seed(seed))
            .map(|(v, variant)| (v, Variant(variant)))
    }
}

/// An enum variant whose payload decodes strictly.
struct Variant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap::any(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Wrap {
            inner: visitor,
            // A struct variant has no type name of its own to report.
            object_of: Some("struct variant"),
        };
        self.0.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Inner {
        a: u32,
        b: String,
    }

    // Every kind of nesting the API's bodies use: an optional struct, a list and a map of structs,
    // a list of strings and a tuple (which must still accept an array).
    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Outer {
        inner: Option<Inner>,
        list: Vec<Inner>,
        map: BTreeMap<String, Inner>,
        tags: Vec<String>,
        pair: (u8, u8),
    }

    #[test]
    fn arrays_are_refused_where_objects_are_expected_at_any_depth() {
        for v in [
            json!([]),
            json!({"inner": []}),
            json!({"inner": [1, "x"]}),
            json!({"list": [{"a": 1}, [2]]}),
            json!({"map": {"k": [1, "x"]}}),
        ] {
            // What serde alone does with it: accepted, positionally.
            assert!(serde_json::from_value::<Outer>(v.clone()).is_ok(), "{v}");
            let e = from_value::<Outer>(v.clone()).expect_err("refused");
            assert!(e.to_string().contains("expected a JSON object"), "{v}: {e}");
        }
    }

    #[test]
    fn everything_else_decodes_as_serde_json_does() {
        let v = json!({"inner": {"a": 1, "b": "x"}, "list": [{"a": 2}], "map": {"k": {"b": "y"}},
                       "tags": ["t"], "pair": [1, 2]});
        assert_eq!(
            from_value::<Outer>(v.clone()).expect("strict"),
            serde_json::from_value::<Outer>(v).expect("serde")
        );
        assert_eq!(
            from_value::<Vec<u32>>(json!([1, 2])).expect("list"),
            vec![1, 2]
        );
        assert_eq!(
            from_value::<Value>(json!([{"a": 1}])).expect("any"),
            json!([{"a": 1}])
        );
        assert!(from_value::<Outer>(json!("text")).is_err());
    }
}
