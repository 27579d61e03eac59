//! CEL for a ValidatingAdmissionPolicy: the parent is `object` there, its previous version
//! `oldObject`, where CRD rules (and ruleop's) say `self` and `oldSelf`.
//!
//! The rewrite works on tokens, not text: an identifier is renamed only where it is a
//! variable, never inside a string or bytes literal (raw or not, quoted once or thrice), a
//! comment, a backquoted field name, or as a field after `.` (`x.self` stays).

use super::{OLD_SELF, SELF};

/// The policy's name for the variable `name`, if it is one of the rule's.
fn renamed(name: &str) -> Option<&'static str> {
    match name {
        SELF => Some("object"),
        OLD_SELF => Some("oldObject"),
        _ => None,
    }
}

/// `source` with `self` → `object` and `oldSelf` → `oldObject`.
pub fn to_policy(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 8);
    let mut i = 0;
    // The last significant character written: a `.` makes the next identifier a field.
    let mut last = ' ';
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n);
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        if c == '"' || c == '\'' {
            let end = literal_end(&chars, i, false);
            out.extend(&chars[i..end]);
            i = end;
            last = c;
            continue;
        }
        if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == '`')
                .map_or(chars.len(), |n| i + n + 2);
            out.extend(&chars[i..end]);
            i = end;
            last = '`';
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // `r"..."`, `b'...'`, `rb"..."`: a string prefix, not a name.
            if matches!(chars.get(i), Some('"' | '\''))
                && word.len() <= 2
                && word.chars().all(|c| matches!(c, 'r' | 'R' | 'b' | 'B'))
            {
                let raw = word.contains(['r', 'R']);
                let end = literal_end(&chars, i, raw);
                out.push_str(&word);
                out.extend(&chars[i..end]);
                i = end;
                last = '"';
                continue;
            }
            match renamed(&word) {
                Some(name) if last != '.' => out.push_str(name),
                _ => out.push_str(&word),
            }
            last = 'a';
            continue;
        }
        out.push(c);
        if !c.is_whitespace() {
            last = c;
        }
        i += 1;
    }
    out
}

/// The index after the string literal whose opening quote is at `start`.
fn literal_end(chars: &[char], start: usize, raw: bool) -> usize {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && !raw {
            i += 2;
            continue;
        }
        if c == quote {
            if !triple {
                return i + 1;
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        }
        i += 1;
    }
    chars.len()
}

/// A policy validation's expression for a rule: renamed, and a transition rule (one that
/// reads `oldSelf`) made to hold on everything but an update, as the API server does for a
/// CRD's transition rules (`oldObject` is null on create).
pub fn policy_expression(source: &str, transition: bool) -> String {
    let expression = to_policy(source);
    if transition {
        format!("request.operation != 'UPDATE' || ({expression})")
    } else {
        expression
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_renamed() {
        assert_eq!(
            to_policy("self.spec.size <= 10 && has(self.metadata.labels)"),
            "object.spec.size <= 10 && has(object.metadata.labels)"
        );
        assert_eq!(
            to_policy("self.data.mode == oldSelf.data.mode"),
            "object.data.mode == oldObject.data.mode"
        );
        assert_eq!(
            to_policy("self.items.all(x, x.self != self)"),
            "object.items.all(x, x.self != object)"
        );
        assert_eq!(to_policy("self . self"), "object . self");
    }

    #[test]
    fn literals_comments_and_other_names_are_kept() {
        assert_eq!(
            to_policy(r#"self.a == "self" && self.b != 'oldSelf'"#),
            r#"object.a == "self" && object.b != 'oldSelf'"#
        );
        assert_eq!(
            to_policy(r#"self.a == "say \"self\" twice" + r'\' + self.b"#),
            r#"object.a == "say \"self\" twice" + r'\' + object.b"#
        );
        assert_eq!(
            to_policy("self.a == '''it's self''' && b\"self\" != bytes(self.c)"),
            "object.a == '''it's self''' && b\"self\" != bytes(object.c)"
        );
        assert_eq!(
            to_policy("self.x // self is the parent\n  && myself == selfish"),
            "object.x // self is the parent\n  && myself == selfish"
        );
        assert_eq!(
            to_policy("self.`self-ref` == oldSelf.`oldSelf`"),
            "object.`self-ref` == oldObject.`oldSelf`"
        );
    }

    #[test]
    fn transition_rules_hold_outside_updates() {
        assert_eq!(
            policy_expression("self.a == oldSelf.a", true),
            "request.operation != 'UPDATE' || (object.a == oldObject.a)"
        );
        assert_eq!(policy_expression("self.a > 1", false), "object.a > 1");
    }
}
