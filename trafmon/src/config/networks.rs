//! Networks (`local_networks`, `[groups]`) and the names of groups.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de};

use super::{plain_name, text};

/// A network in CIDR notation, or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// True when `ip` lies inside.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// A network (`192.0.2.0/24`) or a single address, without host bits.
    fn from_str(text: &str) -> Result<Self, String> {
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    return Err(format!(
                        "`{text}` is not an address or a CIDR network (192.0.2.0/24, 2001:db8::/32)"
                    ));
                }
            },
        };
        if net.trunc() != net {
            return Err(format!(
                "`{text}` has host bits set; the network is {}",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = text(d, "an address or a CIDR network like \"192.0.2.0/24\"")?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A list of networks, refused as a whole when it is not a list: serde's
/// own "expected a sequence" for `cust = "192.0.2.0/24"` does not say of
/// what.
struct Networks(Vec<Cidr>);

impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Vec<Cidr>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a list of networks like ["192.0.2.0/24", "2001:db8::7"]"#)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Cidr>, A::Error> {
                let mut nets = Vec::new();
                while let Some(net) = seq.next_element()? {
                    nets.push(net);
                }
                Ok(nets)
            }
        }
        d.deserialize_seq(V).map(Self)
    }
}

/// `local_networks`: a list of networks.
pub fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    Networks::deserialize(d).map(|n| n.0)
}

/// The name of a group: letters, digits, `.`, `_` and `-`, since it is a
/// part of `stats` names (`group>>>NAME>>>traffic>>>uplink`), which
/// consumers split at `>>>`, and a label in `/metrics`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct GroupName(String);

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if !plain_name(&name) {
            return Err(de::Error::custom(format!(
                "`{name}` is not a group name (letters, digits, '.', '_' and '-')"
            )));
        }
        Ok(Self(name))
    }
}

/// `[groups]`: names, each with a list of networks.
pub fn groups<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<Cidr>>, D::Error> {
    let groups = BTreeMap::<GroupName, Networks>::deserialize(d)?;
    Ok(groups.into_iter().map(|(name, n)| (name.0, n.0)).collect())
}
