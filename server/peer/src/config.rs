//! The peer's network configuration: the seed's JSON file
//! (`{"environments": [{"name", "network": {genesis_url, public_url, peer_name}}]}`),
//! one environment of it chosen by name, and the flags that override it.
//!
//! Pure: reading the file is the caller's job, so every rule here is tested
//! without a disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plexus_core::auth::PublicKey;
use plexus_core::names::{PeerName, PeerUri};
use plexus_core::wire::Contextionary;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The environments, each with a name.
    #[serde(default)]
    pub environments: Vec<Environment>,
}

/// One environment of the file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Environment {
    /// Its name (`--environment`).
    pub name: String,
    /// Its network block; absent: stand-alone.
    #[serde(default)]
    pub network: Option<NetworkBlock>,
}

/// The network block of an environment; each field may also come from a flag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkBlock {
    /// Where genesis listens: one URL, or a list of replicas (kept here
    /// comma-separated, as `--genesis-url` takes them).
    #[serde(default, deserialize_with = "one_or_many")]
    pub genesis_url: Option<String>,
    /// Where genesis and other peers reach this peer.
    #[serde(default)]
    pub public_url: Option<String>,
    /// This peer's name in the network.
    #[serde(default)]
    pub peer_name: Option<String>,
    /// Genesis's public key (the unpadded base64url of its 32 bytes, as
    /// `/healthz` and genesis's log show it). Absent: the key that signs
    /// genesis's registration answer is pinned.
    #[serde(default)]
    pub genesis_key: Option<String>,
}

/// `"genesis_url": "http://a"` or `["http://a", "http://b"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|urls| match urls {
        OneOrMany::One(url) => url,
        OneOrMany::Many(urls) => urls.join(","),
    }))
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not the expected JSON.
    #[error("invalid config file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file has no environment of that name.
    #[error("config file {path} has no environment {name:?} (it has: {known})")]
    NoEnvironment {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The names it has.
        known: String,
    },
    /// A network is configured, but a field it needs is missing.
    #[error(
        "a network is configured but {0} is missing: set it in the config file or with its flag"
    )]
    Missing(&'static str),
    /// A value is not valid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which value.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// The flags that override (or replace) the file's network block.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--genesis-url`.
    pub genesis_url: Option<String>,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--peer-name`.
    pub peer_name: Option<String>,
    /// `--genesis-key`.
    pub genesis_key: Option<String>,
}

/// Everything the network layer needs, resolved and checked.
#[derive(Clone, Debug)]
pub struct NetworkSettings {
    /// Genesis's base URL, or its replicas' (tried in order, moving on
    /// when one does not answer).
    pub genesis: Vec<PeerUri>,
    /// This peer's public URL; `None`: the address it listens on.
    pub public_uri: Option<PeerUri>,
    /// This peer's name.
    pub name: PeerName,
    /// This peer's own contextionary.
    pub contextionary: Contextionary,
    /// Mean time between pings.
    pub ping_interval: Duration,
    /// The network's join token, if it has one.
    pub join_token: Option<String>,
    /// Genesis's public key, when configured.
    pub genesis_key: Option<PublicKey>,
    /// How far a signature's `created` may be from this peer's clock.
    pub signature_max_age: Duration,
    /// How long each peer of a Network query may take to answer.
    pub query_timeout: Duration,
}

/// Parses the text of a config file read from `path`.
pub fn parse_file(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    serde_json::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads and parses the config file at `path`.
pub fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    parse_file(path, &text)
}

/// The network block to use: the chosen environment's (if a file is given),
/// overridden field by field by the flags. `None`: stand-alone (no block and
/// no `--genesis-url`).
pub fn network_block(
    file: Option<(&Path, &ConfigFile)>,
    environment: &str,
    overrides: &Overrides,
) -> Result<Option<NetworkBlock>, ConfigError> {
    let from_file = match file {
        Some((path, config)) => {
            let env = config
                .environments
                .iter()
                .find(|e| e.name == environment)
                .ok_or_else(|| ConfigError::NoEnvironment {
                    path: path.to_owned(),
                    name: environment.to_owned(),
                    known: config
                        .environments
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            env.network.clone()
        }
        None => None,
    };
    if from_file.is_none() && overrides.genesis_url.is_none() {
        return Ok(None);
    }
    let mut block = from_file.unwrap_or_default();
    let pick = |flag: &Option<String>, file: &mut Option<String>| {
        if flag.is_some() {
            *file = flag.clone();
        }
    };
    pick(&overrides.genesis_url, &mut block.genesis_url);
    pick(&overrides.public_url, &mut block.public_url);
    pick(&overrides.peer_name, &mut block.peer_name);
    pick(&overrides.genesis_key, &mut block.genesis_key);
    Ok(Some(block))
}

/// The checked settings of `block`, with the values that only flags give.
pub fn settings(
    block: NetworkBlock,
    contextionary: Contextionary,
    ping_interval: Duration,
    join_token: Option<String>,
    query_timeout: Duration,
) -> Result<NetworkSettings, ConfigError> {
    let genesis = block
        .genesis_url
        .ok_or(ConfigError::Missing("genesis_url (--genesis-url)"))?;
    let genesis = genesis
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            PeerUri::new(url.trim_end_matches('/')).map_err(|e| ConfigError::Invalid {
                field: "genesis_url",
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if genesis.is_empty() {
        return Err(ConfigError::Missing("genesis_url (--genesis-url)"));
    }
    let name = block
        .peer_name
        .ok_or(ConfigError::Missing("peer_name (--peer-name)"))?;
    let name = PeerName::new(name).map_err(|e| ConfigError::Invalid {
        field: "peer_name",
        reason: e.to_string(),
    })?;
    let public_uri = block
        .public_url
        .map(|u| {
            PeerUri::new(u.trim_end_matches('/')).map_err(|e| ConfigError::Invalid {
                field: "public_url",
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let genesis_key = block
        .genesis_key
        .filter(|k| !k.trim().is_empty())
        .map(|k| {
            k.parse::<PublicKey>().map_err(|e| ConfigError::Invalid {
                field: "genesis_key",
                reason: e.to_string(),
            })
        })
        .transpose()?;
    if ping_interval.is_zero() {
        return Err(ConfigError::Invalid {
            field: "ping interval",
            reason: "must be more than zero".into(),
        });
    }
    Ok(NetworkSettings {
        genesis,
        public_uri,
        name,
        contextionary,
        ping_interval,
        join_token: join_token.filter(|t| !t.is_empty()),
        genesis_key,
        signature_max_age: plexus_core::auth::DEFAULT_MAX_AGE,
        query_timeout,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FILE: &str = r#"{ "environments": [
        { "name": "default", "network": { "genesis_url": "http://127.0.0.1:8111",
            "public_url": "http://127.0.0.1:8081", "peer_name": "WeaviateA" } },
        { "name": "solo" } ] }"#;

    fn file() -> ConfigFile {
        parse_file(Path::new("p.json"), FILE).unwrap()
    }

    #[test]
    fn the_seed_file_is_read_and_flags_override_it() {
        let config = file();
        let block = network_block(
            Some((Path::new("p.json"), &config)),
            "default",
            &Overrides {
                peer_name: Some("Other".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(block.genesis_url.as_deref(), Some("http://127.0.0.1:8111"));
        assert_eq!(block.peer_name.as_deref(), Some("Other"));
    }

    #[test]
    fn no_network_block_and_no_genesis_flag_is_stand_alone() {
        let config = file();
        let solo = network_block(
            Some((Path::new("p.json"), &config)),
            "solo",
            &Overrides::default(),
        );
        assert!(solo.unwrap().is_none());
        assert!(
            network_block(None, "default", &Overrides::default())
                .unwrap()
                .is_none()
        );
        let flags = network_block(
            None,
            "default",
            &Overrides {
                genesis_url: Some("http://g:1".into()),
                ..Default::default()
            },
        );
        assert!(flags.unwrap().is_some());
    }

    #[test]
    fn bad_files_and_values_are_one_line_errors() {
        let err = parse_file(Path::new("p.json"), "{ nope").unwrap_err();
        assert!(err.to_string().starts_with("invalid config file p.json"));
        let config = file();
        let err = network_block(
            Some((Path::new("p.json"), &config)),
            "prod",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("default, solo"), "{err}");
        let contextionary = Contextionary {
            url: "u".into(),
            hash: "sha256:x".parse().unwrap(),
        };
        let bad_name = NetworkBlock {
            genesis_url: Some("http://g:1".into()),
            public_url: None,
            peer_name: Some("bad-name".into()),
            genesis_key: None,
        };
        let err = settings(
            bad_name,
            contextionary.clone(),
            Duration::from_secs(1),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("peer_name"), "{err}");
        let no_name = NetworkBlock {
            genesis_url: Some("http://g:1/".into()),
            ..Default::default()
        };
        let err = settings(
            no_name,
            contextionary,
            Duration::from_secs(1),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--peer-name"), "{err}");
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn genesis_key_comes_from_the_file_or_the_flag_and_is_checked() {
        let key = plexus_core::auth::Identity::from_seed([3; 32]).public();
        let text = format!(
            r#"{{ "environments": [{{ "name": "default", "network": {{
                "genesis_url": "http://g:1", "peer_name": "A", "genesis_key": "{key}" }} }}] }}"#
        );
        let config = parse_file(Path::new("p.json"), &text).unwrap();
        let contextionary = Contextionary {
            url: "u".into(),
            hash: "sha256:x".parse().unwrap(),
        };
        let resolve = |overrides: &Overrides| {
            let block = network_block(Some((Path::new("p.json"), &config)), "default", overrides)
                .unwrap()
                .unwrap();
            let one = Duration::from_secs(1);
            settings(block, contextionary.clone(), one, None, one)
        };
        assert_eq!(
            resolve(&Overrides::default()).unwrap().genesis_key,
            Some(key)
        );
        let bad = Overrides {
            genesis_key: Some("not-a-key".into()),
            ..Overrides::default()
        };
        let err = resolve(&bad).unwrap_err();
        assert!(err.to_string().contains("genesis_key"), "{err}");
    }

    #[test]
    fn genesis_url_is_a_string_or_a_list_of_replicas() {
        let contextionary = Contextionary {
            url: "u".into(),
            hash: "sha256:x".parse().unwrap(),
        };
        let listed = r#"{ "environments": [ { "name": "default", "network": {
            "genesis_url": ["http://g1:8111/", "http://g2:8111"], "peer_name": "PeerA" } } ] }"#;
        let config = parse_file(Path::new("p.json"), listed).unwrap();
        let block = network_block(
            Some((Path::new("p.json"), &config)),
            "default",
            &Overrides::default(),
        )
        .unwrap()
        .unwrap();
        let resolve = |block: NetworkBlock| {
            settings(
                block,
                contextionary.clone(),
                Duration::from_secs(1),
                None,
                Duration::from_secs(1),
            )
        };
        let genesis: Vec<String> = resolve(block)
            .unwrap()
            .genesis
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(genesis, ["http://g1:8111", "http://g2:8111"]);
        // The flag's form: comma-separated.
        let flag = NetworkBlock {
            genesis_url: Some("http://g1:1, http://g2:2".into()),
            peer_name: Some("PeerA".into()),
            ..Default::default()
        };
        assert_eq!(resolve(flag).unwrap().genesis.len(), 2);
        let bad = NetworkBlock {
            genesis_url: Some("http://g1:1,not a url".into()),
            peer_name: Some("PeerA".into()),
            ..Default::default()
        };
        assert!(
            resolve(bad)
                .unwrap_err()
                .to_string()
                .contains("genesis_url")
        );
        let empty = NetworkBlock {
            genesis_url: Some(",".into()),
            peer_name: Some("PeerA".into()),
            ..Default::default()
        };
        assert!(
            resolve(empty)
                .unwrap_err()
                .to_string()
                .contains("--genesis-url")
        );
    }
}
