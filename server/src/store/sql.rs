//! The SQL both backends share. Postgres and SQLite (through sqlx) both take `$n` placeholders,
//! `RETURNING` and `ON CONFLICT`, and both schemas use BIGINT ids and millisecond times, so one
//! text serves both; each backend module supplies its pools and calls `impl_store!`.

/// Implements `Store` for a type with `reader()` and `writer()` pools of database `$db`.
macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn create_user(&self, user: NewUser<'_>) -> StoreResult<UserRecord> {
                let row = sqlx::query_as::<$db, UserRecord>(
                    "INSERT INTO users (email, display_name, password_hash, created_at)
                     VALUES ($1, $2, $3, $4) RETURNING id, email, display_name, password_hash, created_at",
                )
                .bind(user.email)
                .bind(user.display_name)
                .bind(user.password_hash)
                .bind(user.now)
                .fetch_one(self.writer())
                .await?;
                Ok(row)
            }

            #[tracing::instrument(skip_all)]
            async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
                Ok(sqlx::query_as::<$db, UserRecord>(
                    "SELECT id, email, display_name, password_hash, created_at FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
                Ok(sqlx::query_as::<$db, UserRecord>(
                    "SELECT id, email, display_name, password_hash, created_at FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(self.reader())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn create_signup(&self, s: &SignupRecord) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO signups (id, email, display_name, password_hash, code_mac, code_expires_at,
                                          code_sent_at, codes_sent, attempts, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&s.id)
                .bind(&s.email)
                .bind(&s.display_name)
                .bind(&s.password_hash)
                .bind(&s.code_mac)
                .bind(s.code_expires_at)
                .bind(s.code_sent_at)
                .bind(s.codes_sent)
                .bind(s.attempts)
                .bind(s.created_at)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn signup(&self, id: &str) -> StoreResult<Option<SignupRecord>> {
                Ok(sqlx::query_as::<$db, SignupRecord>("SELECT * FROM signups WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn signups_for_email(&self, email: &str) -> StoreResult<Vec<SignupRecord>> {
                Ok(sqlx::query_as::<$db, SignupRecord>("SELECT * FROM signups WHERE email = $1 ORDER BY created_at")
                    .bind(email)
                    .fetch_all(self.reader())
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn spend_code_attempt(&self, id: &str, max_attempts: i64) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE signups SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2")
                    .bind(id)
                    .bind(max_attempts)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn renew_signup_code(&self, r: CodeRenewal<'_>) -> StoreResult<Option<SignupRecord>> {
                Ok(sqlx::query_as::<$db, SignupRecord>(
                    "UPDATE signups
                     SET code_mac = $2, code_expires_at = $3, code_sent_at = $4, codes_sent = codes_sent + 1,
                         attempts = 0
                     WHERE id = $1 AND code_sent_at <= $5 AND codes_sent < $6
                     RETURNING *",
                )
                .bind(r.signup_id)
                .bind(r.code_mac)
                .bind(r.expires_at)
                .bind(r.now)
                .bind(r.sent_no_later_than)
                .bind(r.max_codes)
                .fetch_optional(self.writer())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn complete_signup(&self, id: &str, now: Millis) -> StoreResult<UserRecord> {
                let mut tx = self.writer().begin().await?;
                // A write first, so SQLite takes its write lock at the start of the transaction.
                let signup = sqlx::query_as::<$db, SignupRecord>("DELETE FROM signups WHERE id = $1 RETURNING *")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let user = sqlx::query_as::<$db, UserRecord>(
                    "INSERT INTO users (email, display_name, password_hash, created_at)
                     VALUES ($1, $2, $3, $4) RETURNING id, email, display_name, password_hash, created_at",
                )
                .bind(&signup.email)
                .bind(&signup.display_name)
                .bind(&signup.password_hash)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM signups WHERE email = $1").bind(&signup.email).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(user)
            }

            #[tracing::instrument(skip_all)]
            async fn delete_signup(&self, id: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM signups WHERE id = $1").bind(id).execute(self.writer()).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn create_session(&self, s: NewSession<'_>) -> StoreResult<i64> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO sessions (token_hash, user_id, user_agent, created_at, last_used_at, expires_at)
                     VALUES ($1, $2, $3, $4, $4, $5) RETURNING id",
                )
                .bind(s.token_hash)
                .bind(s.user_id)
                .bind(s.user_agent)
                .bind(s.now)
                .bind(s.expires_at)
                .fetch_one(self.writer())
                .await?;
                Ok(id)
            }

            #[tracing::instrument(skip_all)]
            async fn session_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>> {
                Ok(sqlx::query_as::<$db, SessionRecord>(
                    "SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at
                     FROM sessions WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(self.reader())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn touch_session(&self, id: i64, now: Millis, expires_at: Millis) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE sessions SET last_used_at = $2, expires_at = $3 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .bind(expires_at)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn revoke_session(&self, id: i64, now: Millis) -> StoreResult<()> {
                sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(now)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn purge(&self, now: Millis, signups_before: Millis) -> StoreResult<u64> {
                let mut tx = self.writer().begin().await?;
                let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at IS NOT NULL")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let signups = sqlx::query("DELETE FROM signups WHERE created_at < $1")
                    .bind(signups_before)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(sessions.rows_affected() + signups.rows_affected())
            }
        }
    };
}

pub(crate) use impl_store;
