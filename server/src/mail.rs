//! Outgoing mail: over SMTP when `PARLEY_SMTP_URL` is set, otherwise as files in the mail folder,
//! so one command runs the whole signup flow with no mail server.
use std::{path::PathBuf, time::Duration};

use lettre::{
    message::{header::ContentType, Mailbox},
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail configuration: {0}")]
    Config(String),
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("writing the mail file: {0}")]
    Io(#[from] std::io::Error),
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Dir(PathBuf),
}

pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

/// A mail to one person.
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Mailer {
    pub fn from_config(config: &Config) -> Result<Self, MailError> {
        let from: Mailbox = config
            .mail_from
            .parse()
            .map_err(|e| MailError::Config(format!("PARLEY_MAIL_FROM {:?}: {e}", config.mail_from)))?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0)
                    .map_err(|e| MailError::Config(format!("PARLEY_SMTP_URL: {e}")))?
                    .timeout(Some(Duration::from_secs(15)))
                    .build(),
            ),
            None => Transport::Dir(config.mail_dir()),
        };
        Ok(Self { from, transport })
    }

    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp(_) => "SMTP".into(),
            Transport::Dir(dir) => format!("files in {}", dir.display()),
        }
    }

    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail.to.parse().map_err(|e| MailError::Config(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body)?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await?;
                tracing::info!("mail handed to the SMTP server");
            }
            Transport::Dir(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let path = dir.join(format!("{}-{}.eml", crate::clock::now_millis(), uuid::Uuid::new_v4()));
                tokio::fs::write(&path, message.formatted()).await?;
                tracing::info!(file = %path.display(), "mail written to a file (no PARLEY_SMTP_URL set)");
            }
        }
        Ok(())
    }
}
