//! What the agent asks a person during a run (opencode's `question` tool, or a
//! permission its rules leave to "ask"), and how a reply in the thread is read.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the question is answered with when nobody answers in time.
pub const NO_ANSWER: &str = "no answer; use your judgement";
/// What a permission request is denied with when nobody answers in time.
const NO_PERMISSION: &str = "nobody answered in time, so this is denied; go on without it";
/// The longest answer handed to the agent; a reply is a choice or a few lines.
const MAX_ANSWER_CHARS: usize = 4_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Asked {
    /// opencode's question tool: one or more questions, each with choices.
    Question { questions: Vec<Question> },
    /// A tool call the permission rules leave to a person.
    Permission { permission: String, patterns: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub question: String,
    #[serde(default)]
    pub header: String,
    #[serde(default)]
    pub options: Vec<Choice>,
    #[serde(default)]
    pub multiple: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub label: String,
    #[serde(default)]
    pub description: String,
}

/// What goes back to opencode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Per question, the chosen labels or the person's own words.
    Answers(Vec<Vec<String>>),
    Allow,
    /// Denied; the words go to the agent as the reason.
    Deny(String),
}

impl Reply {
    /// What the reply says, in a few words, for the thread.
    pub fn said(&self) -> String {
        match self {
            Self::Answers(answers) => answers.iter().map(|a| a.join(", ")).collect::<Vec<_>>().join(" / "),
            Self::Allow => "allowed, once".to_owned(),
            Self::Deny(why) => format!("denied ({why})"),
        }
    }
}

impl Asked {
    /// A pending question as opencode lists it (`GET /question`), without its id
    /// and session; `None` when it has no question.
    pub fn question_from(fields: &HashMap<String, Value>) -> Option<Self> {
        let questions: Vec<Question> = serde_json::from_value(fields.get("questions")?.clone()).ok()?;
        (!questions.is_empty()).then_some(Self::Question { questions })
    }

    /// A pending permission request as opencode lists it (`GET /permission`).
    pub fn permission_from(fields: &HashMap<String, Value>) -> Self {
        let permission = fields.get("permission").and_then(Value::as_str).unwrap_or("unknown").to_owned();
        let patterns = fields
            .get("patterns")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        Self::Permission { permission, patterns }
    }

    /// One line saying what is asked, for `status` and logs.
    pub fn summary(&self) -> String {
        match self {
            Self::Question { questions } => {
                let first = questions.first().map(|q| q.question.as_str()).unwrap_or_default();
                match questions.len() {
                    1 => first.to_owned(),
                    n => format!("{first} (and {} more)", n - 1),
                }
            }
            Self::Permission { permission, patterns } if patterns.is_empty() => format!("permission: {permission}"),
            Self::Permission { permission, patterns } => {
                format!("permission: {permission} `{}`", patterns.join("`, `"))
            }
        }
    }

    /// What nobody's answer means once the wait is over.
    pub fn unanswered(&self) -> Reply {
        match self {
            Self::Question { questions } => Reply::Answers(vec![vec![NO_ANSWER.to_owned()]; questions.len()]),
            Self::Permission { .. } => Reply::Deny(NO_PERMISSION.to_owned()),
        }
    }

    /// Reads a person's reply: option numbers (`2`, or `1, 3` where several may
    /// be chosen), an option's label, or their own words. With several
    /// questions, each line answers the next one. A mention of `@handle` and
    /// quoted lines (a forge's "quote reply") are not part of the answer.
    pub fn reply_to(&self, text: &str, handle: &str) -> Reply {
        let said = plain_reply(text, handle);
        match self {
            Self::Question { questions } if questions.len() == 1 => Reply::Answers(vec![answer(&questions[0], &said)]),
            Self::Question { questions } => {
                let mut lines = said.lines().map(str::trim).filter(|l| !l.is_empty());
                let answers = questions
                    .iter()
                    .map(|q| lines.next().map_or_else(|| vec![NO_ANSWER.to_owned()], |line| answer(q, line)))
                    .collect();
                Reply::Answers(answers)
            }
            Self::Permission { .. } => {
                let first = said.split_whitespace().next().unwrap_or_default();
                let word = first.trim_matches(|c: char| !c.is_alphanumeric()).to_ascii_lowercase();
                // Only a plain yes allows: "yes, but not rm -rf" is no yes.
                let alone = said.split_whitespace().nth(1).is_none();
                match word.as_str() {
                    "1" | "allow" | "yes" | "y" | "ok" | "approve" if alone => Reply::Allow,
                    "2" | "deny" | "no" | "n" | "" if alone => {
                        Reply::Deny("a person on the issue denied this".to_owned())
                    }
                    _ => Reply::Deny(format!("a person on the issue denied this and said: {}", clipped(&said))),
                }
            }
        }
    }
}

/// The reply without the bot's mention and quoted lines, trimmed.
fn plain_reply(text: &str, handle: &str) -> String {
    let mention = format!("@{}", handle.to_ascii_lowercase());
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('>')).collect();
    let joined = kept.join("\n");
    let trimmed = joined.trim();
    let rest = match trimmed.get(..mention.len()) {
        Some(head) if head.eq_ignore_ascii_case(&mention) => &trimmed[mention.len()..],
        _ => trimmed,
    };
    rest.trim_start_matches([',', ':']).trim().to_owned()
}

/// One question's answer: the chosen labels, or the words as they are.
fn answer(question: &Question, said: &str) -> Vec<String> {
    let picks: Option<Vec<usize>> = said
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.trim_end_matches(['.', ')']).parse::<usize>().ok().filter(|n| (1..=question.options.len()).contains(n))
        })
        .collect();
    match picks {
        Some(picks) if !picks.is_empty() && (question.multiple || picks.len() == 1) => {
            let mut labels: Vec<String> = Vec::new();
            for n in picks {
                let label = &question.options[n - 1].label;
                if !labels.contains(label) {
                    labels.push(label.clone());
                }
            }
            labels
        }
        _ => match question.options.iter().find(|o| o.label.eq_ignore_ascii_case(said)) {
            Some(choice) => vec![choice.label.clone()],
            None if said.is_empty() => vec![NO_ANSWER.to_owned()],
            None => vec![clipped(said)],
        },
    }
}

fn clipped(text: &str) -> String {
    match text.char_indices().nth(MAX_ANSWER_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colours(multiple: bool) -> Asked {
        let choice = |label: &str| Choice { label: label.into(), description: format!("{label}, really") };
        Asked::Question {
            questions: vec![Question {
                question: "Which colour?".into(),
                header: "Colour".into(),
                options: vec![choice("Red"), choice("Blue"), choice("Green")],
                multiple,
            }],
        }
    }

    fn one(reply: Reply) -> Vec<String> {
        match reply {
            Reply::Answers(mut all) if all.len() == 1 => all.remove(0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_number_picks_an_option_and_anything_else_is_the_persons_words() {
        let asked = colours(false);
        assert_eq!(one(asked.reply_to("2", "kugetsu")), ["Blue"]);
        assert_eq!(one(asked.reply_to("@kugetsu 3.", "kugetsu")), ["Green"]);
        assert_eq!(one(asked.reply_to("@KUGETSU: blue", "kugetsu")), ["Blue"]);
        assert_eq!(one(asked.reply_to("> Which colour?\n\n1", "kugetsu")), ["Red"], "a quote reply");
        assert_eq!(one(asked.reply_to("4", "kugetsu")), ["4"], "no option 4: taken as words");
        assert_eq!(one(asked.reply_to("1, 2", "kugetsu")), ["1, 2"], "one choice only");
        assert_eq!(one(asked.reply_to("purple, with dots", "kugetsu")), ["purple, with dots"]);
        assert_eq!(one(asked.reply_to("@kugetsu", "kugetsu")), [NO_ANSWER]);
        assert_eq!(one(colours(true).reply_to("1, 3 1", "kugetsu")), ["Red", "Green"]);
        let long = "x".repeat(MAX_ANSWER_CHARS + 10);
        assert_eq!(one(asked.reply_to(&long, "kugetsu"))[0].chars().count(), MAX_ANSWER_CHARS + 1);
    }

    #[test]
    fn each_line_answers_the_next_question_and_the_rest_get_no_answer() {
        let Asked::Question { questions } = colours(false) else { unreachable!() };
        let asked =
            Asked::Question { questions: vec![questions[0].clone(), questions[0].clone(), questions[0].clone()] };
        let Reply::Answers(answers) = asked.reply_to("1\n\nmy own\n", "kugetsu") else { panic!() };
        assert_eq!(answers, vec![vec!["Red".to_owned()], vec!["my own".to_owned()], vec![NO_ANSWER.to_owned()]]);
        assert_eq!(asked.unanswered(), Reply::Answers(vec![vec![NO_ANSWER.to_owned()]; 3]));
        assert_eq!(asked.summary(), "Which colour? (and 2 more)");
    }

    #[test]
    fn a_permission_is_allowed_only_by_a_yes() {
        let fields: HashMap<String, Value> =
            serde_json::from_value(serde_json::json!({"permission": "bash", "patterns": ["rm -rf build"]})).unwrap();
        let asked = Asked::permission_from(&fields);
        assert_eq!(asked.summary(), "permission: bash `rm -rf build`");
        assert_eq!(asked.reply_to("1", "kugetsu"), Reply::Allow);
        assert_eq!(asked.reply_to("@kugetsu yes!", "kugetsu"), Reply::Allow);
        assert_eq!(
            asked.reply_to("yes, but not rm -rf", "kugetsu"),
            Reply::Deny("a person on the issue denied this and said: yes, but not rm -rf".into()),
            "only a plain yes allows"
        );
        assert_eq!(asked.reply_to("2", "kugetsu"), Reply::Deny("a person on the issue denied this".into()));
        assert_eq!(
            asked.reply_to("no, not that", "kugetsu"),
            Reply::Deny("a person on the issue denied this and said: no, not that".into())
        );
        assert_eq!(
            asked.reply_to("use `make clean` instead", "kugetsu"),
            Reply::Deny("a person on the issue denied this and said: use `make clean` instead".into())
        );
        assert!(matches!(asked.unanswered(), Reply::Deny(_)));
    }

    #[test]
    fn a_listed_question_is_read_and_one_without_questions_is_not() {
        let fields: HashMap<String, Value> = serde_json::from_value(serde_json::json!({
            "questions": [{"question": "Which?", "header": "H", "options": [{"label": "A", "description": "a"}]}],
            "tool": {"messageID": "msg_1", "callID": "c1"}
        }))
        .unwrap();
        let asked = Asked::question_from(&fields).expect("a question");
        assert_eq!(asked.summary(), "Which?");
        let stored = serde_json::to_string(&asked).unwrap();
        assert_eq!(serde_json::from_str::<Asked>(&stored).unwrap(), asked, "it survives the store");
        let empty: HashMap<String, Value> = serde_json::from_value(serde_json::json!({"questions": []})).unwrap();
        assert_eq!(Asked::question_from(&empty), None);
    }
}
