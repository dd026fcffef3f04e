//! Text from the agent or the repository, made quiet before the bot posts it:
//! a mention (`@user`, `@org/team`) pings nobody and a slash command (`/merge`)
//! triggers no bot, this one included. A zero-width joiner goes after the `@`
//! (or the `&` of `&#64;`, `&commat;`) or before the `/`; the text reads the
//! same. A kugetsu marker is shown as text, so quoted text cannot pose as one
//! of the bot's comments. Code spans and blocks are left as they are: forges
//! link nothing there, and code must stay copyable.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

const ZWJ: char = '\u{200D}';

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// `text` with every mention and line-leading slash command outside code defused.
pub fn quiet(text: &str) -> String {
    // The marker never survives, in code or not: `is_comment_for_job` must only
    // ever see the ones kugetsu writes.
    let text = &text.replace(super::MARKER_PREFIX, "&lt;!-- kugetsu:");
    let mut inserts: Vec<usize> = Vec::new();
    let mut in_code_block = 0usize;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(_)) => in_code_block += 1,
            Event::End(TagEnd::CodeBlock) => in_code_block = in_code_block.saturating_sub(1),
            Event::Text(_) | Event::Html(_) | Event::InlineHtml(_) if in_code_block == 0 => {
                find_in(text, range, &mut inserts);
            }
            _ => {}
        }
    }
    inserts.sort_unstable();
    inserts.dedup();
    let mut out = String::with_capacity(text.len() + inserts.len() * ZWJ.len_utf8());
    let mut last = 0;
    for at in inserts {
        out.push_str(&text[last..at]);
        out.push(ZWJ);
        last = at;
    }
    out.push_str(&text[last..]);
    out
}

/// Where, within `range` of `text`, a joiner defuses a mention or a command.
fn find_in(text: &str, range: std::ops::Range<usize>, inserts: &mut Vec<usize>) {
    let slice = &text[range.clone()];
    for (offset, c) in slice.char_indices() {
        let at = range.start + offset;
        let before = text[..at].chars().next_back();
        let after = text[at + c.len_utf8()..].chars().next();
        let next_is_name = after.is_some_and(is_name_char);
        match c {
            // `a@b.c` is an address; after anything else (`x-@y`, `.@y`, `_@y`) a
            // forge may see a mention.
            '@' if next_is_name && before.is_none_or(|b| !b.is_ascii_alphanumeric()) => inserts.push(at + c.len_utf8()),
            '&' if ["&#64;", "&#x40;", "&#X40;", "&commat;"].iter().any(|e| text[at..].starts_with(e)) => {
                inserts.push(at + c.len_utf8());
            }
            '/' if next_is_name && starts_line(text, at) => inserts.push(at),
            _ => {}
        }
    }
}

/// Whether only spaces or tabs stand between the line's start and `at`.
fn starts_line(text: &str, at: usize) -> bool {
    text[..at].chars().rev().take_while(|c| *c != '\n').all(|c| c == ' ' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger;

    #[test]
    fn mentions_and_commands_are_defused_outside_code() {
        let text = "Done, @alice and @acme/core. Ping @kugetsu again?\n\n/merge\n  /approve now\n\
                    mail me at a@b.c, see `@not_in_code` and\n\n```\n@Override\n/usr/bin\n```\n";
        let out = quiet(text);
        assert!(!trigger::mentions(&out, "kugetsu"), "{out}");
        assert!(!out.contains("@alice") && !out.contains("@acme") && out.contains("@\u{200D}alice"), "{out}");
        assert!(out.contains("\u{200D}/merge") && out.contains("\u{200D}/approve"), "{out}");
        assert!(out.contains("a@b.c") && out.contains("`@not_in_code`"), "{out}");
        assert!(out.contains("```\n@Override\n/usr/bin\n```"), "code blocks are untouched: {out}");
        assert_eq!(out.replace('\u{200D}', ""), text, "only joiners are added");
    }

    #[test]
    fn mentions_after_punctuation_entities_and_forged_markers_are_defused() {
        let out = quiet("x-@alice .@bob _@carol_ /@dan &#64;erin &commat;frank done <!-- kugetsu:job:7 -->");
        for name in ["alice", "bob", "carol", "dan"] {
            assert!(out.contains(&format!("@\u{200D}{name}")), "{name}: {out}");
        }
        assert!(out.contains("&\u{200D}#64;erin") && out.contains("&\u{200D}commat;frank"), "{out}");
        assert!(!out.contains("<!-- kugetsu:") && !crate::comment::is_bot_comment(&out), "{out}");
    }

    #[test]
    fn plain_text_is_unchanged() {
        for text in ["", "no mentions here", "a path like src/main.rs", "ratio 1/2", "ü@ü"] {
            assert_eq!(quiet(text), text);
        }
    }
}
