//! Group commit: messages sent at about the same time share one transaction, so the cost of a
//! durable commit (an fsync) is paid once per batch, not once per message. Each sender still gets
//! its answer only after the commit that holds its message.
//!
//! There is no waiting for a batch to fill: while one commit runs, new messages queue, and the
//! next commit takes all of them. At low load a batch is one message; under load, many. A second
//! batch is stored beside the first only once many messages wait (see [`SECOND_BATCH_AFTER`]).
//!
//! A message's fate is handed to its [`Completion`] right after its batch committed or failed, on
//! one completer task (so the next batch is already being stored), and in queue order within its
//! chat: the sender of many messages in a row need not wait for each (a socket keeps reading while
//! its messages commit), and what follows a commit (acks and deliveries) happens in commit order,
//! without a task switch per message.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::{sync::mpsc, task::JoinSet};

use crate::{
    error::ApiError,
    store::{NewMessage, SendOutcome, Store},
};

/// Told the outcome of one message once it is known. It runs on the completer task, one after
/// another, so it must be quick and must not block: queue frames, spawn anything slow.
pub type Completion = Box<dyn FnOnce(Result<SendOutcome, ApiError>) + Send>;

struct Job {
    message: NewMessage,
    done: Completion,
}

/// The queue in front of the batches being stored, up to `writers` of them at once. A chat's
/// messages are stored in the order they were queued: a batch never takes a message whose chat
/// has another in a batch still being stored.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the dispatcher that cuts and stores the batches; it ends when every handle is
    /// dropped and what was queued is stored.
    pub fn start(store: Arc<dyn Store>, max_batch: usize, writers: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (queue, jobs) = mpsc::channel(max_batch * 4);
        tokio::spawn(dispatch(store, jobs, max_batch, writers.max(1)));
        GroupCommit { queue }
    }

    /// Queues the message for the next batch; waits only while the queue is full. Messages
    /// queued one after another by one task are stored in that order within each chat. `done`
    /// hears the outcome; an error there means no ack: the batch did not commit, or its fate is
    /// unknown (a lost connection), and the sender's resend with the same `client_id` settles it.
    pub async fn submit(&self, message: NewMessage, done: Completion) -> Result<(), ApiError> {
        self.queue.send(Job { message, done }).await.map_err(|_| ApiError::Internal("the writer has stopped".into()))
    }
}

/// While a batch is being stored, another starts beside it only when at least this many messages
/// wait that it could take. On Postgres a batch has a large fixed cost (docs/BENCHMARKS.md): two
/// batches of a message or two side by side spend more of the database than one of four and
/// delay everyone at moderate rates, while under a heavy load a second batch storing while the
/// first commits delivers more.
const SECOND_BATCH_AFTER: usize = 64;

/// A batch's completions with the outcome of its commit, for the completer task.
type Settled = (Vec<Completion>, Result<Vec<SendOutcome>, ApiError>);

async fn dispatch(store: Arc<dyn Store>, mut jobs: mpsc::Receiver<Job>, max_batch: usize, writers: usize) {
    // The completions run on a task of their own, batch after batch in the order the stores
    // returned, so the next batch is already being stored while the last one's acks and
    // deliveries go out. A chat is released only after its batch's completions are queued there,
    // so its batches complete in the order they were stored.
    let (settled, to_complete) = mpsc::unbounded_channel::<Settled>();
    tokio::spawn(complete(to_complete));
    // Received and not yet in a batch, in queue order; at most this many before the queue in
    // front of it fills and senders wait.
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let most_waiting = max_batch * 4;
    // Chats with messages in a batch being stored, and each batch's chats by its task.
    let mut storing: HashSet<i64> = HashSet::new();
    let mut chats_of: HashMap<tokio::task::Id, Vec<i64>> = HashMap::new();
    let mut running = JoinSet::new();
    let mut received = Vec::with_capacity(max_batch);
    let mut open = true;
    loop {
        while running.len() < writers {
            let least = if running.is_empty() { 1 } else { SECOND_BATCH_AFTER };
            let Some(batch) = cut(&mut waiting, &storing, max_batch, least) else { break };
            let mut chats: Vec<i64> = batch.iter().map(|job| job.message.chat_id).collect();
            chats.sort_unstable();
            chats.dedup();
            storing.extend(&chats);
            let task = running.spawn(store_batch(store.clone(), batch, settled.clone()));
            chats_of.insert(task.id(), chats);
        }
        if running.is_empty() && !open {
            // Nothing is being stored, so nothing waits either: every chat was free to take.
            return;
        }
        tokio::select! {
            Some(finished) = running.join_next_with_id() => {
                let id = match finished {
                    Ok((id, ())) => id,
                    // The senders of a batch whose task panicked hear nothing (their send slots
                    // are freed with the dropped completions); their clients resend.
                    Err(err) => {
                        tracing::error!(error = %err, "a batch of messages was lost");
                        err.id()
                    }
                };
                for chat in chats_of.remove(&id).unwrap_or_default() {
                    storing.remove(&chat);
                }
            }
            count = jobs.recv_many(&mut received, max_batch), if open && waiting.len() < most_waiting => {
                if count == 0 {
                    open = false;
                }
                waiting.extend(received.drain(..));
            }
        }
    }
}

/// Takes up to `max` waiting messages whose chats have none being stored, in queue order, if at
/// least `least` of them can be taken. A message left waiting holds back every later one of its
/// chat: the taken are a prefix of each chat's queue.
fn cut(waiting: &mut VecDeque<Job>, storing: &HashSet<i64>, max: usize, least: usize) -> Option<Vec<Job>> {
    // Never an empty batch.
    let least = least.max(1);
    if storing.is_empty() {
        return (waiting.len() >= least).then(|| waiting.drain(..max.min(waiting.len())).collect());
    }
    let free = |job: &Job| !storing.contains(&job.message.chat_id);
    if waiting.iter().filter(|job| free(job)).take(least).count() < least {
        return None;
    }
    let mut batch = Vec::with_capacity(max.min(waiting.len()));
    let mut kept = VecDeque::with_capacity(waiting.len());
    for job in waiting.drain(..) {
        if batch.len() < max && free(&job) {
            batch.push(job);
        } else {
            kept.push_back(job);
        }
    }
    *waiting = kept;
    Some(batch)
}

async fn store_batch(store: Arc<dyn Store>, batch: Vec<Job>, settled: mpsc::UnboundedSender<Settled>) {
    let (messages, completions): (Vec<NewMessage>, Vec<Completion>) =
        batch.into_iter().map(|j| (j.message, j.done)).unzip();
    ::metrics::histogram!(crate::metrics::BATCH_SIZE).record(messages.len() as f64);
    let outcome = store.send_messages(&messages).await.map_err(|err| {
        // Classified once here, so every sender in the batch hears the same reason.
        let err = ApiError::from(err);
        match &err {
            ApiError::Unavailable(why) => {
                tracing::warn!(error = %why, messages = messages.len(), "a batch of messages was not stored")
            }
            _ => tracing::error!(error = ?err, messages = messages.len(), "a batch of messages failed"),
        }
        err
    });
    // Unbounded, yet it holds at most the batches stored while the completer is behind; the
    // bounded queue in front of the dispatcher keeps senders from outrunning both.
    let _ = settled.send((completions, outcome));
}

async fn complete(mut batches: mpsc::UnboundedReceiver<Settled>) {
    while let Some((completions, outcome)) = batches.recv().await {
        match outcome {
            Ok(outcomes) => {
                for (done, outcome) in completions.into_iter().zip(outcomes) {
                    done(Ok(outcome));
                }
            }
            Err(err) => {
                for done in completions {
                    done(Err(err.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(chat_id: i64, n: usize) -> Job {
        let message = NewMessage { chat_id, sender_id: 1, client_id: n.to_string(), body: String::new(), now: 0 };
        Job { message, done: Box::new(|_| {}) }
    }

    fn queue(chats: &[i64]) -> VecDeque<Job> {
        chats.iter().enumerate().map(|(n, &chat)| job(chat, n)).collect()
    }

    /// (chat, position in the queue) of each job.
    fn keys<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Vec<(i64, String)> {
        jobs.into_iter().map(|j| (j.message.chat_id, j.message.client_id.clone())).collect()
    }

    fn key(chat: i64, n: usize) -> (i64, String) {
        (chat, n.to_string())
    }

    #[test]
    fn with_nothing_being_stored_a_batch_is_the_head_of_the_queue() {
        let mut waiting = queue(&[1, 2, 1, 3]);
        let batch = cut(&mut waiting, &HashSet::new(), 3, 1).unwrap();
        assert_eq!(keys(&batch), vec![key(1, 0), key(2, 1), key(1, 2)]);
        assert_eq!(keys(&waiting), vec![key(3, 3)]);
        assert!(cut(&mut VecDeque::new(), &HashSet::new(), 3, 1).is_none());
    }

    #[test]
    fn a_chat_being_stored_keeps_its_messages_waiting_in_order() {
        let mut waiting = queue(&[1, 2, 1, 3, 2]);
        let storing = HashSet::from([1]);
        let batch = cut(&mut waiting, &storing, 10, 1).unwrap();
        assert_eq!(keys(&batch), vec![key(2, 1), key(3, 3), key(2, 4)]);
        assert_eq!(keys(&waiting), vec![key(1, 0), key(1, 2)]);
    }

    #[test]
    fn a_full_batch_leaves_the_rest_of_each_chat_behind() {
        let mut waiting = queue(&[1, 2, 3, 2, 3]);
        let batch = cut(&mut waiting, &HashSet::from([1]), 2, 1).unwrap();
        assert_eq!(keys(&batch), vec![key(2, 1), key(3, 2)]);
        assert_eq!(keys(&waiting), vec![key(1, 0), key(2, 3), key(3, 4)]);
    }

    #[test]
    fn a_second_batch_waits_for_enough_messages() {
        let chats: Vec<i64> = (0..SECOND_BATCH_AFTER as i64).map(|n| n % 5).collect();
        let storing = HashSet::from([0]);
        let mut waiting = queue(&chats);
        // Chat 0's messages are not free to take, so fewer than SECOND_BATCH_AFTER are.
        assert!(cut(&mut waiting, &storing, 1024, SECOND_BATCH_AFTER).is_none());
        assert_eq!(waiting.len(), SECOND_BATCH_AFTER, "nothing taken");
        waiting.extend((0..SECOND_BATCH_AFTER).map(|n| job(1 + n as i64 % 4, 1000 + n)));
        let batch = cut(&mut waiting, &storing, 1024, SECOND_BATCH_AFTER).unwrap();
        assert!(batch.len() >= SECOND_BATCH_AFTER && batch.iter().all(|j| j.message.chat_id != 0));
        assert!(waiting.iter().all(|j| j.message.chat_id == 0));
    }
}
