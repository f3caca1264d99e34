//! Group commit: messages sent at about the same time share one transaction, so the cost of a
//! durable commit (an fsync) is paid once per batch, not once per message. Each sender still gets
//! its answer only after the commit that holds its message.
//!
//! There is no waiting for a batch to fill: while one commit runs, new messages queue, and the
//! next commit takes all of them. At low load a batch is one message; under load, many.
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{
    error::ApiError,
    store::{NewMessage, SendOutcome, Store},
};

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<SendOutcome, ApiError>>,
}

#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn start(store: Arc<dyn Store>, max_batch: usize) -> Self {
        let (queue, jobs) = mpsc::channel(max_batch.max(1) * 4);
        tokio::spawn(run(store, jobs, max_batch.max(1)));
        GroupCommit { queue }
    }

    /// Stores the message (in the next batch) and returns its outcome once committed. An error
    /// means no ack: the batch did not commit, or its fate is unknown (a lost connection), and
    /// the sender's resend with the same `client_id` settles it.
    pub async fn send(&self, message: NewMessage) -> Result<SendOutcome, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { message, reply })
            .await
            .map_err(|_| ApiError::Internal("the writer has stopped".into()))?;
        answer.await.map_err(|_| ApiError::Internal("the writer dropped the message".into()))?
    }
}

async fn run(store: Arc<dyn Store>, mut jobs: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while jobs.recv_many(&mut batch, max_batch).await > 0 {
        let (messages, replies): (Vec<NewMessage>, Vec<_>) = batch.drain(..).map(|j| (j.message, j.reply)).unzip();
        ::metrics::histogram!(crate::metrics::BATCH_SIZE).record(messages.len() as f64);
        match store.send_messages(&messages).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                // Classified once here, so every sender in the batch hears the same reason.
                let err = ApiError::from(err);
                match &err {
                    ApiError::Unavailable(why) => {
                        tracing::warn!(error = %why, messages = messages.len(), "a batch of messages was not stored")
                    }
                    _ => tracing::error!(error = ?err, messages = messages.len(), "a batch of messages failed"),
                }
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
