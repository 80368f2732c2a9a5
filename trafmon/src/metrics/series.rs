//! Which entities have series of their own under `max_series`, kept in
//! `<state_dir>/metrics-series.json` so that the choice outlives the
//! agent: a restart or a reload that chose anew (biggest first) could move
//! an entity out of `other` and make `other` go backwards, which
//! Prometheus takes for a counter reset. A choice made under another
//! `max_series` is dropped, since that setting is what a user changes to
//! choose anew.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::store::Kind;

/// Entities with a series, per kind.
pub type Exported = BTreeMap<Kind, BTreeSet<String>>;

/// The file's content.
#[derive(Serialize, Deserialize)]
struct Saved {
    max_series: u32,
    /// Per kind name (`uid`, `ip`, ...), the keys.
    series: BTreeMap<String, BTreeSet<String>>,
}

/// The file under `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("metrics-series.json")
}

/// The saved choice for `max_series`; empty when there is none, when it
/// was made under another `max_series`, or when the file cannot be read
/// (said in the log: the cost is one possible reset of `other`).
pub fn load(state_dir: &Path, max_series: u32) -> Exported {
    let path = path(state_dir);
    let saved: Saved = match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "not a series choice; choosing anew");
                return Exported::new();
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Exported::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the series choice; choosing anew");
            return Exported::new();
        }
    };
    if saved.max_series != max_series {
        tracing::info!(
            before = saved.max_series,
            now = max_series,
            "max_series changed: choosing the entities with series anew"
        );
        return Exported::new();
    }
    saved
        .series
        .into_iter()
        .filter_map(|(kind, keys)| Kind::parse(&kind).map(|k| (k, keys)))
        .collect()
}

/// Saves the choice, atomically and durably ([`crate::durable`]).
pub fn save(state_dir: &Path, max_series: u32, exported: &Exported) -> io::Result<()> {
    let saved = Saved {
        max_series,
        series: exported
            .iter()
            .map(|(kind, keys)| (kind.as_str().to_owned(), keys.clone()))
            .collect(),
    };
    crate::durable::write(&path(state_dir), &serde_json::to_vec(&saved)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_survives_for_its_max_series_only() {
        let dir = std::env::temp_dir().join(format!("trafmon-series-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(load(&dir, 10).is_empty(), "no file yet");
        let mut exported = Exported::new();
        exported.insert(Kind::Uid, ["1000".to_owned()].into());
        exported.insert(
            Kind::Ip,
            ["192.0.2.1".to_owned(), "2001:db8::1".to_owned()].into(),
        );
        save(&dir, 10, &exported).unwrap();
        assert_eq!(load(&dir, 10), exported);
        assert!(load(&dir, 11).is_empty(), "another max_series");
        fs::write(path(&dir), "{").unwrap();
        assert!(load(&dir, 10).is_empty(), "a broken file");
        fs::remove_dir_all(&dir).unwrap();
    }
}
