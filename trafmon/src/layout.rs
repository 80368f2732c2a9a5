//! Checking that the pinned maps are laid out as this build's programs
//! expect, before they are reused.
//!
//! aya reuses a map pinned under the same name whatever its shape. A map
//! made by another version of trafmon with another key or value layout
//! would be accepted by the verifier (it checks accesses against the
//! pinned map's sizes) and then read with the wrong sizes: garbage keys,
//! not an error. So every pinned map is compared with the object's
//! definition first. Only the hash maps' sizes may differ: `[maps]` sets
//! them ([`crate::resize`]).

use std::{fmt, path::PathBuf};

use aya::maps::MapInfo;
use aya_obj::Object;

use crate::paths::PinDir;

/// What a map looks like: type, key size, value size, entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The kernel's map type number.
    pub kind: u32,
    /// Key size in bytes.
    pub key: u32,
    /// Value size in bytes.
    pub value: u32,
    /// Max entries.
    pub entries: u32,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries",
            self.kind, self.key, self.value, self.entries
        )
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The object cannot be parsed (a broken build).
    #[error("cannot parse the embedded eBPF object")]
    Parse(#[source] aya_obj::ParseError),
    /// A pinned map cannot be read.
    #[error("cannot read pinned map {path}")]
    Info {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// A pinned map has another shape than this build's.
    #[error(
        "pinned map {} was made by another version of trafmon ({pinned}; this one needs {wanted}), whose counts this one cannot read: run `trafmon uninstall --discard` and start again",
        path.display()
    )]
    Mismatch {
        /// The pin.
        path: PathBuf,
        /// Its shape.
        pinned: Shape,
        /// This build's.
        wanted: Shape,
    },
}

/// Whether a pinned map of shape `pinned` can serve as a map of shape
/// `wanted`; `resizable` maps may differ in entries.
pub fn fits(pinned: Shape, wanted: Shape, resizable: bool) -> bool {
    let entries = resizable || pinned.entries == wanted.entries;
    pinned.kind == wanted.kind
        && pinned.key == wanted.key
        && pinned.value == wanted.value
        && entries
}

/// Compares every map of `object` that has a pin under `pins` with the
/// object's definition; `resizable` names the maps whose entries may
/// differ.
pub fn check(object: &[u8], pins: &PinDir, resizable: &[&str]) -> Result<(), LayoutError> {
    let object = Object::parse(object).map_err(LayoutError::Parse)?;
    for (name, map) in &object.maps {
        let path = pins.maps().join(name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| LayoutError::Info {
            path: path.clone(),
            source,
        })?;
        let pinned = Shape {
            kind: info.map_type().map_or(u32::MAX, |t| t as u32),
            key: info.key_size(),
            value: info.value_size(),
            entries: info.max_entries(),
        };
        let wanted = Shape {
            kind: map.map_type(),
            key: map.key_size(),
            value: map.value_size(),
            entries: map.max_entries(),
        };
        if !fits(pinned, wanted, resizable.contains(&name.as_str())) {
            return Err(LayoutError::Mismatch {
                path,
                pinned,
                wanted,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Shape = Shape {
        kind: 5,
        key: 20,
        value: 32,
        entries: 65_536,
    };

    #[test]
    fn only_resizable_maps_may_differ_in_entries() {
        let bigger = Shape {
            entries: 131_072,
            ..IP
        };
        assert!(fits(IP, IP, false));
        assert!(fits(bigger, IP, true));
        assert!(!fits(bigger, IP, false));
        for other in [
            Shape { key: 24, ..IP },
            Shape { value: 24, ..IP },
            Shape { kind: 1, ..IP },
        ] {
            assert!(!fits(other, IP, true), "{other}");
        }
    }

    #[test]
    fn a_mismatch_names_the_pin_and_both_shapes() {
        let e = LayoutError::Mismatch {
            path: "/sys/fs/bpf/trafmon/maps/IP_A".into(),
            pinned: Shape { value: 24, ..IP },
            wanted: IP,
        };
        assert_eq!(
            e.to_string(),
            "pinned map /sys/fs/bpf/trafmon/maps/IP_A was made by another version of trafmon (type 5, key 20 B, value 24 B, 65536 entries; this one needs type 5, key 20 B, value 32 B, 65536 entries), whose counts this one cannot read: run `trafmon uninstall --discard` and start again"
        );
    }
}
