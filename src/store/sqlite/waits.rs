//! [`WaitStore`] in SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::issue_ref::IssueRef;
use crate::store::{Answer, Wait, WaitStore};

type Row = (i64, String, String, i64, i64, Option<i64>, Option<String>, Option<String>, Option<i64>, Option<i64>);

// sqlx takes only literal SQL, so the column list is spelled out in each query.

fn wait_from(row: Row) -> anyhow::Result<Wait> {
    let (job_id, issue, asked, asked_at, deadline, comment_id, answer, answered_by, answer_comment, answered_at) = row;
    let answer = match (answer, answered_by) {
        (Some(text), Some(author)) => Some(Answer {
            text,
            author,
            comment_id: answer_comment.and_then(|id| u64::try_from(id).ok()),
            at: answered_at.unwrap_or(0),
        }),
        _ => None,
    };
    Ok(Wait {
        job_id,
        issue: issue.parse().map_err(|e| anyhow::anyhow!("a wait names a bad issue `{issue}`: {e}"))?,
        asked: serde_json::from_str(&asked)?,
        asked_at,
        deadline,
        comment_id: comment_id.and_then(|id| u64::try_from(id).ok()),
        answer,
    })
}

#[async_trait]
impl WaitStore for SqliteStore {
    async fn begin_wait(&self, wait: &Wait) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO waits (job_id, issue, asked, asked_at, deadline, comment_id) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(wait.job_id)
        .bind(wait.issue.to_string())
        .bind(serde_json::to_string(&wait.asked)?)
        .bind(wait.asked_at)
        .bind(wait.deadline)
        .bind(wait.comment_id.and_then(|id| i64::try_from(id).ok()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_wait_posted(&self, job_id: i64, comment_id: u64) -> anyhow::Result<()> {
        sqlx::query("UPDATE waits SET comment_id = ? WHERE job_id = ?")
            .bind(i64::try_from(comment_id).unwrap_or(i64::MAX))
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn wait_of_job(&self, job_id: i64) -> anyhow::Result<Option<Wait>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT job_id, issue, asked, asked_at, deadline, comment_id, answer, answered_by, answer_comment, \
             answered_at FROM waits WHERE job_id = ?",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(wait_from).transpose()
    }

    async fn open_wait(&self, issue: &IssueRef) -> anyhow::Result<Option<Wait>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT job_id, issue, asked, asked_at, deadline, comment_id, answer, answered_by, answer_comment, \
             answered_at FROM waits WHERE issue = ? AND answer IS NULL AND expired = 0 \
             AND job_id IN (SELECT id FROM jobs WHERE status IN ('pending', 'running')) ORDER BY asked_at LIMIT 1",
        )
        .bind(issue.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(wait_from).transpose()
    }

    async fn answer_wait(&self, job_id: i64, asked_at: i64, answer: &Answer) -> anyhow::Result<bool> {
        // One statement: of two answers, or an answer and the deadline, one wins.
        let done = sqlx::query(
            "UPDATE waits SET answer = ?, answered_by = ?, answer_comment = ?, answered_at = ?
             WHERE job_id = ? AND asked_at = ? AND answer IS NULL AND expired = 0",
        )
        .bind(&answer.text)
        .bind(&answer.author)
        .bind(answer.comment_id.and_then(|id| i64::try_from(id).ok()))
        .bind(answer.at)
        .bind(job_id)
        .bind(asked_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_wait(&self, job_id: i64, asked_at: i64) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE waits SET expired = 1 WHERE job_id = ? AND asked_at = ? AND answer IS NULL")
            .bind(job_id)
            .bind(asked_at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn waiting_issues(&self) -> anyhow::Result<Vec<IssueRef>> {
        let issues: Vec<String> = sqlx::query_scalar("SELECT DISTINCT issue FROM waits").fetch_all(&self.pool).await?;
        issues.iter().map(|i| i.parse().map_err(|e| anyhow::anyhow!("a wait names a bad issue `{i}`: {e}"))).collect()
    }

    async fn end_wait(&self, job_id: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM waits WHERE job_id = ?").bind(job_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn end_waits_on(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM waits WHERE issue = ?").bind(issue.to_string()).execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::question::{Asked, Choice, Question};
    use crate::queue::Enqueued;

    fn asked() -> Asked {
        Asked::Question {
            questions: vec![Question {
                question: "Which?".into(),
                header: String::new(),
                options: vec![Choice { label: "A".into(), description: String::new() }],
                multiple: false,
            }],
        }
    }

    #[tokio::test]
    async fn the_first_answer_wins_and_a_wait_survives_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("k.db")).await.unwrap();
        let issue: IssueRef = "tea/acme/widget#7".parse().unwrap();
        let other: IssueRef = "tea/acme/widget#8".parse().unwrap();
        use crate::store::JobStore;
        let job = crate::queue::Job::minimal("tea/acme/widget#7", crate::queue::JobTrigger::Mention, "d");
        let Enqueued::Queued(id) = store.enqueue("tea", None, &job).await.unwrap() else { panic!() };
        let wait = Wait {
            job_id: id,
            issue: issue.clone(),
            asked: asked(),
            asked_at: 10,
            deadline: 20,
            comment_id: None,
            answer: None,
        };
        store.begin_wait(&wait).await.unwrap();
        assert_eq!(store.waiting_issues().await.unwrap(), vec![issue.clone()]);
        store.mark_wait_posted(id, 77).await.unwrap();
        assert_eq!(store.open_wait(&issue).await.unwrap(), Some(Wait { comment_id: Some(77), ..wait.clone() }));
        assert_eq!(store.open_wait(&other).await.unwrap(), None);
        let answer = |text: &str| Answer { text: text.into(), author: "alice".into(), comment_id: Some(9), at: 15 };
        assert!(!store.answer_wait(id, 11, &answer("x")).await.unwrap(), "not the question asked at 11");
        assert!(store.answer_wait(id, 10, &answer("2")).await.unwrap());
        assert!(!store.answer_wait(id, 10, &answer("late")).await.unwrap(), "answered already");
        assert!(!store.expire_wait(id, 10).await.unwrap(), "the answer came before the deadline");
        assert_eq!(store.open_wait(&issue).await.unwrap(), None);
        let kept = store.wait_of_job(id).await.unwrap().expect("kept until it ends");
        assert_eq!(kept.answer, Some(answer("2")));
        store.end_wait(id).await.unwrap();
        assert_eq!(store.wait_of_job(id).await.unwrap(), None);

        // The deadline first: no answer after it.
        store.begin_wait(&wait).await.unwrap();
        assert!(store.expire_wait(id, 10).await.unwrap());
        assert!(!store.answer_wait(id, 10, &answer("too late")).await.unwrap());
        assert_eq!(store.open_wait(&issue).await.unwrap(), None, "an expired wait takes no answer");

        // A wait whose job ended takes no answer either.
        store.begin_wait(&Wait { asked_at: 12, ..wait.clone() }).await.unwrap();
        assert!(store.open_wait(&issue).await.unwrap().is_some(), "control: the job still runs");
        store.finish(id, Ok(())).await.unwrap();
        assert_eq!(store.open_wait(&issue).await.unwrap(), None, "the job is done");
        store.end_waits_on(&issue).await.unwrap();
        assert_eq!(store.wait_of_job(id).await.unwrap(), None, "stop ends it");
    }
}
