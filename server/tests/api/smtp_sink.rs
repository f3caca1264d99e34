//! A minimal SMTP server on a loopback port: it accepts every mail and keeps it, so tests read
//! codes from mail that really travelled over SMTP.
use std::{collections::VecDeque, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{Mutex, Notify},
};

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub recipients: Vec<String>,
    pub data: String,
}

impl ReceivedMail {
    pub fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or(&self.data)
    }

    /// The first run of exactly six digits in the body.
    pub fn code(&self) -> Option<String> {
        let body = self.body();
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if i - start == 6 {
                    return Some(body[start..i].to_string());
                }
            } else {
                i += 1;
            }
        }
        None
    }
}

#[derive(Default)]
struct Inbox {
    mails: Mutex<VecDeque<ReceivedMail>>,
    arrived: Notify,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    inbox: Arc<Inbox>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP sink");
        let port = listener.local_addr().unwrap().port();
        let inbox = Arc::new(Inbox::default());
        let accept_inbox = inbox.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, accept_inbox.clone()));
            }
        });
        Self { port, inbox }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Takes the oldest mail not yet taken that was sent to `to`, waiting up to 10 s for it.
    pub async fn next_mail_to(&self, to: &str) -> ReceivedMail {
        let wait = async {
            loop {
                let arrived = self.inbox.arrived.notified();
                {
                    let mut mails = self.inbox.mails.lock().await;
                    if let Some(i) = mails.iter().position(|m| m.recipients.iter().any(|r| r == to)) {
                        return mails.remove(i).unwrap();
                    }
                }
                arrived.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("no mail to {to} within 10 s"))
    }

    pub async fn next_code_for(&self, to: &str) -> String {
        let mail = self.next_mail_to(to).await;
        mail.code().unwrap_or_else(|| panic!("no 6-digit code in mail to {to}: {}", mail.data))
    }

    /// Mails received and not yet taken.
    pub async fn pending(&self) -> usize {
        self.inbox.mails.lock().await.len()
    }
}

async fn session(stream: TcpStream, inbox: Arc<Inbox>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
    let mut recipients = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-sink.test\r\n250 8BITMIME\r\n"
        } else if command.starts_with("HELO")
            || command.starts_with("MAIL FROM")
            || command.starts_with("RSET")
            || command.starts_with("NOOP")
        {
            if command.starts_with("RSET") {
                recipients.clear();
            }
            b"250 OK\r\n"
        } else if command.starts_with("RCPT TO") {
            let addr = line.trim_end()[8..].trim().trim_start_matches('<').trim_end_matches('>').to_lowercase();
            recipients.push(addr);
            b"250 OK\r\n"
        } else if command == "DATA" {
            let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            inbox.mails.lock().await.push_back(ReceivedMail { recipients: std::mem::take(&mut recipients), data });
            inbox.arrived.notify_waiters();
            b"250 queued\r\n"
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
