//! The check outside JSON data passes where it enters the gateway (client
//! `send`, publish bodies, a lambda's `push`, `publish`, `buffer` data and
//! `set_state` state), before it is forwarded byte for byte.
//!
//! `RawValue` checks JSON syntax only. Strict JSON readers (serde_json's
//! `Value`, Go's `encoding/json` into `float64`) refuse more: a number that
//! does not fit an IEEE-754 double (`1e999`), a `\u` escape that is a lone
//! UTF-16 surrogate (`"\ud800"`), nesting deeper than serde_json's 128-level
//! limit. Such data inside a batched lambda request would make the whole
//! request unreadable to such a lambda, so it is refused at the edge
//! (docs/fuzzing.md, finding 1).
//!
//! The check is one pass of serde_json's reader with a visitor that keeps
//! nothing: no `Value` is built and the visitor allocates nothing (serde_json
//! only reuses its scratch buffer for strings with escapes).

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Checks that `data` is readable by strict JSON readers: every number fits
/// an f64, every string escape is valid Unicode, nesting stays under 128.
/// The error says what and where (line and column inside `data`).
pub fn check(data: &RawValue) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(data.get());
    Strict::deserialize(&mut de)?;
    de.end()
}

/// Reads any JSON value and keeps nothing.
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Strict)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }

    /// serde_json only calls this with a finite value: a number outside
    /// f64's range fails before, with "number out of range".
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        // serde_json reads a key through `deserialize_any` even when ignored,
        // so its escapes are checked like any string's.
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<Strict>()?;
        }
        Ok(Strict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn accepts_what_strict_readers_read() {
        for s in [
            "null",
            "true",
            "0",
            "-0",
            "1.7976931348623157e308",
            "-1.7976931348623157e308",
            "1e-999",
            "123456789012345678901234567890",
            "18446744073709551615",
            "-9223372036854775808",
            r#""a\"\\\n\u00e9\ud83d\ude00""#,
            r#"{"a":[1,2.5,{"b":null}],"\u00e9":"x"}"#,
            "[]",
            "{}",
            " [ 1 , 2 ] ",
        ] {
            assert!(check(&raw(s)).is_ok(), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_ok(), "{s}");
        }
        let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert!(check(&raw(&deep)).is_ok());
    }

    #[test]
    fn refuses_what_strict_readers_refuse() {
        for s in [
            "1e999",
            "-1e999",
            "1.8e308",
            r#"{"n":1e999}"#,
            r#"[1,2,{"x":[-2E+400]}]"#,
            &format!("1{}", "0".repeat(400)),
            r#""\ud800""#,
            r#""\udc00x""#,
            r#"{"\ud800":1}"#,
        ] {
            let e = check(&raw(s)).expect_err(s);
            assert!(serde_json::from_str::<serde_json::Value>(s).is_err(), "{s}");
            assert!(e.line() >= 1, "{s}: {e}");
        }
        assert!(check(&raw("1e999"))
            .unwrap_err()
            .to_string()
            .contains("number out of range"));
        let deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(check(&raw(&deep)).is_err());
    }

    proptest! {
        /// The check and serde_json's `Value` agree on any JSON number.
        #[test]
        fn numbers_agree_with_value(
            int in "-?(0|[1-9][0-9]{0,400})",
            frac in "(\\.[0-9]{1,20})?",
            exp in "([eE][+-]?[0-9]{1,4})?",
        ) {
            let n = format!("{int}{frac}{exp}");
            let data = raw(&format!(r#"{{"n":[{n}]}}"#));
            let strict = serde_json::from_str::<serde_json::Value>(data.get()).is_ok();
            prop_assert_eq!(check(&data).is_ok(), strict, "{}", n);
        }
    }
}
