//! Whether an event asks the bot to act: a mention of its handle as a whole word
//! outside code and quotes, or a trigger label being added.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

use crate::event::{EventKind, ForgeEvent};

fn is_handle_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Whether `text` (Markdown) mentions `@handle` as a whole word, ignoring code
/// spans, code blocks, block quotes and raw HTML.
pub fn mentions(text: &str, handle: &str) -> bool {
    let mut hidden_depth = 0usize;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::CodeBlock(_) | Tag::BlockQuote(_) | Tag::HtmlBlock) => hidden_depth += 1,
            Event::End(TagEnd::CodeBlock | TagEnd::BlockQuote(_) | TagEnd::HtmlBlock) => {
                hidden_depth = hidden_depth.saturating_sub(1)
            }
            Event::Text(t) if hidden_depth == 0 && text_mentions(&t, handle) => return true,
            _ => {}
        }
    }
    false
}

fn text_mentions(text: &str, handle: &str) -> bool {
    let needle = format!("@{handle}");
    let lower = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&needle).map(|i| i + from) {
        let before = lower[..at].chars().next_back();
        let after = lower[at + needle.len()..].chars().next();
        // `a@kugetsu` is an address, `@kugetsu-other` another account.
        let starts_word = before.is_none_or(|c| !(is_handle_char(c) || c == '.' || c == '@' || c == '/'));
        let ends_word = after.is_none_or(|c| !is_handle_char(c) && c != '[');
        if starts_word && ends_word {
            return true;
        }
        from = at + needle.len();
    }
    false
}

/// Why an event should start a run, or `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A mention in a new comment or a new issue's body.
    Mention,
    /// A trigger label was added (or the issue was opened with one).
    Label(String),
}

/// Decides whether `event` triggers a run. `previous_labels` is the issue's label
/// set as last seen, needed because Gitea reports only the new full set.
pub fn trigger_for(
    event: &ForgeEvent,
    handle: &str,
    trigger_labels: &[String],
    previous_labels: Option<&[String]>,
) -> Option<Trigger> {
    let is_trigger_label = |l: &String| trigger_labels.iter().any(|t| t.eq_ignore_ascii_case(l));
    match &event.kind {
        EventKind::CommentCreated => {
            let body = &event.comment.as_ref()?.body;
            mentions(body, handle).then_some(Trigger::Mention)
        }
        EventKind::IssueOpened => {
            if mentions(&event.body, handle) {
                return Some(Trigger::Mention);
            }
            event.labels.iter().find(|l| is_trigger_label(l)).cloned().map(Trigger::Label)
        }
        EventKind::IssueLabeled { added: Some(label) } => {
            is_trigger_label(label).then(|| Trigger::Label(label.clone()))
        }
        EventKind::IssueLabeled { added: None } => {
            let before = previous_labels.unwrap_or_default();
            event
                .labels
                .iter()
                .find(|l| is_trigger_label(l) && !before.iter().any(|b| b.eq_ignore_ascii_case(l)))
                .cloned()
                .map(Trigger::Label)
        }
        EventKind::IssueEdited | EventKind::IssueClosed | EventKind::CommentEdited => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_word_mentions_count() {
        for text in [
            "@kugetsu please fix it",
            "hey @kugetsu, look",
            "(@kugetsu)",
            "@KUGETSU do it",
            "line one\n\n@kugetsu on a new paragraph",
            "- a list item for @kugetsu.",
            "**@kugetsu** bold",
        ] {
            assert!(mentions(text, "kugetsu"), "{text:?}");
        }
    }

    #[test]
    fn lookalikes_code_and_quotes_do_not_count() {
        for text in [
            "@kugetsu-other please",
            "@kugetsu_bot please",
            "@kugetsu2",
            "mail me@kugetsu.dev",
            "`@kugetsu` in code",
            "```\n@kugetsu in a block\n```",
            "    @kugetsu indented code",
            "> @kugetsu quoted\n\nmy reply",
            "<!-- @kugetsu hidden -->",
            "no mention at all",
            "https://example.com/@kugetsu",
        ] {
            assert!(!mentions(text, "kugetsu"), "{text:?}");
        }
    }
}
