//! Small files in the app's data folder: the settings (server address, what it said about
//! itself) and the session (the token), which only the user may read.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use parley_common::{InstanceInfo, User};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub server_url: Option<String>,
    /// The server's self-description as last seen, for starting offline.
    pub instance: Option<InstanceInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSession {
    /// The server the token belongs to.
    pub server_url: String,
    pub token: String,
    pub user: User,
}

pub struct Files {
    dir: PathBuf,
}

impl Files {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        restrict_dir_to_owner(dir)?;
        Ok(Files { dir: dir.to_path_buf() })
    }

    pub fn cache_path(&self) -> PathBuf {
        self.dir.join("cache.db")
    }

    pub fn settings(&self) -> Settings {
        self.read("settings.json").unwrap_or_default()
    }

    pub fn save_settings(&self, settings: &Settings) -> std::io::Result<()> {
        self.write("settings.json", settings)
    }

    pub fn session(&self) -> Option<SavedSession> {
        self.read("session.json")
    }

    pub fn save_session(&self, session: &SavedSession) -> std::io::Result<()> {
        self.write("session.json", session)
    }

    pub fn forget_session(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.dir.join("session.json")) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    fn read<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let text = std::fs::read_to_string(self.dir.join(name)).ok()?;
        match serde_json::from_str(&text) {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::warn!(file = name, error = %err, "ignoring an unreadable file");
                None
            }
        }
    }

    /// Written to a temporary file readable by the owner only, then renamed over the old one, so
    /// a crash leaves the old or the new file, never half of one.
    fn write(&self, name: &str, value: &impl Serialize) -> std::io::Result<()> {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        {
            let mut file = owner_only_file(&temporary)?;
            file.write_all(&serde_json::to_vec_pretty(value).expect("settings serialize"))?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &path)
    }
}

#[cfg(unix)]
fn owner_only_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

/// Elsewhere the data folder sits in the user's own profile, whose access rules already keep
/// other users out.
#[cfg(not(unix))]
fn owner_only_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)
}

/// The cache holds private history: the folder is the user's alone.
#[cfg(unix)]
fn restrict_dir_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn restrict_dir_to_owner(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
