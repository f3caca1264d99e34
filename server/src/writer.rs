//! Group commit: messages sent at about the same time share one transaction, so the cost of a
//! durable commit (an fsync) is paid once per batch, not once per message. Each sender still gets
//! its answer only after the commit that holds its message.
//!
//! There is no waiting for a batch to fill: while one commit runs, new messages queue, and the
//! next commit takes all of them. At low load a batch is one message; under load, many.
//!
//! A message's fate is handed to its [`Completion`] in queue order, right after its batch committed
//! or failed, on the writer's completer task (so the writer is already storing the next batch):
//! the sender of many messages in a row need not wait for each (a socket keeps reading while its
//! messages commit), and what follows a commit (acks and deliveries) happens in commit order,
//! without a task switch per message.
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{
    error::ApiError,
    store::{NewMessage, SendOutcome, Store},
};

/// Told the outcome of one message once it is known. It runs on the writer's completer task, one
/// after another, so it must be quick and must not block: queue frames, spawn anything slow.
pub type Completion = Box<dyn FnOnce(Result<SendOutcome, ApiError>) + Send>;

struct Job {
    message: NewMessage,
    done: Completion,
}

/// One or more writers; each message goes to the writer of its chat, so a chat's messages are
/// stored in the order they were queued. Several writers let a database that takes concurrent
/// writers (Postgres) store one batch while another commits.
#[derive(Clone)]
pub struct GroupCommit {
    queues: Arc<[mpsc::Sender<Job>]>,
}

impl GroupCommit {
    /// Starts `writers` writer tasks; they end when every handle is dropped.
    pub fn start(store: Arc<dyn Store>, max_batch: usize, writers: usize) -> Self {
        let queues: Vec<_> = (0..writers.max(1))
            .map(|_| {
                let (queue, jobs) = mpsc::channel(max_batch.max(1) * 4);
                tokio::spawn(run(store.clone(), jobs, max_batch.max(1)));
                queue
            })
            .collect();
        GroupCommit { queues: queues.into() }
    }

    /// Queues the message for the next batch of its chat's writer; waits only while that queue
    /// is full. Messages queued one after another by one task are stored in that order within
    /// each chat. `done` hears the outcome; an error there means no ack: the batch did not
    /// commit, or its fate is unknown (a lost connection), and the sender's resend with the same
    /// `client_id` settles it.
    pub async fn submit(&self, message: NewMessage, done: Completion) -> Result<(), ApiError> {
        let writer = message.chat_id.unsigned_abs() as usize % self.queues.len();
        self.queues[writer]
            .send(Job { message, done })
            .await
            .map_err(|_| ApiError::Internal("the writer has stopped".into()))
    }
}

/// A batch's completions with the outcome of its commit, for the completer task.
type Settled = (Vec<Completion>, Result<Vec<SendOutcome>, ApiError>);

async fn run(store: Arc<dyn Store>, mut jobs: mpsc::Receiver<Job>, max_batch: usize) {
    // The completions run on a task of their own, batch after batch in commit order, so the
    // next batch is already being stored while the last one's acks and deliveries go out.
    let (settled, to_complete) = mpsc::unbounded_channel::<Settled>();
    tokio::spawn(complete(to_complete));
    let mut batch = Vec::with_capacity(max_batch);
    while jobs.recv_many(&mut batch, max_batch).await > 0 {
        let (messages, completions): (Vec<NewMessage>, Vec<Completion>) =
            batch.drain(..).map(|j| (j.message, j.done)).unzip();
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
        // bounded job queue in front of the writer keeps senders from outrunning both.
        if settled.send((completions, outcome)).is_err() {
            return;
        }
    }
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
