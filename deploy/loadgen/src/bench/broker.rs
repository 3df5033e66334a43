//! The fleet's queues as RabbitMQ's management API counts them (ready and unacknowledged; its
//! figures lag by up to its stats interval, 5 s by default), and the broker's write-ahead-log
//! rollovers as new files in its data directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Api {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
    vhost: String,
}

#[derive(Debug, serde::Deserialize)]
struct QueueRow {
    name: String,
    #[serde(default)]
    messages: u64,
}

impl Api {
    /// `amqp_url` gives the vhost and the credentials; `base` is the API's address.
    pub fn new(base: &str, amqp_url: &str) -> Result<Self, String> {
        let uri: lapin::uri::AMQPUri = amqp_url.parse()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            user: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password,
            vhost: uri.vhost,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Messages in each of the vhost's queues; `None` when the API does not answer.
    pub async fn queues(&self) -> Option<Vec<(String, u64)>> {
        let path = format!("/api/queues/{}?columns=name,messages", encode(&self.vhost));
        let rows: Vec<QueueRow> = self.get(&path).await?;
        Some(rows.into_iter().map(|q| (q.name, q.messages)).collect())
    }

    /// All messages in the vhost's queues.
    pub async fn queued(&self) -> Option<u64> {
        Some(self.queues().await?.iter().map(|(_, n)| n).sum())
    }

    pub async fn version(&self) -> Option<String> {
        let overview: serde_json::Value = self.get("/api/overview").await?;
        Some(overview.get("rabbitmq_version")?.as_str()?.to_string())
    }
}

/// Percent-encodes a path segment (a vhost such as "/" or "saga-bench").
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The quorum queues' write-ahead-log files under a node's data directory
/// (`mnesia/<node>/quorum/<node>/*.wal`): a new one is a rollover.
pub fn wal_files(broker_dir: &Path) -> HashSet<PathBuf> {
    let children = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default()
    };
    let mut files = HashSet::new();
    for node in children(&broker_dir.join("mnesia")) {
        for wal_dir in children(&node.join("quorum")) {
            files.extend(
                children(&wal_dir)
                    .into_iter()
                    .filter(|f| f.extension().is_some_and(|e| e == "wal")),
            );
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vhost_is_encoded_for_the_path() {
        assert_eq!(encode("/"), "%2F");
        assert_eq!(encode("saga-bench"), "saga-bench");
    }

    #[test]
    fn the_credentials_and_vhost_come_from_the_amqp_url() {
        let api = Api::new(
            "http://127.0.0.1:15673/",
            "amqp://guest:pw@127.0.0.1:5673/saga-bench",
        )
        .unwrap();
        assert_eq!((api.user.as_str(), api.password.as_str()), ("guest", "pw"));
        assert_eq!(
            (api.vhost.as_str(), api.base.as_str()),
            ("saga-bench", "http://127.0.0.1:15673")
        );
    }

    #[test]
    fn write_ahead_log_files_are_found_two_levels_down() {
        let dir = std::env::temp_dir().join(format!("loadgen-wal-{}", std::process::id()));
        let quorum = dir.join("mnesia/n@localhost/quorum/n@localhost");
        std::fs::create_dir_all(&quorum).unwrap();
        std::fs::write(quorum.join("00000001.wal"), b"").unwrap();
        std::fs::write(quorum.join("00000001.segment"), b"").unwrap();
        let files = wal_files(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(files.len(), 1);
        assert!(files.iter().all(|f| f.ends_with("00000001.wal")));
    }
}
