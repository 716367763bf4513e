//! The caption job queue, kept in the catalog so it survives crashes: one job per (content hash,
//! profile), `pending → running → done | failed`. Claims are one `UPDATE … RETURNING` under the
//! write lock, so two workers (or two processes) never get the same job. Failures retry with
//! exponential back-off (`not_before`) up to a limit, keeping the last error. A job left `running`
//! by a crash counts as a failed attempt and goes back to `pending` (or, at the limit, `failed`)
//! via [`Catalog::reclaim_running`] at daemon start-up (not at `open`, which the CLI also calls
//! while a daemon is working). A job with attempts behind it is claimed alone.
//!
//! A job is only claimed while a present photo with its content sits in an online library, so an
//! unmounted share's jobs wait instead of burning their attempts. A pending job whose content has
//! no present photo at all (every copy deleted) could never be claimed, so it is never kept: it is
//! dropped when its last photo goes (`store`), when a job claimed before that is failed or handed
//! back, and at daemon start-up ([`Catalog::drop_orphaned_pending`]), all through one rule,
//! [`drop_orphaned_jobs`]. Recording a photo with that content again queues it anew.
//!
//! A `failed` job (out of attempts) stays failed until `captiond retry` (or `reprocess`); a new
//! content (the file edited) is a new job.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::results::{self, TaskResult};
use super::{now_ms, row_path, Catalog, CatalogError};

/// Newly arrived photos go before backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Appeared while the daemon was running (stored as 0).
    New,
    /// Found by a scan or re-queued by `reprocess` (stored as 1).
    Backfill,
}

impl Priority {
    fn value(self) -> i64 {
        match self {
            Priority::New => 0,
            Priority::Backfill => 1,
        }
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub hash: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// How failures are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts before a job is `failed` (0 counts as 1).
    pub max_attempts: u32,
    /// Delay after the first failure; doubled after each further one.
    pub base: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failure: `base * 2^(attempts-1)`, at most `max`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// What [`Catalog::reclaim_running`] found: jobs a dead process left running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Back to `pending`, one attempt spent.
    pub returned: usize,
    /// Out of attempts: `failed` as having crashed the worker.
    pub failed: usize,
}

/// What [`Catalog::fail`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to `pending`, claimable from `not_before` (Unix ms).
    Retry {
        attempts: u32,
        delay: Duration,
        not_before: i64,
    },
    /// Out of attempts: `failed`, with the error kept.
    Failed { attempts: u32 },
    /// No present photo holds the content any more (deleted while the job ran): the job is
    /// deleted, since nothing could ever claim it. Recording the content again queues it anew.
    Dropped,
}

/// Jobs by state (plain names: `status --json` uses them as they are).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
}

/// A job that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedJob {
    pub job_id: i64,
    pub hash: String,
    pub profile: String,
    /// A path holding the content (a present one if any).
    pub path: Option<PathBuf>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Unix ms of the last failure.
    pub updated_at: i64,
}

impl Catalog {
    /// Queues `hash` for `profile`. False (and nothing changes) when a job for the pair exists in any
    /// state, except that a pending backfill job is promoted when the same content arrives anew.
    pub fn enqueue(
        &self,
        hash: &str,
        profile: &str,
        priority: Priority,
    ) -> Result<bool, CatalogError> {
        self.write("enqueue", |c| {
            enqueue_in(c, now_ms(), hash, profile, priority)
        })
    }

    /// Atomically moves up to `max` claimable pending jobs of `profile` to `running` and returns them,
    /// highest priority first, then oldest. Claimable: `not_before` has passed and a present photo
    /// of the content is in an online library.
    pub fn claim(&self, profile: &str, max: usize) -> Result<Vec<Job>, CatalogError> {
        self.claim_at(profile, max, now_ms())
    }

    fn claim_at(&self, profile: &str, max: usize, now: i64) -> Result<Vec<Job>, CatalogError> {
        self.write("claim", |c| {
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            let candidates: Vec<(i64, u32)> = c
                .prepare_cached(
                    "SELECT j.id, j.attempts FROM jobs j
                     WHERE j.profile = ?1 AND j.state = 'pending' AND j.not_before <= ?3
                       AND EXISTS (SELECT 1 FROM photos p JOIN libraries l ON l.id = p.library_id
                                   WHERE p.hash = j.hash AND p.state = 'present' AND l.online)
                     ORDER BY j.priority, j.id
                     LIMIT ?2",
                )?
                .query_map(params![profile, max, now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            // A job that failed or crashed the worker before runs alone: a photo that kills the
            // process then takes only its own attempts, never its batch-mates'.
            let chosen: Vec<i64> = match candidates.first() {
                Some(&(id, attempts)) if attempts > 0 => vec![id],
                _ => candidates
                    .iter()
                    .take_while(|(_, attempts)| *attempts == 0)
                    .map(|(id, _)| *id)
                    .collect(),
            };
            let mut take = c.prepare_cached(
                "UPDATE jobs SET state = 'running', claimed_at = ?2, updated_at = ?2
                 WHERE id = ?1 RETURNING id, hash, attempts",
            )?;
            chosen
                .into_iter()
                .map(|id| {
                    take.query_row(params![id, now], |r| {
                        Ok(Job {
                            id: r.get(0)?,
                            hash: r.get(1)?,
                            attempts: r.get(2)?,
                        })
                    })
                })
                .collect()
        })
    }

    /// Stores a job's results and completes it, in ONE transaction: results (replacing the same
    /// hash/task/model/revision) with their regions, the content's keywords, the search row of every
    /// present photo with that content, and the job → `done`.
    pub fn finish(
        &self,
        job_id: i64,
        hash: &str,
        results: &[TaskResult],
    ) -> Result<(), CatalogError> {
        let found = self.write("finish", |c| {
            let job_hash: Option<String> = c
                .prepare_cached("SELECT hash FROM jobs WHERE id = ?1")?
                .query_row([job_id], |r| r.get(0))
                .optional()?;
            if job_hash.as_deref() != Some(hash) {
                return Ok(false);
            }
            let now = now_ms();
            results::store_results(c, now, hash, results)?;
            c.prepare_cached(
                "UPDATE jobs SET state = 'done', last_error = NULL, claimed_at = NULL,
                                 not_before = 0, updated_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![job_id, now])?;
            Ok(true)
        })?;
        if found {
            Ok(())
        } else {
            Err(self.no_such_job(job_id, hash))
        }
    }

    /// Records a failed attempt: below `policy.max_attempts` the job goes back to `pending` after a
    /// back-off, else it is `failed`. The error is kept either way. A job whose content no present
    /// photo holds any more is deleted instead ([`FailOutcome::Dropped`]).
    pub fn fail(
        &self,
        job_id: i64,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<FailOutcome, CatalogError> {
        self.fail_at(job_id, error, policy, now_ms())
    }

    fn fail_at(
        &self,
        job_id: i64,
        error: &str,
        policy: &RetryPolicy,
        now: i64,
    ) -> Result<FailOutcome, CatalogError> {
        let outcome = self.write("fail", |c| {
            let Some(attempts) = c
                .prepare_cached("SELECT attempts FROM jobs WHERE id = ?1")?
                .query_row([job_id], |r| r.get::<_, u32>(0))
                .optional()?
            else {
                return Ok(None);
            };
            if drop_orphaned_jobs(c, Orphans::HandedBack(job_id))? > 0 {
                // Deleted mid-caption: pending, it could never be claimed again.
                return Ok(Some(FailOutcome::Dropped));
            }
            let attempts = attempts.saturating_add(1);
            let outcome = if attempts < policy.max_attempts.max(1) {
                let delay = policy.backoff(attempts);
                let not_before = now.saturating_add(delay.as_millis().min(i64::MAX as u128) as i64);
                c.prepare_cached(
                    "UPDATE jobs SET state = 'pending', attempts = ?2, last_error = ?3,
                                     not_before = ?4, claimed_at = NULL, updated_at = ?5
                     WHERE id = ?1",
                )?
                .execute(params![job_id, attempts, error, not_before, now])?;
                FailOutcome::Retry {
                    attempts,
                    delay,
                    not_before,
                }
            } else {
                c.prepare_cached(
                    "UPDATE jobs SET state = 'failed', attempts = ?2, last_error = ?3,
                                     claimed_at = NULL, updated_at = ?4
                     WHERE id = ?1",
                )?
                .execute(params![job_id, attempts, error, now])?;
                FailOutcome::Failed { attempts }
            };
            Ok(Some(outcome))
        })?;
        outcome.ok_or_else(|| self.no_such_job(job_id, ""))
    }

    /// Hands claimed jobs back (shutdown): `running → pending`, attempts unchanged. A job whose
    /// content no present photo holds any more (deleted meanwhile) is deleted instead.
    pub fn release(&self, job_ids: &[i64]) -> Result<(), CatalogError> {
        self.write("release", |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE jobs SET state = 'pending', claimed_at = NULL, updated_at = ?2
                 WHERE id = ?1 AND state = 'running'",
            )?;
            let now = now_ms();
            for &id in job_ids {
                if stmt.execute(params![id, now])? > 0 {
                    drop_orphaned_jobs(c, Orphans::HandedBack(id))?;
                }
            }
            Ok(())
        })
    }

    /// At daemon start-up, in one transaction: every `running` job was left by a process that
    /// died mid-caption (a crash, out of memory, kill -9; a clean stop hands its jobs back with
    /// [`Catalog::release`]), so it counts as a failed attempt. Below `policy.max_attempts` it goes
    /// back to `pending` (claimed alone next time, see [`Catalog::claim`]); at the limit it is
    /// `failed` with an error saying it crashed the worker, so a photo that kills the process
    /// cannot restart a service forever. Only the single daemon may call this, followed by
    /// [`Catalog::drop_orphaned_pending`] (a photo may have been deleted mid-caption).
    pub fn reclaim_running(&self, policy: &RetryPolicy) -> Result<Reclaimed, CatalogError> {
        let max = policy.max_attempts.max(1);
        self.write("reclaim_running", |c| {
            let states: Vec<String> = c
                .prepare_cached(
                    "UPDATE jobs SET
                         attempts = attempts + 1,
                         state = CASE WHEN attempts + 1 >= ?1 THEN 'failed' ELSE 'pending' END,
                         last_error = 'captiond stopped while captioning this photo ('
                             || (attempts + 1) || ' of ' || ?1 || ' attempts): a crash, out of '
                             || 'memory or a kill'
                             || CASE WHEN attempts + 1 >= ?1
                                     THEN '; it crashed the worker every time, so it is left '
                                          || 'failed (`captiond retry` tries again)'
                                     ELSE '' END,
                         claimed_at = NULL, updated_at = ?2
                     WHERE state = 'running'
                     RETURNING state",
                )?
                .query_map(params![max, now_ms()], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Reclaimed {
                returned: states.iter().filter(|s| *s == "pending").count(),
                failed: states.iter().filter(|s| *s == "failed").count(),
            })
        })
    }

    /// Deletes every waiting (`pending` or `failed`) job whose content no present photo holds
    /// (nothing can ever claim one; left by a photo deleted mid-caption under an older captiond,
    /// or by a crash then). Run at daemon start-up, after [`Catalog::reclaim_running`]; recording
    /// the content again queues it anew. Returns how many.
    pub fn drop_orphaned_pending(&self) -> Result<usize, CatalogError> {
        self.write("drop_orphaned_pending", |c| {
            drop_orphaned_jobs(c, Orphans::Everywhere)
        })
    }

    /// `captiond retry`: every `failed` job whose content still has a present photo back to
    /// `pending` with its attempts reset (the last error is kept until the next outcome). Failed
    /// jobs of deleted contents stay as they are (queued they could never be claimed). Returns how
    /// many.
    pub fn retry_failed(&self) -> Result<usize, CatalogError> {
        self.write("retry_failed", |c| {
            c.prepare_cached(
                "UPDATE jobs SET state = 'pending', attempts = 0, not_before = 0, updated_at = ?1
                 WHERE state = 'failed'
                   AND EXISTS (SELECT 1 FROM photos p WHERE p.hash = jobs.hash
                                                        AND p.state = 'present')",
            )?
            .execute([now_ms()])
        })
    }

    /// A model, revision or task change (the profile): every content with a present photo and no
    /// job for `profile` gets a pending backfill job. Also heals contents recorded without a job,
    /// so the daemon calls it at start-up. Jobs that exist are left alone: done stays done, and a
    /// failed one (out of attempts) stays failed across restarts until `captiond retry` (see
    /// [`Catalog::retry_failed_for_profile`], [`Catalog::requeue_done_for_profile`] for
    /// `reprocess`). Returns how many were added.
    pub fn requeue_for_profile(&self, profile: &str) -> Result<usize, CatalogError> {
        self.write("requeue_for_profile", |c| {
            c.prepare_cached(
                "INSERT INTO jobs(hash, profile, state, priority, attempts, not_before, updated_at)
                 SELECT DISTINCT hash, ?1, 'pending', 1, 0, 0, ?2 FROM photos
                 WHERE state = 'present'
                 ON CONFLICT(hash, profile) DO NOTHING",
            )?
            .execute(params![profile, now_ms()])
        })
    }

    /// `captiond reprocess`: the `failed` jobs of `profile` whose content has a present photo go
    /// back to `pending` (backfill) with a fresh set of attempts. Returns how many.
    pub fn retry_failed_for_profile(&self, profile: &str) -> Result<usize, CatalogError> {
        self.write("retry_failed_for_profile", |c| {
            c.prepare_cached(
                "UPDATE jobs SET state = 'pending', priority = 1, attempts = 0, not_before = 0,
                                 claimed_at = NULL, updated_at = ?2
                 WHERE profile = ?1 AND state = 'failed'
                   AND EXISTS (SELECT 1 FROM photos p WHERE p.hash = jobs.hash
                                                        AND p.state = 'present')",
            )?
            .execute(params![profile, now_ms()])
        })
    }

    /// `captiond reprocess --all`: every `done` job of `profile` whose content has a present photo
    /// goes back to `pending` (backfill, attempts reset), so it is captioned again. Its results stay
    /// (searchable, in sidecars) until the new ones replace them. Returns how many.
    pub fn requeue_done_for_profile(&self, profile: &str) -> Result<usize, CatalogError> {
        self.write("requeue_done_for_profile", |c| {
            c.prepare_cached(
                "UPDATE jobs SET state = 'pending', priority = 1, attempts = 0, not_before = 0,
                                 last_error = NULL, claimed_at = NULL, updated_at = ?2
                 WHERE profile = ?1 AND state = 'done'
                   AND EXISTS (SELECT 1 FROM photos p WHERE p.hash = jobs.hash
                                                        AND p.state = 'present')",
            )?
            .execute(params![profile, now_ms()])
        })
    }

    /// `run --once` at start-up: the pending jobs of `profile` still waiting out a back-off from an
    /// earlier run become claimable now (attempts unchanged, so the attempt limit still holds).
    /// `--once` is an explicit request to caption what is queued, and does not wait on retries.
    /// Returns how many.
    pub fn clear_backoff(&self, profile: &str) -> Result<usize, CatalogError> {
        self.write("clear_backoff", |c| {
            c.prepare_cached(
                "UPDATE jobs SET not_before = 0
                 WHERE profile = ?1 AND state = 'pending' AND not_before > 0",
            )?
            .execute([profile])
        })
    }

    /// Jobs by state, for one profile or all.
    pub fn queue_counts(&self, profile: Option<&str>) -> Result<QueueCounts, CatalogError> {
        self.read("queue_counts", |c| {
            // Two statements so each can use its index (jobs_claim / jobs_state).
            let mut stmt = match profile {
                Some(_) => c.prepare_cached(
                    "SELECT state, count(*) FROM jobs WHERE profile = ?1 GROUP BY state",
                )?,
                None => c.prepare_cached(
                    "SELECT state, count(*) FROM jobs WHERE ?1 IS NULL GROUP BY state",
                )?,
            };
            let mut counts = QueueCounts::default();
            let rows = stmt.query_map([profile], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (state, n) = row?;
                let n = n as u64;
                match state.as_str() {
                    "pending" => counts.pending = n,
                    "running" => counts.running = n,
                    "done" => counts.done = n,
                    _ => counts.failed = n,
                }
            }
            Ok(counts)
        })
    }

    /// The most recently failed jobs, newest first.
    pub fn failed_jobs(&self, limit: usize) -> Result<Vec<FailedJob>, CatalogError> {
        self.read("failed_jobs", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT j.id, j.hash, j.profile, j.attempts, j.last_error, j.updated_at,
                        (SELECT p.path FROM photos p WHERE p.hash = j.hash
                         ORDER BY p.state = 'present' DESC, p.id LIMIT 1)
                 FROM jobs j WHERE j.state = 'failed'
                 ORDER BY j.updated_at DESC, j.id DESC LIMIT ?1",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map([limit], |r| {
                let path = match r.get_ref(6)? {
                    rusqlite::types::ValueRef::Null => None,
                    _ => Some(row_path(r, 6)?),
                };
                Ok(FailedJob {
                    job_id: r.get(0)?,
                    hash: r.get(1)?,
                    profile: r.get(2)?,
                    attempts: r.get(3)?,
                    last_error: r.get(4)?,
                    updated_at: r.get(5)?,
                    path,
                })
            })?;
            rows.collect()
        })
    }

    fn no_such_job(&self, job_id: i64, hash: &str) -> CatalogError {
        CatalogError::NoSuchJob {
            path: self.path.clone(),
            job_id,
            hash: hash.to_owned(),
        }
    }
}

/// Which jobs [`drop_orphaned_jobs`] looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Orphans<'a> {
    /// The waiting jobs of one content (its last photo just went or changed content).
    OfContent(&'a str),
    /// One job its worker hands back (failed or released), whatever its state.
    HandedBack(i64),
    /// Every waiting job (daemon start-up).
    Everywhere,
}

/// The one rule for jobs whose photos are all gone: a job that is not done, and that no worker
/// holds (or that the caller's worker hands back), is deleted when no present photo has its
/// content. Nothing could ever claim it, and a failure of a deleted file is nothing the user can
/// act on (`status` and `retry` would report it forever). A `running` job is left to its worker,
/// which ends it through [`Orphans::HandedBack`]. Returns how many jobs went.
pub(crate) fn drop_orphaned_jobs(c: &Connection, which: Orphans<'_>) -> rusqlite::Result<usize> {
    const GONE: &str = "NOT EXISTS (SELECT 1 FROM photos p WHERE p.hash = jobs.hash
                                                      AND p.state = 'present')";
    const WAITING: &str = "state IN ('pending', 'failed')";
    match which {
        Orphans::OfContent(hash) => c
            .prepare_cached(&format!(
                "DELETE FROM jobs WHERE hash = ?1 AND {WAITING} AND {GONE}"
            ))?
            .execute([hash]),
        Orphans::HandedBack(id) => c
            .prepare_cached(&format!(
                "DELETE FROM jobs WHERE id = ?1 AND state != 'done' AND {GONE}"
            ))?
            .execute([id]),
        Orphans::Everywhere => c
            .prepare_cached(&format!("DELETE FROM jobs WHERE {WAITING} AND {GONE}"))?
            .execute([]),
    }
}

pub(crate) fn enqueue_in(
    c: &Connection,
    now: i64,
    hash: &str,
    profile: &str,
    priority: Priority,
) -> rusqlite::Result<bool> {
    let added = c
        .prepare_cached(
            "INSERT INTO jobs(hash, profile, state, priority, attempts, not_before, updated_at)
             VALUES (?1, ?2, 'pending', ?3, 0, 0, ?4)
             ON CONFLICT(hash, profile) DO NOTHING",
        )?
        .execute(params![hash, profile, priority.value(), now])?
        == 1;
    if !added && priority == Priority::New {
        c.prepare_cached(
            "UPDATE jobs SET priority = 0
             WHERE hash = ?1 AND profile = ?2 AND state = 'pending' AND priority > 0",
        )?
        .execute(params![hash, profile])?;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_support::{caption, fixture, hash_of, PROFILE};
    use crate::catalog::MediaFacts;
    use std::collections::HashSet;
    use std::path::Path;

    fn add(f: &crate::catalog::test_support::Fixture, name: &str) -> String {
        let h = hash_of(name);
        f.cat
            .record_photo(
                f.lib,
                &Path::new("/photos").join(name),
                1,
                1,
                &h,
                &MediaFacts::default(),
            )
            .unwrap();
        h
    }

    #[test]
    fn enqueue_dedups_in_every_state() {
        let f = fixture();
        let h = add(&f, "a");
        assert!(f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
        assert!(!f.cat.enqueue(&h, PROFILE, Priority::Backfill).unwrap());
        let j = f.cat.claim(PROFILE, 1).unwrap();
        assert!(!f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
        f.cat
            .fail(
                j[0].id,
                "boom",
                &RetryPolicy {
                    max_attempts: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(!f.cat.enqueue(&h, PROFILE, Priority::New).unwrap());
        assert_eq!(f.cat.queue_counts(None).unwrap().failed, 1);
        // Another profile is another job.
        assert!(f.cat.enqueue(&h, "other", Priority::New).unwrap());
        assert_eq!(f.cat.queue_counts(Some(PROFILE)).unwrap().failed, 1);
        assert_eq!(f.cat.queue_counts(Some("other")).unwrap().pending, 1);
    }

    #[test]
    fn claims_new_before_backfill_then_oldest() {
        let f = fixture();
        let b1 = add(&f, "b1");
        let b2 = add(&f, "b2");
        let n1 = add(&f, "n1");
        let p = add(&f, "promoted");
        f.cat.enqueue(&b1, PROFILE, Priority::Backfill).unwrap();
        f.cat.enqueue(&p, PROFILE, Priority::Backfill).unwrap();
        f.cat.enqueue(&b2, PROFILE, Priority::Backfill).unwrap();
        f.cat.enqueue(&n1, PROFILE, Priority::New).unwrap();
        assert!(!f.cat.enqueue(&p, PROFILE, Priority::New).unwrap());
        let got: Vec<String> = f
            .cat
            .claim(PROFILE, 3)
            .unwrap()
            .into_iter()
            .map(|j| j.hash)
            .collect();
        assert_eq!(got, vec![p.clone(), n1, b1]);
        let rest = f.cat.claim(PROFILE, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].hash, b2);
        assert!(f.cat.claim(PROFILE, 10).unwrap().is_empty());
        assert_eq!(f.cat.queue_counts(None).unwrap().running, 4);
    }

    #[test]
    fn concurrent_claims_never_share_a_job() {
        let f = fixture();
        let n = 400;
        {
            let mut cat = Catalog::open(&f.db).unwrap();
            let mut b = cat.batch().unwrap();
            for i in 0..n {
                let h = hash_of(&format!("c{i}"));
                b.record_photo(
                    f.lib,
                    Path::new(&format!("/photos/c{i}.jpg")),
                    1,
                    1,
                    &h,
                    &MediaFacts::default(),
                )
                .unwrap();
                b.enqueue(&h, PROFILE, Priority::Backfill).unwrap();
            }
            b.commit().unwrap();
        }
        // Both handles open first, then claim in small batches with a little "work" outside the
        // lock between claims, as workers do, so the claims really interleave.
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let db = f.db.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    let cat = Catalog::open(&db).unwrap();
                    start.wait();
                    let mut mine = Vec::new();
                    loop {
                        let jobs = cat.claim(PROFILE, 2).unwrap();
                        if jobs.is_empty() {
                            break mine;
                        }
                        mine.extend(jobs.into_iter().map(|j| j.id));
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        let results: Vec<Vec<i64>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let all: HashSet<i64> = results.iter().flatten().copied().collect();
        assert_eq!(results.iter().map(Vec::len).sum::<usize>(), n);
        assert_eq!(all.len(), n, "a job was claimed twice");
        assert!(
            results.iter().all(|r| !r.is_empty()),
            "claims did not interleave: {} and {}",
            results[0].len(),
            results[1].len()
        );
    }

    #[test]
    fn fail_backs_off_then_fails_after_max() {
        let f = fixture();
        let h = add(&f, "bad");
        f.cat.enqueue(&h, PROFILE, Priority::New).unwrap();
        let policy = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(15),
        };
        let t0 = 1_000_000;
        let job = f.cat.claim_at(PROFILE, 1, t0).unwrap().remove(0);
        assert_eq!(job.attempts, 0);
        let o = f.cat.fail_at(job.id, "decode error", &policy, t0).unwrap();
        assert_eq!(
            o,
            FailOutcome::Retry {
                attempts: 1,
                delay: Duration::from_secs(10),
                not_before: t0 + 10_000
            }
        );
        assert!(f.cat.claim_at(PROFILE, 1, t0 + 9_999).unwrap().is_empty());
        let job = f.cat.claim_at(PROFILE, 1, t0 + 10_000).unwrap().remove(0);
        assert_eq!(job.attempts, 1);
        let o = f
            .cat
            .fail_at(job.id, "decode error", &policy, t0 + 10_000)
            .unwrap();
        // 20 s capped at 15 s.
        assert_eq!(
            o,
            FailOutcome::Retry {
                attempts: 2,
                delay: Duration::from_secs(15),
                not_before: t0 + 25_000
            }
        );
        let job = f.cat.claim_at(PROFILE, 1, t0 + 25_000).unwrap().remove(0);
        let o = f
            .cat
            .fail_at(job.id, "still broken", &policy, t0 + 25_000)
            .unwrap();
        assert_eq!(o, FailOutcome::Failed { attempts: 3 });
        assert!(f.cat.claim_at(PROFILE, 1, i64::MAX / 2).unwrap().is_empty());
        let failed = f.cat.failed_jobs(10).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].last_error.as_deref(), Some("still broken"));
        assert_eq!(failed[0].attempts, 3);
        assert_eq!(failed[0].path.as_deref(), Some(Path::new("/photos/bad")));
        assert_eq!(f.cat.retry_failed().unwrap(), 1);
        let job = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        assert_eq!(job.attempts, 0);
        assert!(matches!(
            f.cat.fail(9999, "x", &policy),
            Err(CatalogError::NoSuchJob { job_id: 9999, .. })
        ));
    }

    #[test]
    fn backoff_saturates() {
        let p = RetryPolicy {
            max_attempts: 100,
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        };
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(3), Duration::from_secs(4));
        assert_eq!(p.backoff(90), Duration::from_secs(3600));
    }

    #[test]
    fn reclaim_and_release() {
        let f = fixture();
        for i in 0..4 {
            let h = add(&f, &format!("r{i}"));
            f.cat.enqueue(&h, PROFILE, Priority::New).unwrap();
        }
        let jobs = f.cat.claim(PROFILE, 4).unwrap();
        f.cat.release(&[jobs[0].id, jobs[1].id]).unwrap();
        let c = f.cat.queue_counts(None).unwrap();
        assert_eq!((c.pending, c.running), (2, 2));
        // A "crash": a new handle finds two running jobs and reclaims them, an attempt each.
        drop(f.cat);
        let cat = Catalog::open(&f.db).unwrap();
        let policy = RetryPolicy::default();
        let r = cat.reclaim_running(&policy).unwrap();
        assert_eq!((r.returned, r.failed), (2, 0));
        assert_eq!(cat.reclaim_running(&policy).unwrap(), Reclaimed::default());
        // The released ones (no attempt spent) come as a batch; the crashed ones one at a time.
        let fresh = cat.claim(PROFILE, 10).unwrap();
        assert_eq!(fresh.len(), 2);
        assert!(fresh.iter().all(|j| j.attempts == 0));
        for _ in 0..2 {
            let alone = cat.claim(PROFILE, 10).unwrap();
            assert_eq!(alone.len(), 1);
            assert_eq!(alone[0].attempts, 1);
        }
    }

    /// A photo that kills the process every time: each start counts an attempt, its batch-mates
    /// get theirs back alone, and at the limit it is failed as having crashed the worker, so a
    /// service restarted on failure finishes the rest of the library.
    #[test]
    fn a_photo_that_crashes_the_worker_ends_failed_and_the_rest_goes_on() {
        let f = fixture();
        let hashes: Vec<String> = (0..4).map(|i| add(&f, &format!("p{i}"))).collect();
        for h in &hashes {
            f.cat.enqueue(h, PROFILE, Priority::New).unwrap();
        }
        let policy = RetryPolicy::default();
        let poison = &hashes[1];
        let mut cat = f.cat;
        let mut done = 0;
        for start in 0..10 {
            // Start-up after a kill.
            cat.reclaim_running(&policy).unwrap();
            loop {
                let jobs = cat.claim(PROFILE, 4).unwrap();
                if jobs.is_empty() {
                    break;
                }
                if jobs.iter().any(|j| &j.hash == poison) {
                    // The process dies mid-batch: whatever it held stays `running`.
                    drop(cat);
                    cat = Catalog::open(&f.db).unwrap();
                    break;
                }
                for j in jobs {
                    cat.finish(j.id, &j.hash, &caption("ok", &[])).unwrap();
                    done += 1;
                }
            }
            let c = cat.queue_counts(None).unwrap();
            if c.pending == 0 && c.running == 0 {
                assert!(
                    start <= policy.max_attempts as usize,
                    "took {start} restarts"
                );
                break;
            }
        }
        assert_eq!(done, 3, "every other photo is captioned");
        let failed = cat.failed_jobs(10).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(&failed[0].hash, poison);
        assert_eq!(failed[0].attempts, policy.max_attempts);
        let error = failed[0].last_error.as_deref().unwrap();
        assert!(error.contains("crashed the worker"), "{error}");
        // `retry` gives it new attempts.
        assert_eq!(cat.retry_failed().unwrap(), 1);
    }

    #[test]
    fn finish_checks_the_job() {
        let f = fixture();
        let h = add(&f, "f");
        f.cat.enqueue(&h, PROFILE, Priority::New).unwrap();
        let job = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        let err = f
            .cat
            .finish(job.id, &hash_of("other"), &caption("x", &[]))
            .unwrap_err();
        assert!(matches!(err, CatalogError::NoSuchJob { .. }), "{err:?}");
        f.cat
            .finish(job.id, &h, &caption("A lake.", &["lake"]))
            .unwrap();
        // Finishing again (e.g. a re-run) replaces rather than duplicates.
        f.cat
            .finish(job.id, &h, &caption("A calm lake.", &["lake", "boat"]))
            .unwrap();
        let stored = f.cat.results_for_hash(&h).unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].clean_text.as_deref(), Some("A calm lake."));
        let od = stored.iter().find(|r| r.task == "<OD>").unwrap();
        assert_eq!(od.regions.len(), 2);
        assert_eq!(f.cat.keywords_for_hash(&h).unwrap(), vec!["boat", "lake"]);
        assert_eq!(f.cat.queue_counts(None).unwrap().done, 1);
    }

    fn fail_for_good(f: &crate::catalog::test_support::Fixture, job: i64) {
        let o = f
            .cat
            .fail(
                job,
                "e",
                &RetryPolicy {
                    max_attempts: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(o, FailOutcome::Failed { attempts: 1 });
    }

    #[test]
    fn requeue_for_profile_adds_missing_and_keeps_failed() {
        let f = fixture();
        let a = add(&f, "a");
        let b = add(&f, "b");
        let c = add(&f, "c");
        let gone = add(&f, "gone");
        f.cat.mark_gone(&[PathBuf::from("/photos/gone")]).unwrap();
        f.cat.enqueue(&a, PROFILE, Priority::New).unwrap();
        let j = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        f.cat.finish(j.id, &a, &caption("x", &[])).unwrap();
        f.cat.enqueue(&b, PROFILE, Priority::New).unwrap();
        let j = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        fail_for_good(&f, j.id);
        // c added; a done stays done; b failed stays failed (every daemon start calls this);
        // gone content is not queued.
        assert_eq!(f.cat.requeue_for_profile(PROFILE).unwrap(), 1);
        let counts = f.cat.queue_counts(Some(PROFILE)).unwrap();
        assert_eq!((counts.pending, counts.done, counts.failed), (1, 1, 1));
        assert_eq!(f.cat.requeue_for_profile(PROFILE).unwrap(), 0);
        let counts = f.cat.queue_counts(Some(PROFILE)).unwrap();
        assert_eq!((counts.pending, counts.done, counts.failed), (1, 1, 1));
        let failed = f.cat.failed_jobs(10).unwrap();
        assert_eq!((failed.len(), failed[0].attempts), (1, 1));
        // A new model: everything present is backfilled.
        assert_eq!(
            f.cat.requeue_for_profile("large@main|<CAPTION>").unwrap(),
            3
        );
        // `reprocess` gives the failed one of its profile a fresh set of attempts.
        assert_eq!(f.cat.retry_failed_for_profile("other").unwrap(), 0);
        assert_eq!(f.cat.retry_failed_for_profile(PROFILE).unwrap(), 1);
        let counts = f.cat.queue_counts(Some(PROFILE)).unwrap();
        assert_eq!((counts.pending, counts.done, counts.failed), (2, 1, 0));
        let _ = (c, gone);
    }

    #[test]
    fn requeue_done_for_profile_captions_present_contents_again() {
        let f = fixture();
        let a = add(&f, "a");
        let b = add(&f, "b");
        let gone = add(&f, "gone");
        let failed = add(&f, "failed");
        for h in [&a, &b, &gone] {
            f.cat.enqueue(h, PROFILE, Priority::New).unwrap();
            let j = f.cat.claim(PROFILE, 1).unwrap().remove(0);
            f.cat.finish(j.id, h, &caption("x", &["tree"])).unwrap();
        }
        f.cat.enqueue(&failed, PROFILE, Priority::New).unwrap();
        let j = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        fail_for_good(&f, j.id);
        f.cat.enqueue(&a, "other", Priority::New).unwrap();
        let j = f.cat.claim("other", 1).unwrap().remove(0);
        f.cat.finish(j.id, &a, &caption("y", &[])).unwrap();
        f.cat.mark_gone(&[PathBuf::from("/photos/gone")]).unwrap();

        // a and b: present and done. gone: no present photo. failed: not done. other: untouched.
        assert_eq!(f.cat.requeue_done_for_profile(PROFILE).unwrap(), 2);
        let counts = f.cat.queue_counts(Some(PROFILE)).unwrap();
        assert_eq!((counts.pending, counts.done, counts.failed), (2, 1, 1));
        assert_eq!(f.cat.queue_counts(Some("other")).unwrap().done, 1);
        // Results stay until replaced.
        assert_eq!(f.cat.keywords_for_hash(&b).unwrap(), vec!["tree"]);
        let jobs = f.cat.claim(PROFILE, 10).unwrap();
        let mut hashes: Vec<&str> = jobs.iter().map(|j| j.hash.as_str()).collect();
        hashes.sort();
        let mut want = vec![a.as_str(), b.as_str()];
        want.sort();
        assert_eq!(hashes, want);
        assert!(jobs.iter().all(|j| j.attempts == 0));
        assert_eq!(f.cat.requeue_done_for_profile(PROFILE).unwrap(), 0);
    }

    #[test]
    fn clear_backoff_makes_waiting_jobs_claimable_with_their_attempts() {
        let f = fixture();
        let h = add(&f, "flaky");
        let other = add(&f, "other");
        f.cat.enqueue(&h, PROFILE, Priority::New).unwrap();
        f.cat.enqueue(&other, "other", Priority::New).unwrap();
        let policy = RetryPolicy::default();
        let j = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        assert!(matches!(
            f.cat.fail(j.id, "busy", &policy).unwrap(),
            FailOutcome::Retry { attempts: 1, .. }
        ));
        let j = f.cat.claim("other", 1).unwrap().remove(0);
        f.cat.fail(j.id, "busy", &policy).unwrap();
        assert!(f.cat.claim(PROFILE, 1).unwrap().is_empty(), "backing off");
        assert_eq!(f.cat.clear_backoff(PROFILE).unwrap(), 1);
        assert_eq!(f.cat.clear_backoff(PROFILE).unwrap(), 0);
        let j = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        assert_eq!((j.hash.as_str(), j.attempts), (h.as_str(), 1));
        // The attempt limit still holds.
        f.cat.fail(j.id, "busy", &policy).unwrap();
        f.cat.clear_backoff(PROFILE).unwrap();
        let j = f.cat.claim(PROFILE, 1).unwrap().remove(0);
        assert_eq!(
            f.cat.fail(j.id, "busy", &policy).unwrap(),
            FailOutcome::Failed { attempts: 3 }
        );
        // Another profile's back-off is not touched.
        assert!(f.cat.claim("other", 1).unwrap().is_empty());
    }

    #[test]
    fn a_job_whose_photo_is_deleted_mid_caption_ends() {
        let f = fixture();
        let gone = |name: &str| f.cat.mark_gone(&[Path::new("/photos").join(name)]).unwrap();
        let hashes: Vec<String> = ["failed", "released", "crashed", "kept"]
            .iter()
            .map(|n| add(&f, n))
            .collect();
        for h in &hashes {
            f.cat.enqueue(h, PROFILE, Priority::New).unwrap();
        }
        let jobs = f.cat.claim(PROFILE, 4).unwrap();
        assert_eq!(jobs.len(), 4);
        for name in ["failed", "released", "crashed"] {
            assert_eq!(gone(name), 1);
        }
        // Running jobs are not dropped by the deletion itself...
        assert_eq!(f.cat.queue_counts(None).unwrap().running, 4);
        // ... but failing one (the worker finds no copy) ends it rather than retrying.
        let o = f
            .cat
            .fail(jobs[0].id, "no readable copy", &RetryPolicy::default())
            .unwrap();
        assert_eq!(o, FailOutcome::Dropped);
        // Handing one back (shutdown) drops it too; a job with a present photo goes back.
        f.cat.release(&[jobs[1].id, jobs[3].id]).unwrap();
        let c = f.cat.queue_counts(None).unwrap();
        assert_eq!((c.pending, c.running, c.failed), (1, 1, 0));
        // A crash with the job running: the start-up reclaim, then the orphan sweep.
        assert_eq!(
            f.cat
                .reclaim_running(&RetryPolicy::default())
                .unwrap()
                .returned,
            1
        );
        assert_eq!(f.cat.queue_counts(None).unwrap().pending, 2);
        assert_eq!(f.cat.drop_orphaned_pending().unwrap(), 1);
        assert_eq!(f.cat.drop_orphaned_pending().unwrap(), 0);
        let c = f.cat.queue_counts(None).unwrap();
        assert_eq!((c.pending, c.running, c.done, c.failed), (1, 0, 0, 0));
        assert_eq!(f.cat.claim(PROFILE, 10).unwrap()[0].hash, hashes[3]);
        // The content coming back is queued anew.
        let o = f
            .cat
            .record_photo(
                f.lib,
                Path::new("/photos/crashed"),
                1,
                1,
                &hashes[2],
                &MediaFacts::default(),
            )
            .unwrap();
        assert!(o.changed);
        assert!(f.cat.enqueue(&hashes[2], PROFILE, Priority::New).unwrap());
    }

    #[test]
    fn failed_jobs_of_deleted_contents_are_dropped() {
        let f = fixture();
        let here = add(&f, "here");
        let away = add(&f, "away");
        for h in [&here, &away] {
            f.cat.enqueue(h, PROFILE, Priority::New).unwrap();
            let j = f.cat.claim(PROFILE, 1).unwrap().remove(0);
            fail_for_good(&f, j.id);
        }
        f.cat.mark_gone(&[PathBuf::from("/photos/away")]).unwrap();
        let c = f.cat.queue_counts(None).unwrap();
        assert_eq!(
            c.failed, 1,
            "a deleted file's failure is not reported forever"
        );
        assert_eq!(f.cat.retry_failed().unwrap(), 1);
        let c = f.cat.queue_counts(None).unwrap();
        assert_eq!((c.pending, c.failed), (1, 0));
        assert_eq!(f.cat.claim(PROFILE, 10).unwrap()[0].hash, here);
    }

    #[test]
    fn offline_library_jobs_wait() {
        let f = fixture();
        let h = add(&f, "nas");
        f.cat.enqueue(&h, PROFILE, Priority::New).unwrap();
        f.cat.set_library_state(f.lib, false, true).unwrap();
        assert!(f.cat.claim(PROFILE, 1).unwrap().is_empty());
        assert_eq!(f.cat.queue_counts(None).unwrap().pending, 1);
        f.cat.set_library_state(f.lib, true, true).unwrap();
        assert_eq!(f.cat.claim(PROFILE, 1).unwrap().len(), 1);
    }
}
