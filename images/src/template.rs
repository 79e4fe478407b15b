//! `{{ var }}` substitution, used for the ACI manifest template of `container.yaml` (the
//! seed's `content:`). Whitespace inside the braces is ignored; an unknown variable or an
//! unterminated `{{` is an error naming the variable and the known ones. Values can be escaped
//! for the context they land in (JSON string contents for the ACI manifest).

use std::collections::BTreeMap;

/// A template error, with the byte offset in the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown variable `{name}` at byte {offset} (known: {known})")]
    Unknown {
        name: String,
        offset: usize,
        known: String,
    },
    #[error("unterminated `{{{{` at byte {offset}")]
    Unterminated { offset: usize },
    #[error("invalid variable name `{name}` at byte {offset}")]
    BadName { name: String, offset: usize },
}

/// Substitute every `{{ name }}` in `template` with `escape(vars[name])`.
pub fn render(
    template: &str,
    vars: &BTreeMap<String, String>,
    escape: fn(&str) -> String,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut base = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unterminated {
            offset: base + start,
        })?;
        let name = after[..end].trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(TemplateError::BadName {
                name: name.to_string(),
                offset: base + start,
            });
        }
        match vars.get(name) {
            Some(v) => out.push_str(&escape(v)),
            None => {
                return Err(TemplateError::Unknown {
                    name: name.to_string(),
                    offset: base + start,
                    known: vars.keys().cloned().collect::<Vec<_>>().join(", "),
                })
            }
        }
        let consumed = start + 2 + end + 2;
        base += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// No escaping.
pub fn raw(s: &str) -> String {
    s.to_string()
}

/// Escape for the inside of a JSON string (quotes not added).
pub fn json_string_contents(s: &str) -> String {
    let q = serde_json::Value::String(s.to_string()).to_string();
    q[1..q.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("name", "nginx"), ("version", "1.0"), ("q", "a\"b")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_with_and_without_spaces() {
        let r = render("{{ name }}-{{version}}!", &vars(), raw).expect("render");
        assert_eq!(r, "nginx-1.0!");
    }

    #[test]
    fn escapes_for_json() {
        let r = render("\"{{ q }}\"", &vars(), json_string_contents).expect("render");
        assert_eq!(r, "\"a\\\"b\"");
    }

    #[test]
    fn unknown_variable_is_an_error() {
        let e = render("x {{ nope }}", &vars(), raw).expect_err("unknown");
        assert!(matches!(e, TemplateError::Unknown { ref name, offset: 2, .. } if name == "nope"));
        assert!(e.to_string().contains("known: name, q, version"));
    }

    #[test]
    fn unterminated_is_an_error() {
        assert_eq!(
            render("ab {{ name", &vars(), raw),
            Err(TemplateError::Unterminated { offset: 3 })
        );
    }
}
