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
             answered_at FROM waits WHERE issue = ? AND answer IS NULL ORDER BY asked_at LIMIT 1",
        )
        .bind(issue.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(wait_from).transpose()
    }

    async fn answer_wait(&self, issue: &IssueRef, answer: &Answer) -> anyhow::Result<Option<i64>> {
        // One statement: two answers at once cannot both win.
        let answered: Option<i64> = sqlx::query_scalar(
            "UPDATE waits SET answer = ?, answered_by = ?, answer_comment = ?, answered_at = ?
             WHERE job_id = (SELECT job_id FROM waits WHERE issue = ? AND answer IS NULL ORDER BY asked_at LIMIT 1)
             RETURNING job_id",
        )
        .bind(&answer.text)
        .bind(&answer.author)
        .bind(answer.comment_id.and_then(|id| i64::try_from(id).ok()))
        .bind(answer.at)
        .bind(issue.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(answered)
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
        let wait = Wait {
            job_id: 3,
            issue: issue.clone(),
            asked: asked(),
            asked_at: 10,
            deadline: 20,
            comment_id: None,
            answer: None,
        };
        store.begin_wait(&wait).await.unwrap();
        store.mark_wait_posted(3, 77).await.unwrap();
        assert_eq!(store.open_wait(&issue).await.unwrap(), Some(Wait { comment_id: Some(77), ..wait.clone() }));
        assert_eq!(store.open_wait(&other).await.unwrap(), None);
        let answer = |text: &str| Answer { text: text.into(), author: "alice".into(), comment_id: Some(9), at: 15 };
        assert_eq!(store.answer_wait(&other, &answer("x")).await.unwrap(), None, "no question there");
        assert_eq!(store.answer_wait(&issue, &answer("2")).await.unwrap(), Some(3));
        assert_eq!(store.answer_wait(&issue, &answer("late")).await.unwrap(), None, "answered already");
        assert_eq!(store.open_wait(&issue).await.unwrap(), None);
        let kept = store.wait_of_job(3).await.unwrap().expect("kept until it ends");
        assert_eq!(kept.answer, Some(answer("2")));
        store.end_wait(3).await.unwrap();
        assert_eq!(store.wait_of_job(3).await.unwrap(), None);
        store.begin_wait(&wait).await.unwrap();
        store.end_waits_on(&issue).await.unwrap();
        assert_eq!(store.wait_of_job(3).await.unwrap(), None, "stop ends it");
    }
}
