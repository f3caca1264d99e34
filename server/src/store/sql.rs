//! The SQL both backends share. Postgres and SQLite (through sqlx) both take `$n` placeholders,
//! `RETURNING` and `ON CONFLICT`, and both schemas use BIGINT ids and millisecond times, so one
//! text serves both; each backend module supplies its pools and calls `impl_store!`.

/// Implements `Store` for a type with `reader()` and `writer()` pools of database `$db`, a
/// `MAX_WRITERS` constant, the batch statements (`committed_messages`, `batch_members`,
/// `write_batch`, each through a `$batch`, what `batch_connection` gives; `insert_events`), the
/// sync's reads (`chats_after`, `messages_after`) and a `members` field, its [`MembersMemory`].
macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal, $batch:ty) => {
        // A block of its own, so the glob import stays inside the expansion.
        const _: () = {
        use $crate::store::*;
        use $crate::store::sql::{BatchMember, BatchWrite, ChatRow, EventRow, NewEvent, REACH_OUT, READ_CLOCK, TAKE_POSITIONS};

        impl $store {
            /// Takes the next position of the clock for one event told to each of `user_ids`
            /// (each gets a row at it). The clock row is locked until commit, so it must be the
            /// last lock the transaction takes: every writer takes it last, and none waits for
            /// another while holding it.
            async fn push_events(
                tx: &mut sqlx::Transaction<'_, $db>,
                user_ids: &[i64],
                kind: &'static str,
                chat_id: i64,
                reader: Option<(i64, i64)>,
                now: Millis,
            ) -> StoreResult<Vec<EventPos>> {
                let mut sorted = user_ids.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                let (pos,): (i64,) = sqlx::query_as(TAKE_POSITIONS).bind(1_i64).fetch_one(&mut **tx).await?;
                let events: Vec<NewEvent> = sorted
                    .iter()
                    .map(|&user_id| NewEvent { user_id, pos, kind, chat_id, reader, created_at: now })
                    .collect();
                Self::insert_events(tx, &events).await?;
                Ok(events.iter().map(|e| EventPos { user_id: e.user_id, pos: e.pos }).collect())
            }

            /// Turns the member's `reached_out` true; whether this call turned it.
            async fn reach_out<'e, E: sqlx::Executor<'e, Database = $db>>(
                executor: E,
                chat_id: i64,
                user_id: i64,
            ) -> StoreResult<bool> {
                let updated = sqlx::query(REACH_OUT).bind(chat_id).bind(user_id).execute(executor).await?;
                Ok(updated.rows_affected() == 1)
            }

            /// The chat's members, in a transaction or not.
            async fn members<'e, E: sqlx::Executor<'e, Database = $db>>(executor: E, chat_id: i64) -> StoreResult<Vec<i64>> {
                let rows: Vec<(i64,)> = sqlx::query_as("SELECT user_id FROM chat_members WHERE chat_id = $1")
                    .bind(chat_id)
                    .fetch_all(executor)
                    .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            /// One attempt at a batch; `Conflict` if a `client_id` was taken by a writer that
            /// committed meanwhile (another node), which the next attempt sees as a duplicate.
            /// `None` when `look_up_resends` is off and the batch may hold a resend: the next
            /// attempt must look them up.
            ///
            /// Reads decide what the batch stores, then the backend's `write_batch` stores it in
            /// one transaction. The reads run before that transaction, as they would inside it at
            /// READ COMMITTED: what they saw can change before the write either way, and the
            /// write holds against it (a `client_id` taken meanwhile fails its unique index, a
            /// chat gone meanwhile its counter; both are tried again). SQLite has one writer
            /// connection, held here throughout, so nothing else writes in between.
            ///
            /// Resends are rare (a client resends only what it sent before a lost connection),
            /// so the first attempt does not look for them: a resend of a stored message then
            /// breaks the unique index on `(client_id, sender_id)` and the whole write fails,
            /// storing nothing. Only a message that would be refused (a block, a chat left) must
            /// be looked up before it is answered, since it may be the resend of one stored
            /// before: the refusal must not hide that it was.
            ///
            /// With `from_memory`, chats whose members the store remembers (with no block and no
            /// deleted account among them) skip the read; the write then checks that nothing
            /// changed who is in them since, or fails with `MembersChanged` having stored nothing.
            async fn try_send_batch(
                &self,
                conn: &mut $batch,
                batch: &[NewMessage],
                look_up_resends: bool,
                from_memory: bool,
            ) -> StoreResult<Option<Vec<SendOutcome>>> {
                use std::collections::{BTreeMap, HashMap, HashSet};
                let mut outcomes: Vec<Option<SendOutcome>> = vec![None; batch.len()];

                // Resends of committed messages, by (sender_id, client_id) pairs.
                let committed: HashMap<(i64, String), MessageRecord> = if look_up_resends {
                    Self::committed_messages(conn, batch)
                        .await?
                        .into_iter()
                        .map(|message| ((message.sender_id, message.client_id.clone()), message))
                        .collect()
                } else {
                    HashMap::new()
                };

                // Members of every chat in the batch, each with whether they block the other
                // member: a block holds back a message that would be stored.
                let mut chat_ids: Vec<i64> = batch.iter().map(|m| m.chat_id).collect();
                chat_ids.sort_unstable();
                chat_ids.dedup();
                let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
                let mut blockers: HashSet<(i64, i64)> = HashSet::new();
                // Members who have not written or started the chat yet: (chat, user).
                let mut silent: HashSet<(i64, i64)> = HashSet::new();
                // Chats with a deleted member: nobody is there to write to, or to write.
                let mut abandoned: HashSet<i64> = HashSet::new();
                let remembered = if from_memory && !look_up_resends { self.members.recall(&chat_ids) } else { None };
                let members_epoch = remembered.as_ref().map(|(epoch, _)| *epoch);
                let from = if remembered.is_some() { "memory" } else { "database" };
                ::metrics::counter!($crate::metrics::BATCH_MEMBERS, "from" => from).increment(1);
                let rows = match remembered {
                    Some((_, rows)) => rows,
                    None => {
                        let rows = Self::batch_members(conn, &chat_ids).await?;
                        self.members.remember(&chat_ids, &rows);
                        rows
                    }
                };
                for BatchMember { chat_id, user_id, reached_out, blocks_friend, gone, .. } in rows {
                    members.entry(chat_id).or_default().push(user_id);
                    if gone {
                        abandoned.insert(chat_id);
                    }
                    if blocks_friend {
                        blockers.insert((chat_id, user_id));
                    }
                    if !reached_out {
                        silent.insert((chat_id, user_id));
                    }
                }

                let mut first_in_batch: HashMap<(i64, &str), usize> = HashMap::new();
                let mut repeats = Vec::new();
                let mut by_chat: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
                for (i, m) in batch.iter().enumerate() {
                    if let Some(message) = committed.get(&(m.sender_id, m.client_id.clone())) {
                        outcomes[i] = Some(if message.chat_id != m.chat_id || message.body != m.body {
                            SendOutcome::ClientIdReused
                        } else {
                            // A message's position is its id.
                            SendOutcome::Duplicate { message: message.clone(), cursor: message.id }
                        });
                    } else if let Some(&first) = first_in_batch.get(&(m.sender_id, m.client_id.as_str())) {
                        repeats.push((i, first));
                    } else {
                        first_in_batch.insert((m.sender_id, m.client_id.as_str()), i);
                        let chat_members = members.get(&m.chat_id).map(Vec::as_slice).unwrap_or_default();
                        outcomes[i] = if !chat_members.contains(&m.sender_id) || abandoned.contains(&m.chat_id) {
                            Some(SendOutcome::NotMember)
                        } else if blockers.contains(&(m.chat_id, m.sender_id)) {
                            Some(SendOutcome::Blocked { by_sender: true })
                        } else if chat_members.iter().any(|u| blockers.contains(&(m.chat_id, *u))) {
                            Some(SendOutcome::Blocked { by_sender: false })
                        } else {
                            by_chat.entry(m.chat_id).or_default().push(i);
                            None
                        };
                    }
                }

                if !look_up_resends && outcomes.iter().any(Option::is_some) {
                    return Ok(None);
                }
                if !by_chat.is_empty() {
                    // A first message reaches out: (chat, sender), once each.
                    let mut first_words: Vec<(i64, i64)> = Vec::new();
                    for (chat_id, indexes) in &by_chat {
                        for &i in indexes {
                            let key = (*chat_id, batch[i].sender_id);
                            if silent.contains(&key) && !first_words.contains(&key) {
                                first_words.push(key);
                            }
                        }
                    }
                    let now = batch.iter().map(|m| m.now).max().unwrap_or_default();
                    let plan = BatchWrite { batch, by_chat, first_words, now, members_epoch };
                    // The (chat, sender) pairs of `first_words` this write turned.
                    let (mut written, turned) = match Self::write_batch(conn, &plan).await {
                        Err(StoreError::Conflict) if !look_up_resends => return Ok(None),
                        Err(StoreError::MembersChanged) => {
                            ::metrics::counter!($crate::metrics::MEMBERS_CHANGED).increment(1);
                            self.members.forget();
                            return Err(StoreError::MembersChanged);
                        }
                        result => result?,
                    };
                    self.members.reached_out(&plan.first_words);
                    if written.len() != batch.len()
                        || plan.by_chat.values().flatten().any(|&i| written[i].is_none())
                    {
                        return Err(StoreError::Corrupt("a batch's write did not return every message".into()));
                    }
                    for (i, stored) in written.iter_mut().enumerate() {
                        if let Some(message) = stored.take() {
                            // Every member is told of the message at its position, its id.
                            let events = members[&message.chat_id]
                                .iter()
                                .map(|&user_id| EventPos { user_id, pos: message.id })
                                .collect();
                            let key = (message.chat_id, message.sender_id);
                            // Only the first of the sender's messages in the batch says so.
                            let reached_out = turned.contains(&key)
                                && !outcomes[..i].iter().any(|o| {
                                    matches!(o, Some(SendOutcome::Created { message: m, .. })
                                        if (m.chat_id, m.sender_id) == key)
                                });
                            outcomes[i] = Some(SendOutcome::Created { message, events, reached_out });
                        }
                    }
                }
                for (i, first) in repeats {
                    let (m, original) = (&batch[i], &batch[first]);
                    outcomes[i] = Some(match &outcomes[first] {
                        Some(SendOutcome::Created { message, .. }) if m.chat_id == original.chat_id && m.body == original.body => {
                            SendOutcome::Duplicate { message: message.clone(), cursor: message.id }
                        }
                        Some(SendOutcome::NotMember) if m.chat_id == original.chat_id => SendOutcome::NotMember,
                        Some(SendOutcome::Blocked { by_sender }) if m.chat_id == original.chat_id => {
                            SendOutcome::Blocked { by_sender: *by_sender }
                        }
                        _ => SendOutcome::ClientIdReused,
                    });
                }
                Ok(Some(outcomes.into_iter().map(|o| o.expect("every message has an outcome")).collect()))
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn max_writers(&self) -> usize {
                Self::MAX_WRITERS
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
                let _timer = $crate::metrics::StoreTimer::start("session_by_token_hash");
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
            async fn create_chat(&self, a: i64, b: i64, now: Millis) -> StoreResult<NewChat> {
                let _timer = $crate::metrics::StoreTimer::start("create_chat");
                let pair_key = format!("{}:{}", a.min(b), a.max(b));
                let mut tx = self.writer().begin().await?;
                let inserted: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO chats (pair_key, last_seq, last_activity_at, created_at) VALUES ($1, 0, $2, $2)
                     ON CONFLICT (pair_key) DO NOTHING RETURNING id",
                )
                .bind(&pair_key)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((chat_id,)) = inserted else {
                    let (chat_id,): (i64,) = sqlx::query_as("SELECT id FROM chats WHERE pair_key = $1")
                        .bind(&pair_key)
                        .fetch_one(&mut *tx)
                        .await?;
                    let reached_out = Self::reach_out(&mut *tx, chat_id, a).await?;
                    tx.commit().await?;
                    return Ok(NewChat { chat_id, events: Vec::new(), reached_out });
                };
                for user_id in [a, b] {
                    sqlx::query(
                        "INSERT INTO chat_members (chat_id, user_id, read_up_to, joined_at, reached_out) VALUES ($1, $2, 0, $3, $4)",
                    )
                    .bind(chat_id)
                    .bind(user_id)
                    .bind(now)
                    .bind(user_id == a)
                    .execute(&mut *tx)
                    .await?;
                }
                let events = Self::push_events(&mut tx, &[a, b], "chat_created", chat_id, None, now).await?;
                tx.commit().await?;
                Ok(NewChat { chat_id, events, reached_out: true })
            }

            #[tracing::instrument(skip_all)]
            async fn chats_for_user(&self, user_id: i64) -> StoreResult<Vec<ChatSummary>> {
                let _timer = $crate::metrics::StoreTimer::start("chats_for_user");
                let rows = sqlx::query_as::<$db, ChatRow>(chat_query!(""))
                    .bind(user_id)
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows.into_iter().map(ChatRow::into_summary).collect())
            }

            #[tracing::instrument(skip_all)]
            async fn chat_for_user(&self, chat_id: i64, user_id: i64) -> StoreResult<Option<ChatSummary>> {
                let _timer = $crate::metrics::StoreTimer::start("chat_for_user");
                let row = sqlx::query_as::<$db, ChatRow>(chat_query!("AND c.id = $2"))
                    .bind(user_id)
                    .bind(chat_id)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.map(ChatRow::into_summary))
            }

            #[tracing::instrument(skip_all)]
            async fn member_ids(&self, chat_id: i64) -> StoreResult<Vec<i64>> {
                let _timer = $crate::metrics::StoreTimer::start("member_ids");
                Self::members(self.reader(), chat_id).await
            }

            #[tracing::instrument(skip_all)]
            async fn friend_ids(&self, user_id: i64) -> StoreResult<Vec<i64>> {
                let _timer = $crate::metrics::StoreTimer::start("friend_ids");
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT DISTINCT o.user_id FROM chat_members m
                     JOIN chat_members o ON o.chat_id = m.chat_id AND o.user_id <> m.user_id
                     WHERE m.user_id = $1",
                )
                .bind(user_id)
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            #[tracing::instrument(skip_all)]
            async fn chat_between(&self, a: i64, b: i64) -> StoreResult<Option<i64>> {
                let pair_key = format!("{}:{}", a.min(b), a.max(b));
                let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM chats WHERE pair_key = $1")
                    .bind(pair_key)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.map(|(id,)| id))
            }

            #[tracing::instrument(skip_all)]
            async fn presence_pairs(&self, user_id: i64) -> StoreResult<Vec<PresencePair>> {
                let _timer = $crate::metrics::StoreTimer::start("presence_pairs");
                Ok(sqlx::query_as::<$db, PresencePair>(
                    "SELECT o.user_id AS friend_id,
                            (me.reached_out AND NOT mu.hide_presence AND NOT fu.hide_presence
                             AND NOT EXISTS (SELECT 1 FROM blocks b
                                             WHERE b.blocker_id = me.user_id AND b.blocked_id = o.user_id))
                                AS friend_sees_me,
                            (o.reached_out AND NOT mu.hide_presence AND NOT fu.hide_presence
                             AND NOT EXISTS (SELECT 1 FROM blocks b
                                             WHERE b.blocker_id = o.user_id AND b.blocked_id = me.user_id))
                                AS i_see_friend,
                            mu.last_seen_at AS my_last_seen_at, fu.last_seen_at AS friend_last_seen_at
                     FROM chat_members me
                     JOIN chat_members o ON o.chat_id = me.chat_id AND o.user_id <> me.user_id
                     JOIN users mu ON mu.id = me.user_id
                     JOIN users fu ON fu.id = o.user_id
                     WHERE me.user_id = $1",
                )
                .bind(user_id)
                .fetch_all(self.reader())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn messages_before(&self, chat_id: i64, before: i64, limit: i64) -> StoreResult<Vec<MessageRecord>> {
                let _timer = $crate::metrics::StoreTimer::start("messages_before");
                Ok(sqlx::query_as::<$db, MessageRecord>(
                    "SELECT * FROM messages WHERE chat_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                )
                .bind(chat_id)
                .bind(before)
                .bind(limit)
                .fetch_all(self.reader())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn send_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<SendOutcome>> {
                let _timer = $crate::metrics::StoreTimer::start("send_messages");
                let mut conn = self.batch_connection().await?;
                let (mut look_up_resends, mut retries, mut from_memory) = (false, 0, true);
                let outcome = loop {
                    match self.try_send_batch(&mut conn, batch, look_up_resends, from_memory).await {
                        Ok(Some(outcomes)) => break Ok(outcomes),
                        Ok(None) => look_up_resends = true,
                        Err(StoreError::MembersChanged) if from_memory => from_memory = false,
                        Err(StoreError::Conflict | StoreError::Retry) if retries < 2 => retries += 1,
                        Err(err) => break Err(err),
                    }
                };
                // Kept for the next batch only after answers that leave it in step with the
                // database; after any other failure (a lost connection, say) it is closed.
                if matches!(&outcome, Ok(_) | Err(StoreError::Conflict | StoreError::Retry | StoreError::MembersChanged)) {
                    self.keep_batch_connection(conn);
                }
                outcome
            }

            #[tracing::instrument(skip_all)]
            async fn mark_read(&self, chat_id: i64, user_id: i64, up_to: i64, now: Millis) -> StoreResult<ReadOutcome> {
                let _timer = $crate::metrics::StoreTimer::start("mark_read");
                let mut tx = self.writer().begin().await?;
                let updated: Option<(i64,)> = sqlx::query_as(
                    "UPDATE chat_members
                     SET read_up_to = (SELECT CASE WHEN last_seq < $3 THEN last_seq ELSE $3 END FROM chats WHERE id = $1)
                     WHERE chat_id = $1 AND user_id = $2
                       AND read_up_to < (SELECT CASE WHEN last_seq < $3 THEN last_seq ELSE $3 END FROM chats WHERE id = $1)
                     RETURNING read_up_to",
                )
                .bind(chat_id)
                .bind(user_id)
                .bind(up_to)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((up_to,)) = updated else {
                    let member: Option<(i64,)> =
                        sqlx::query_as("SELECT user_id FROM chat_members WHERE chat_id = $1 AND user_id = $2")
                            .bind(chat_id)
                            .bind(user_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    return Ok(if member.is_some() { ReadOutcome::Unchanged } else { ReadOutcome::NotMember });
                };
                let members = Self::members(&mut *tx, chat_id).await?;
                let events =
                    Self::push_events(&mut tx, &members, "read", chat_id, Some((user_id, up_to)), now).await?;
                tx.commit().await?;
                Ok(ReadOutcome::Updated { up_to, events })
            }

            #[tracing::instrument(skip_all)]
            async fn clock(&self) -> StoreResult<i64> {
                let _timer = $crate::metrics::StoreTimer::start("clock");
                let (value,): (i64,) = sqlx::query_as(READ_CLOCK).fetch_one(self.reader()).await?;
                Ok(value)
            }

            async fn history_epoch(&self) -> StoreResult<i64> {
                let (epoch,): (i64,) = sqlx::query_as("SELECT value FROM history_epoch WHERE id = 1")
                    .fetch_one(self.reader())
                    .await?;
                Ok(epoch)
            }

            async fn advance_history_epoch(&self) -> StoreResult<i64> {
                let (epoch,): (i64,) =
                    sqlx::query_as("UPDATE history_epoch SET value = value + 1 WHERE id = 1 RETURNING value")
                        .fetch_one(self.writer())
                        .await?;
                Ok(epoch)
            }

            /// The user's chats' messages and their other events past `since`, merged by position.
            /// The clock is read first: every position up to its value has committed (positions
            /// commit in order), so what the later statements find up to it is complete, and
            /// nothing past it is taken. Only the `limit` chats whose next message comes first
            /// are read (each backend's `chats_after` finds them): a user with many busy chats
            /// would otherwise have each read `limit` deep for every page, and a replay from the
            /// start cost their number times the rows it returns. Each chat read and the
            /// events give at most `limit` rows; the page ends where one of them filled its
            /// `limit` (past it, that source may hold more) and before the first message of the
            /// chats left out, whichever comes first.
            #[tracing::instrument(skip_all)]
            async fn events_since(&self, user_id: i64, since: i64, limit: i64) -> StoreResult<EventPage> {
                let _timer = $crate::metrics::StoreTimer::start("events_since");
                let limit = limit.max(1);
                let mut conn = self.reader().acquire().await?;
                let (clock,): (i64,) = sqlx::query_as(READ_CLOCK).fetch_one(&mut *conn).await?;
                if since >= clock {
                    return Ok(EventPage { events: Vec::new(), next: since, more: false, clock });
                }
                // The chats with a message past `since`, by their first one: the first `limit` and one more.
                let mut firsts = Self::chats_after(&mut conn, user_id, since, clock, limit + 1).await?;
                // The chats left out start at or past this one's first message.
                let left_out = (firsts.len() as i64 > limit).then(|| firsts[limit as usize].first_pos);
                firsts.truncate(limit as usize);
                firsts.sort_unstable_by_key(|c| c.chat_id);
                let messages = Self::messages_after(&mut conn, &firsts, since, clock, limit).await?;
                let events = sqlx::query_as::<$db, EventRow>(
                    "SELECT pos, kind, chat_id, reader_id, up_to FROM events
                     WHERE user_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos LIMIT $4",
                )
                .bind(user_id)
                .bind(since)
                .bind(clock)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?;
                drop(conn);

                // The smallest last position among the sources that filled their limit, or before
                // the chats left out.
                let mut cut: Option<i64> = None;
                let mut cut_at = |pos: i64| cut = Some(cut.map_or(pos, |c: i64| c.min(pos)));
                if let Some(first) = left_out {
                    cut_at(first - 1);
                }
                if events.len() as i64 == limit {
                    cut_at(events.last().map_or(clock, |e| e.pos));
                }
                let mut run = (0_i64, 0_i64);
                for m in &messages {
                    run = if run.0 == m.chat_id { (m.chat_id, run.1 + 1) } else { (m.chat_id, 1) };
                    if run.1 == limit {
                        cut_at(m.id);
                    }
                }
                let end = cut.unwrap_or(clock);
                let mut records = Vec::with_capacity(messages.len() + events.len());
                for row in events.into_iter().filter(|e| e.pos <= end) {
                    records.push(row.into_record()?);
                }
                records.extend(messages.into_iter().filter(|m| m.id <= end).map(|m| EventRecord {
                    pos: m.id,
                    chat_id: m.chat_id,
                    kind: EventKind::Message(m),
                }));
                records.sort_unstable_by_key(|r| r.pos);
                Ok(if records.len() as i64 > limit {
                    records.truncate(limit as usize);
                    let next = records.last().map_or(since, |r| r.pos);
                    EventPage { events: records, next, more: true, clock }
                } else {
                    EventPage { events: records, next: end, more: cut.is_some(), clock }
                })
            }

            #[tracing::instrument(skip_all)]
            async fn set_last_seen(&self, user_id: i64, at: Millis) -> StoreResult<()> {
                sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1 AND deleted_at IS NULL")
                    .bind(user_id)
                    .bind(at)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn set_display_name(&self, user_id: i64, display_name: &str) -> StoreResult<()> {
                sqlx::query("UPDATE users SET display_name = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(display_name)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> StoreResult<()> {
                sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(password_hash)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn live_sessions(&self, user_id: i64, now: Millis) -> StoreResult<Vec<SessionRow>> {
                Ok(sqlx::query_as::<$db, SessionRow>(
                    "SELECT id, user_agent, created_at, last_used_at FROM sessions
                     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
                     ORDER BY last_used_at DESC, id DESC",
                )
                .bind(user_id)
                .bind(now)
                .fetch_all(self.reader())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn live_session_ids(&self, ids: &[i64], now: Millis) -> StoreResult<Vec<i64>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id FROM sessions WHERE revoked_at IS NULL AND expires_at > ",
                );
                query.push_bind(now).push(" AND id IN (");
                let mut list = query.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                list.push_unseparated(")");
                Ok(query.build_query_as::<(i64,)>().fetch_all(self.reader()).await?.into_iter().map(|(id,)| id).collect())
            }

            #[tracing::instrument(skip_all)]
            async fn revoke_session_of(&self, user_id: i64, session_id: i64, now: Millis) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE sessions SET revoked_at = $3 WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL",
                )
                .bind(user_id)
                .bind(session_id)
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn revoke_other_sessions(&self, user_id: i64, keep: i64, now: Millis) -> StoreResult<Vec<i64>> {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id",
                )
                .bind(user_id)
                .bind(keep)
                .bind(now)
                .fetch_all(self.writer())
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            #[tracing::instrument(skip_all)]
            async fn create_users_with_sessions(&self, users: &[BulkUser]) -> StoreResult<Vec<i64>> {
                let mut tx = self.writer().begin().await?;
                let mut ids = Vec::with_capacity(users.len());
                for user in users {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO users (email, display_name, password_hash, created_at) VALUES ($1, $2, $3, $4)
                         RETURNING id",
                    )
                    .bind(&user.email)
                    .bind(&user.display_name)
                    .bind(&user.password_hash)
                    .bind(user.now)
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO sessions (token_hash, user_id, user_agent, created_at, last_used_at, expires_at)
                         VALUES ($1, $2, 'parley-server admin', $3, $3, $4)",
                    )
                    .bind(&user.token_hash)
                    .bind(id)
                    .bind(user.now)
                    .bind(user.session_expires_at)
                    .execute(&mut *tx)
                    .await?;
                    ids.push(id);
                }
                tx.commit().await?;
                Ok(ids)
            }

            #[tracing::instrument(skip_all)]
            async fn replace_password_reset(&self, r: &PasswordResetRecord) -> StoreResult<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query("DELETE FROM password_resets WHERE user_id = $1").bind(r.user_id).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO password_resets (id, user_id, code_mac, code_expires_at, attempts, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&r.id)
                .bind(r.user_id)
                .bind(&r.code_mac)
                .bind(r.code_expires_at)
                .bind(r.attempts)
                .bind(r.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn password_reset(&self, id: &str) -> StoreResult<Option<PasswordResetRecord>> {
                Ok(sqlx::query_as::<$db, PasswordResetRecord>("SELECT * FROM password_resets WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.writer())
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn spend_reset_attempt(&self, id: &str, max_attempts: i64) -> StoreResult<bool> {
                let done =
                    sqlx::query("UPDATE password_resets SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2")
                        .bind(id)
                        .bind(max_attempts)
                        .execute(self.writer())
                        .await?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn complete_password_reset(&self, id: &str, password_hash: &str, now: Millis) -> StoreResult<Vec<i64>> {
                let mut tx = self.writer().begin().await?;
                let (user_id,): (i64,) = sqlx::query_as("DELETE FROM password_resets WHERE id = $1 RETURNING user_id")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(password_hash)
                    .execute(&mut *tx)
                    .await?;
                let revoked: Vec<(i64,)> = sqlx::query_as(
                    "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
                )
                .bind(user_id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(revoked.into_iter().map(|(id,)| id).collect())
            }

            #[tracing::instrument(skip_all)]
            async fn hide_presence(&self, user_id: i64) -> StoreResult<bool> {
                let (hide,): (bool,) = sqlx::query_as("SELECT hide_presence FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_one(self.reader())
                    .await?;
                Ok(hide)
            }

            #[tracing::instrument(skip_all)]
            async fn set_hide_presence(&self, user_id: i64, hide: bool) -> StoreResult<()> {
                sqlx::query("UPDATE users SET hide_presence = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(hide)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn block(&self, blocker_id: i64, blocked_id: i64, now: Millis) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
                )
                .bind(blocker_id)
                .bind(blocked_id)
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn unblock(&self, blocker_id: i64, blocked_id: i64) -> StoreResult<()> {
                sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
                    .bind(blocker_id)
                    .bind(blocked_id)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn blocked_users(&self, blocker_id: i64) -> StoreResult<Vec<BlockedRow>> {
                Ok(sqlx::query_as::<$db, BlockedRow>(
                    "SELECT u.id AS user_id, u.email, u.display_name, b.created_at
                     FROM blocks b JOIN users u ON u.id = b.blocked_id
                     WHERE b.blocker_id = $1 ORDER BY b.created_at DESC, u.id DESC",
                )
                .bind(blocker_id)
                .fetch_all(self.reader())
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn blocked_either_way(&self, a: i64, b: i64) -> StoreResult<bool> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "SELECT blocker_id FROM blocks
                     WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1)",
                )
                .bind(a)
                .bind(b)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.is_some())
            }

            #[tracing::instrument(skip_all)]
            async fn delete_account(&self, user_id: i64, now: Millis) -> StoreResult<DeletedAccount> {
                let mut tx = self.writer().begin().await?;
                // A write first, so SQLite takes its write lock at the start of the transaction.
                let sessions: Vec<(i64,)> = sqlx::query_as("DELETE FROM sessions WHERE user_id = $1 RETURNING id")
                    .bind(user_id)
                    .fetch_all(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM password_resets WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM events WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
                // Chats whose other member left before: nobody is left to read them. Their
                // messages go first (on Postgres no foreign key cascades to them); their events
                // went with each member's account.
                let gone_chats: Vec<(i64,)> = sqlx::query_as(
                    "SELECT me.chat_id FROM chat_members me
                     JOIN chat_members o ON o.chat_id = me.chat_id AND o.user_id <> me.user_id
                     JOIN users u ON u.id = o.user_id
                     WHERE me.user_id = $1 AND u.deleted_at IS NOT NULL",
                )
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                for (chat_id,) in gone_chats {
                    sqlx::query("DELETE FROM messages WHERE chat_id = $1").bind(chat_id).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM chats WHERE id = $1").bind(chat_id).execute(&mut *tx).await?;
                }
                let done = sqlx::query(
                    "UPDATE users SET email = $2, display_name = $3, password_hash = '', last_seen_at = NULL,
                                      hide_presence = TRUE, deleted_at = $4
                     WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(user_id)
                // Not an address anyone can sign up with (`domain::Email` refuses ':'), and unique.
                .bind(format!("deleted:{user_id}"))
                .bind(DELETED_USER_NAME)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                let friends: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT o.user_id, me.chat_id FROM chat_members me
                     JOIN chat_members o ON o.chat_id = me.chat_id AND o.user_id <> me.user_id
                     WHERE me.user_id = $1 ORDER BY o.user_id",
                )
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                let mut announced = Vec::with_capacity(friends.len());
                for (friend, chat_id) in friends {
                    for pos in Self::push_events(&mut tx, &[friend], "chat_created", chat_id, None, now).await? {
                        announced.push((chat_id, pos));
                    }
                }
                tx.commit().await?;
                Ok(DeletedAccount { sessions: sessions.into_iter().map(|(id,)| id).collect(), announced })
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
                let resets = sqlx::query("DELETE FROM password_resets WHERE code_expires_at < $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(sessions.rows_affected() + signups.rows_affected() + resets.rows_affected())
            }
        }
        };
    };
}

/// A member of a chat in a batch of messages, and what may hold a message to that chat back.
#[derive(sqlx::FromRow)]
pub(crate) struct BatchMember {
    pub chat_id: i64,
    pub user_id: i64,
    /// Has written in the chat or started it.
    pub reached_out: bool,
    /// Blocks the other member.
    pub blocks_friend: bool,
    /// The account is deleted.
    pub gone: bool,
    /// The membership epoch (`membership_epoch`) the row was read at.
    pub epoch: Option<i64>,
}

/// Chats' members kept between batches of messages, so that a batch of chats seen before skips
/// the read of their members: a statement and a round trip (to Postgres, or to SQLite's batch
/// thread) before every write (on Postgres at a light load, a third more messages per second
/// without it; docs/BENCHMARKS.md, items 23 and 33). It holds for one membership epoch:
/// `membership_epoch`, which triggers move on every change to chats' members, to blocks and to
/// deleted accounts, and which the write compares in its own snapshot, storing nothing if it
/// moved.
#[derive(Default)]
pub(crate) struct MembersMemory(std::sync::Mutex<RememberedMembers>);

#[derive(Default)]
struct RememberedMembers {
    epoch: i64,
    /// Each chat's members (ascending) and whether they reached out; only chats with no block and
    /// no deleted account among them, whose messages the write may store without a look.
    chats: std::collections::HashMap<i64, Vec<(i64, bool)>>,
}

/// Past this many chats remembered, the memory starts again empty.
const REMEMBERED_CHATS: usize = 100_000;

impl MembersMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, RememberedMembers> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The epoch and members of the chats, if every one is remembered.
    pub fn recall(&self, chat_ids: &[i64]) -> Option<(i64, Vec<BatchMember>)> {
        let memory = self.lock();
        let mut rows = Vec::with_capacity(chat_ids.len() * 2);
        for &chat_id in chat_ids {
            for &(user_id, reached_out) in memory.chats.get(&chat_id)? {
                rows.push(BatchMember {
                    chat_id,
                    user_id,
                    reached_out,
                    blocks_friend: false,
                    gone: false,
                    epoch: Some(memory.epoch),
                });
            }
        }
        Some((memory.epoch, rows))
    }

    /// Remembers the chats just read (one statement's rows, so of one epoch), those with no block
    /// and no deleted account among their members; rows of another epoch than the one remembered
    /// replace everything.
    pub fn remember(&self, chat_ids: &[i64], rows: &[BatchMember]) {
        let Some(epoch) = rows.first().and_then(|row| row.epoch) else { return };
        let mut memory = self.lock();
        if memory.epoch != epoch || memory.chats.len() + chat_ids.len() > REMEMBERED_CHATS {
            memory.chats.clear();
            memory.epoch = epoch;
        }
        let mut of_chat: std::collections::HashMap<i64, Vec<&BatchMember>> = std::collections::HashMap::new();
        for row in rows {
            of_chat.entry(row.chat_id).or_default().push(row);
        }
        for (chat_id, members) in of_chat {
            if members.iter().all(|m| !m.blocks_friend && !m.gone) {
                memory.chats.insert(chat_id, members.iter().map(|m| (m.user_id, m.reached_out)).collect());
            }
        }
    }

    pub fn forget(&self) {
        self.lock().chats.clear();
    }

    /// These (chat, sender) pairs reached out in a batch just stored.
    pub fn reached_out(&self, first_words: &[(i64, i64)]) {
        let mut memory = self.lock();
        for &(chat_id, user_id) in first_words {
            if let Some(member) = memory.chats.get_mut(&chat_id).and_then(|m| m.iter_mut().find(|m| m.0 == user_id)) {
                member.1 = true;
            }
        }
    }
}

/// The clock's value: the newest position taken.
pub(crate) const READ_CLOCK: &str = "SELECT value FROM clock WHERE id = 1";
/// Takes the clock's next `$1` positions; returns the last of them. (A batch of messages takes
/// its positions in a statement of its backend's: inside Postgres's one statement,
/// `write_batch_ctes!`; on SQLite beside the membership epoch.)
pub(crate) const TAKE_POSITIONS: &str = "UPDATE clock SET value = value + $1 WHERE id = 1 RETURNING value";

/// An event row to store (a chat started, a read marker), its position already taken.
pub(crate) struct NewEvent {
    pub user_id: i64,
    pub pos: i64,
    pub kind: &'static str,
    pub chat_id: i64,
    /// The reader and the `seq` they read up to, for `read` events.
    pub reader: Option<(i64, i64)>,
    pub created_at: i64,
}

/// What one batch of messages writes, decided from what the database holds; each backend's
/// `write_batch` stores it in one transaction and returns, by index into `batch`, each stored
/// message.
pub(crate) struct BatchWrite<'a> {
    pub batch: &'a [super::NewMessage],
    /// The messages to store (indexes into `batch`) by chat, chats ascending; a chat's messages
    /// in batch order, which is the order of their `seq`.
    pub by_chat: std::collections::BTreeMap<i64, Vec<usize>>,
    /// (chat, sender) of a sender's first message in a chat, as far as the batch knows: their
    /// `reached_out` turns true. `write_batch` returns those it turned, leaving out any another
    /// writer turned meanwhile (or before, unseen by members kept in memory).
    pub first_words: Vec<(i64, i64)>,
    /// The chats' new `last_activity_at`.
    pub now: super::Millis,
    /// The membership epoch the chats' members were remembered at, when they came from memory:
    /// the write stores nothing and fails with `MembersChanged` unless it is still current.
    pub members_epoch: Option<i64>,
}

/// What `write_batch` returns for each message of a batch: the stored message, if it was one to
/// store.
pub(crate) type Written = Option<super::MessageRecord>;

impl BatchWrite<'_> {
    /// How many messages the batch stores: the positions it takes from the clock.
    pub fn len(&self) -> usize {
        self.by_chat.values().map(Vec::len).sum()
    }

    /// Each chat's last message's rank (1-based) in `by_chat` order: its position is the clock's
    /// value before the batch plus that.
    pub fn last_ranks(&self) -> Vec<i64> {
        let mut rank = 0;
        self.by_chat
            .values()
            .map(|list| {
                rank += list.len() as i64;
                rank
            })
            .collect()
    }

    /// The batch's messages as stored, by index into `batch`, from what the counters held before
    /// it: the n-th message in `by_chat` order takes the clock's `clock_before + n` (1-based) as
    /// its id and position, and the c-th chat's messages the `seq`s after `seq_before[c]`. Both
    /// backends number a batch this way.
    pub fn written(&self, seq_before: &[i64], clock_before: i64) -> Vec<Written> {
        let mut written: Vec<Written> = vec![None; self.batch.len()];
        let mut id = clock_before;
        for ((&chat_id, indexes), before) in self.by_chat.iter().zip(seq_before) {
            for (k, &i) in indexes.iter().enumerate() {
                let m = &self.batch[i];
                id += 1;
                let message = super::MessageRecord {
                    id,
                    chat_id,
                    seq: before + k as i64 + 1,
                    sender_id: m.sender_id,
                    client_id: m.client_id.clone(),
                    body: m.body.clone(),
                    created_at: m.now,
                };
                written[i] = Some(message);
            }
        }
        written
    }
}

/// The chat list query for member `$1`; `$filter` narrows it (e.g. to one chat, `$2`).
macro_rules! chat_query {
    ($filter:literal) => {
        concat!(
            "SELECT c.id AS chat_id, me.read_up_to, other.read_up_to AS friend_read_up_to,
                    u.id AS friend_id, u.email AS friend_email, u.display_name AS friend_display_name,
                    u.last_seen_at AS friend_last_seen_at,
                    EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = $1 AND b.blocked_id = u.id) AS blocked,
                    (other.reached_out AND NOT u.hide_presence AND NOT mu.hide_presence
                     AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = u.id AND b.blocked_id = $1))
                        AS friend_presence_visible,
                    (u.deleted_at IS NOT NULL) AS friend_deleted,
                    (SELECT COUNT(*) FROM messages x
                     WHERE x.chat_id = c.id AND x.seq > me.read_up_to AND x.sender_id <> $1) AS unread_count,
                    lm.id AS m_id, lm.seq AS m_seq, lm.sender_id AS m_sender_id, lm.client_id AS m_client_id,
                    lm.body AS m_body, lm.created_at AS m_created_at
             FROM chat_members me
             JOIN chats c ON c.id = me.chat_id
             JOIN chat_members other ON other.chat_id = c.id AND other.user_id <> me.user_id
             JOIN users u ON u.id = other.user_id
             JOIN users mu ON mu.id = me.user_id
             LEFT JOIN messages lm ON lm.chat_id = c.id AND lm.seq = c.last_seq
             WHERE me.user_id = $1 ",
            $filter,
            " ORDER BY c.last_activity_at DESC, c.id DESC"
        )
    };
}

/// Message columns of a LEFT JOIN, prefixed `m_`: all present or all absent.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JoinedMessage {
    m_id: Option<i64>,
    m_seq: Option<i64>,
    m_sender_id: Option<i64>,
    m_client_id: Option<String>,
    m_body: Option<String>,
    m_created_at: Option<i64>,
}

impl JoinedMessage {
    fn into_record(self, chat_id: i64) -> Option<super::MessageRecord> {
        Some(super::MessageRecord {
            id: self.m_id?,
            chat_id,
            seq: self.m_seq?,
            sender_id: self.m_sender_id?,
            client_id: self.m_client_id?,
            body: self.m_body?,
            created_at: self.m_created_at?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChatRow {
    chat_id: i64,
    read_up_to: i64,
    friend_read_up_to: i64,
    friend_id: i64,
    friend_email: String,
    friend_display_name: String,
    friend_last_seen_at: Option<i64>,
    blocked: bool,
    friend_presence_visible: bool,
    friend_deleted: bool,
    unread_count: i64,
    #[sqlx(flatten)]
    last_message: JoinedMessage,
}

impl ChatRow {
    pub(crate) fn into_summary(self) -> super::ChatSummary {
        super::ChatSummary {
            chat_id: self.chat_id,
            friend_id: self.friend_id,
            friend_email: self.friend_email,
            friend_display_name: self.friend_display_name,
            friend_last_seen_at: self.friend_last_seen_at,
            last_message: self.last_message.into_record(self.chat_id),
            unread_count: self.unread_count,
            read_up_to: self.read_up_to,
            friend_read_up_to: self.friend_read_up_to,
            blocked: self.blocked,
            friend_presence_visible: self.friend_presence_visible,
            friend_deleted: self.friend_deleted,
        }
    }
}

/// A chat of the user's with messages past a sync's cursor, and its first one there.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChatAfter {
    pub chat_id: i64,
    /// The first message's position (its id).
    pub first_pos: i64,
    /// The first message's `seq`.
    pub first_seq: i64,
}

/// An event that is not a message (a chat started, a read marker).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    pub(crate) pos: i64,
    kind: String,
    chat_id: i64,
    reader_id: Option<i64>,
    up_to: Option<i64>,
}

impl EventRow {
    pub(crate) fn into_record(self) -> super::StoreResult<super::EventRecord> {
        use super::EventKind;
        let corrupt =
            || super::StoreError::Corrupt(format!("event {} of kind {:?} lacks its data", self.pos, self.kind));
        let kind = match self.kind.as_str() {
            "chat_created" => EventKind::ChatCreated,
            "read" => EventKind::Read {
                reader_id: self.reader_id.ok_or_else(corrupt)?,
                up_to: self.up_to.ok_or_else(corrupt)?,
            },
            _ => return Err(corrupt()),
        };
        Ok(super::EventRecord { pos: self.pos, chat_id: self.chat_id, kind })
    }
}

/// The members of the chats of a batch of messages (as [`BatchMember`]), each with whether they
/// block the other member (a block holds back a message inside the transaction that would store
/// it) and the membership epoch of the same snapshot. Each backend adds the condition on
/// `cm.chat_id`.
macro_rules! batch_members_select {
    () => {
        "SELECT cm.chat_id, cm.user_id, cm.reached_out,
                EXISTS (SELECT 1 FROM blocks b JOIN chat_members o ON o.user_id = b.blocked_id
                        WHERE b.blocker_id = cm.user_id AND o.chat_id = cm.chat_id
                          AND o.user_id <> cm.user_id) AS blocks_friend,
                (u.deleted_at IS NOT NULL) AS gone,
                (SELECT value FROM membership_epoch WHERE id = 1) AS epoch
         FROM chat_members cm JOIN users u ON u.id = cm.user_id"
    };
}

/// Turns a member's `reached_out` true (`$1` the chat, `$2` the member) if it was not yet.
pub(crate) const REACH_OUT: &str =
    "UPDATE chat_members SET reached_out = TRUE WHERE chat_id = $1 AND user_id = $2 AND NOT reached_out";

pub(crate) use {batch_members_select, chat_query, impl_store};
