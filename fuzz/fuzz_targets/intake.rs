//! Everything a webhook delivery's bytes reach before a job exists: signature
//! checking, payload normalisation for every forge and event, trigger parsing
//! and issue-ref parsing; and the quieting of text the bot posts. None of it may
//! panic, whatever the input.
#![no_main]

use kugetsu::config::ForgeKind;
use kugetsu::event::{Normalized, normalize};
use kugetsu::issue_ref::{InstanceName, IssueRef};
use kugetsu::trigger::{commands, control_command, trigger_for};
use kugetsu::webhook::signature::verify;
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("fuzz-secret");
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let head = String::from_utf8_lossy(head);
    let _ = verify(&secret, body, &head);

    let instance: InstanceName = "fuzz".parse().expect("valid instance name");
    for kind in [ForgeKind::Github, ForgeKind::Gitea, ForgeKind::Forgejo] {
        for event in ["issues", "issue_comment", "ping", "push"] {
            if let Ok(Normalized::Event(event)) = normalize(kind, &instance, event, "d", body) {
                let _ = trigger_for(&event, "kugetsu", &["kugetsu".to_owned()], Some(&event.labels));
                let _ = trigger_for(&event, "kugetsu", &["kugetsu".to_owned()], None);
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = commands(&text, "kugetsu");
    let _ = control_command(&text, "kugetsu");
    let _ = kugetsu::comment::quiet(&text);
    let _ = text.parse::<IssueRef>();
});
