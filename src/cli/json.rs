//! The little JSON that `log --json`, `info --json` and `verify --json`
//! print, written by hand: strings escaped per RFC 8259, integers as they
//! are, no floats. An object is built key by key and keeps its keys in
//! the order given, so the output reads the same as the text form.

use std::fmt::Display;

/// `s` as a JSON string.
pub fn string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON array of already-encoded values.
pub fn array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

/// A filesystem's timestamps as one JSON object, each under its
/// attribute name without `user.` (`{"ext4.mtime":"2026-…Z",…}`), in the
/// order given.
pub fn times_object(times: &[(&str, diskhist::TimeNs)]) -> String {
    let fields: Vec<String> = times
        .iter()
        .map(|(n, t)| {
            format!(
                "{}:{}",
                string(n.trim_start_matches("user.")),
                string(&diskhist::format_rfc3339_ns(*t))
            )
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A JSON object under construction.
#[derive(Default)]
pub struct Object {
    fields: Vec<String>,
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    /// A value already encoded as JSON.
    pub fn raw(mut self, key: &str, json: String) -> Object {
        self.fields.push(format!("{}:{json}", string(key)));
        self
    }

    pub fn str(self, key: &str, value: &str) -> Object {
        self.raw(key, string(value))
    }

    /// An integer (or a bool).
    pub fn num(self, key: &str, value: impl Display) -> Object {
        self.raw(key, value.to_string())
    }

    /// A string, or `null`.
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Object {
        self.raw(key, value.map_or_else(|| "null".into(), string))
    }

    /// An integer, or `null`.
    pub fn opt_num(self, key: &str, value: Option<impl Display>) -> Object {
        self.raw(key, value.map_or_else(|| "null".into(), |v| v.to_string()))
    }

    pub fn build(self) -> String {
        format!("{{{}}}", self.fields.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn objects_keep_their_order() {
        let o = Object::new()
            .str("name", "x")
            .num("n", 3)
            .opt_str("none", None)
            .opt_num("t", Some(-5i64))
            .raw("list", array(["1".to_string(), string("two")]))
            .build();
        assert_eq!(
            o,
            "{\"name\":\"x\",\"n\":3,\"none\":null,\"t\":-5,\"list\":[1,\"two\"]}"
        );
    }
}
