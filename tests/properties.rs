//! Property tests for issue refs, mention parsing and quieted outgoing text.

use kugetsu::comment::quiet;
use kugetsu::issue_ref::IssueRef;
use kugetsu::trigger::{commands, mentions};
use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,20}(\\.[a-z0-9_-]{1,5})?".prop_filter("no .lock", |s| !s.ends_with(".lock"))
}

proptest! {
    #[test]
    fn valid_refs_round_trip(instance in "[a-z0-9][a-z0-9_-]{0,10}", owner in segment(), repo in segment(), n in 1u64..) {
        let text = format!("{instance}/{owner}/{repo}#{n}");
        let parsed: IssueRef = text.parse().unwrap();
        prop_assert_eq!(parsed.to_string(), text.clone());
        prop_assert_eq!(parsed.number(), n);
        prop_assert!(!parsed.rel_path().to_string_lossy().contains(".."));
    }

    #[test]
    fn any_string_parses_or_fails_cleanly(s in any::<String>()) {
        if let Ok(parsed) = s.parse::<IssueRef>() {
            let again: IssueRef = parsed.to_string().parse().unwrap();
            prop_assert_eq!(&again, &parsed);
            let path = parsed.rel_path();
            prop_assert!(path.components().all(|c| matches!(c, std::path::Component::Normal(_))));
            prop_assert!(parsed.to_string().is_ascii());
        }
    }

    #[test]
    fn mention_parsing_never_panics(s in any::<String>()) {
        let _ = mentions(&s, "kugetsu");
        let _ = commands(&s, "kugetsu");
    }

    #[test]
    fn a_plain_mention_paragraph_always_counts(prefix in "[a-zA-Z0-9 .,!?]{0,40}", request in "[a-zA-Z0-9 .,]{0,40}") {
        let text = format!("{prefix}\n\n@kugetsu {request}");
        prop_assert!(mentions(&text, "kugetsu"), "{:?}", text);
    }

    #[test]
    fn longer_handles_and_code_spans_never_count(suffix in "[a-zA-Z0-9_-]{1,10}", words in "[a-zA-Z0-9 ]{0,30}") {
        let other = format!("@kugetsu{suffix} {words}");
        prop_assert!(!mentions(&other, "kugetsu"), "{:?}", other);
        let code = format!("`@kugetsu {words}`");
        prop_assert!(!mentions(&code, "kugetsu"), "{:?}", code);
        let quoted = format!("> @kugetsu {words}");
        prop_assert!(!mentions(&quoted, "kugetsu"), "{:?}", quoted);
    }

    #[test]
    fn quieted_text_only_gains_joiners_and_mentions_nobody(
        s in "(@kugetsu|@[a-z]{1,5}|/[a-z]{1,5}|`|\\n|```|[ a-zA-Z0-9.@/_-]|ü){0,40}"
    ) {
        let out = quiet(&s);
        prop_assert_eq!(out.replace('\u{200D}', ""), s.clone());
        prop_assert!(!mentions(&out, "kugetsu"), "{:?} still mentions the bot as {:?}", s, out);
    }

    #[test]
    fn quiet_never_panics(s in any::<String>()) {
        let _ = quiet(&s);
    }
}
