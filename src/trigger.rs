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
    !commands(text, handle).is_empty()
}

/// What follows each whole-word mention of `@handle` outside code, quotes and
/// HTML, trimmed: `"@kugetsu stop"` gives `["stop"]`.
pub fn commands(text: &str, handle: &str) -> Vec<String> {
    let mut hidden_depth = 0usize;
    let mut found = Vec::new();
    // The parser splits text at would-be emphasis markers (`@kugetsu_x` arrives
    // as `@kugetsu` then `_x`), so adjacent text is joined before it is scanned.
    let mut run = String::new();
    for event in Parser::new(text) {
        match event {
            Event::Text(t) if hidden_depth == 0 => run.push_str(&t),
            Event::SoftBreak | Event::HardBreak if hidden_depth == 0 => run.push('\n'),
            other => {
                found.extend(text_commands(&run, handle));
                run.clear();
                match other {
                    Event::Start(Tag::CodeBlock(_) | Tag::BlockQuote(_) | Tag::HtmlBlock) => hidden_depth += 1,
                    Event::End(TagEnd::CodeBlock | TagEnd::BlockQuote(_) | TagEnd::HtmlBlock) => {
                        hidden_depth = hidden_depth.saturating_sub(1)
                    }
                    _ => {}
                }
            }
        }
    }
    found.extend(text_commands(&run, handle));
    found
}

fn text_commands(text: &str, handle: &str) -> Vec<String> {
    let needle = format!("@{handle}").to_ascii_lowercase();
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&needle).map(|i| i + from) {
        let end = at + needle.len();
        let before = lower[..at].chars().next_back();
        let after = lower[end..].chars().next();
        // `a@kugetsu` is an address, `@kugetsu-other` another account.
        let starts_word = before.is_none_or(|c| !(is_handle_char(c) || c == '.' || c == '@' || c == '/'));
        let ends_word = after.is_none_or(|c| !is_handle_char(c) && c != '[');
        if starts_word && ends_word {
            let rest = text[end..].trim_start_matches([',', ':']).trim();
            found.push(rest.lines().next().unwrap_or_default().trim().to_owned());
        }
        from = end;
    }
    found
}

/// A command for the bot itself rather than work for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    Stop,
    Status,
    Reset,
    Help,
    /// Lift a budget's or the loop breaker's pause on the issue.
    Resume,
}

/// The control command a comment gives, if its first mention is one:
/// `@kugetsu stop`, `status`, `reset`, `help` or `resume`, alone.
pub fn control_command(text: &str, handle: &str) -> Option<Control> {
    let first = commands(text, handle).into_iter().next()?;
    let word = first.trim_end_matches(['.', '!']).to_ascii_lowercase();
    match word.as_str() {
        "stop" => Some(Control::Stop),
        "status" => Some(Control::Status),
        "reset" => Some(Control::Reset),
        "help" => Some(Control::Help),
        "resume" => Some(Control::Resume),
        _ => None,
    }
}

/// Why an event should start a run, or `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A mention in a new comment or a new issue's body, or one an edit added.
    Mention,
    /// `@handle stop|status|reset|help|resume`.
    Control(Control),
    /// A trigger label was added (or the issue was opened with one).
    Label(String),
    /// A pull request review: whether it asks the bot is settled with the forge,
    /// which has all of the review's comments.
    Review,
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
            if let Some(control) = control_command(body, handle) {
                return Some(Trigger::Control(control));
            }
            mentions(body, handle).then_some(Trigger::Mention)
        }
        EventKind::CommentEdited => {
            // Only an edit that adds a command counts; fixing a typo must not rerun.
            let body = &event.comment.as_ref()?.body;
            let before = commands(event.previous_body.as_deref().unwrap_or_default(), handle).len();
            (commands(body, handle).len() > before).then_some(Trigger::Mention)
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
        EventKind::ReviewSubmitted => Some(Trigger::Review),
        EventKind::IssueEdited | EventKind::IssueClosed => None,
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
    fn control_commands_are_the_first_word_after_the_mention() {
        assert_eq!(control_command("@kugetsu stop", "kugetsu"), Some(Control::Stop));
        assert_eq!(control_command("@kugetsu: Status.", "kugetsu"), Some(Control::Status));
        assert_eq!(control_command("hey @kugetsu reset", "kugetsu"), Some(Control::Reset));
        assert_eq!(control_command("@kugetsu help", "kugetsu"), Some(Control::Help));
        assert_eq!(control_command("@kugetsu resume", "kugetsu"), Some(Control::Resume));
        assert_eq!(control_command("@kugetsu stop the flaky test from failing", "kugetsu"), None);
        assert_eq!(control_command("`@kugetsu stop`", "kugetsu"), None);
        assert_eq!(commands("@kugetsu one\n\nand @kugetsu two", "kugetsu"), vec!["one", "two"]);
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
            "@kugetsu_- a",
        ] {
            assert!(!mentions(text, "kugetsu"), "{text:?}");
        }
    }
}
